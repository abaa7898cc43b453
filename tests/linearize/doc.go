// Package linearize checks with porcupine that dlock's leases behave as one
// lock per key with fences, on every backend: concurrent clients, each with
// a Locker of its own, mix try-acquires, short-deadline waits, refreshes
// with changing TTLs and releases on a few keys, and the history of what
// every client's driver sent and got back must be explainable by a lock
// that one token at a time holds, whose fences increase, and that no token
// holds once its Acquire returned failure (no phantom holder).
//
// It lives in the tests module, so the checker is no dependency of the
// library. Tests that need Redis start redis-server processes through
// internal/redistest.
package linearize
