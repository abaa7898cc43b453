package etcddriver

// EntryKey returns the etcd key of the entry of key of token under
// prefix, for tests that look at etcd directly.
func EntryKey(prefix, key, token string) string { return prefix + key + "\x00" + digest(token) }
