package etcddriver

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TokenEntry reads the entries of key under prefix, with opts (a
// revision, say), and returns the response with the entry of token alone
// in its Kvs (none if the token has none), for tests that look at etcd
// directly: an entry's name says nothing of its token (see names.go).
func TokenEntry(ctx context.Context, cl *clientv3.Client, prefix, key, token string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	resp, err := cl.Get(ctx, prefix+key+"\x00", append([]clientv3.OpOption{clientv3.WithRange(prefix + key + "\x01")}, opts...)...)
	if err != nil {
		return nil, err
	}
	kvs := resp.Kvs
	resp.Kvs = nil
	if kv := entryOf(kvs, digest(token)); kv != nil {
		resp.Kvs = append(resp.Kvs, kv)
	}
	resp.Count = int64(len(resp.Kvs))
	return resp, nil
}
