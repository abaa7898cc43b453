// Package etcddriver is the dlock driver for etcd v3, a consensus store:
// locks survive the loss of a minority of members, and fences come from
// etcd's own revisions. It lives in a module of its own
// (github.com/dlock-go/dlock/etcddriver), so that applications that do not
// use etcd do not inherit its client's dependencies (gRPC, protobuf, zap).
//
// Pass the client you already have:
//
//	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}})
//	locker := etcddriver.New(cli, nil)
//	defer locker.Close() // does not close cli
//
// or open one by URL with [dlock.Open] after importing this package:
//
//	locker, err := dlock.Open(ctx, "etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379/myapp?ttl=30s")
//
// It works with etcd servers 3.4 and later (tested with 3.4.23), through
// go.etcd.io/etcd/client/v3 v3.6.
//
// # URLs
//
// Schemes, registered in init:
//
//	etcd://[USER:PASSWORD@]HOST[:PORT][,HOST[:PORT]...][/PREFIX]
//	etcds://...                                                    (TLS)
//
// PORT defaults to 2379. The hosts are the cluster's client endpoints; the
// client spreads calls over them and moves away from one that fails. Give
// every host its port in a list. PREFIX is [Options.Prefix], with a '/'
// added if it does not end in one (etcd://h/myapp keeps locks under
// "myapp/"); without it the prefix is "dlock/". USER and PASSWORD are an
// etcd user's (a password needs its user). URLs are parsed strictly (see
// dlock.Open), and errors show them without user, password or the values
// of unknown parameters.
//
// Query parameters, besides the common ones (ttl, renew, drift, owner,
// fencing):
//
//	dial_timeout=5s       bound of the first connection
//	call_timeout=5s       bound of each call ([Options.CallTimeout])
//
// TLS parameters, on etcds only (etcd:// refuses them rather than ignore
// them):
//
//	ca_file=PATH          trust the CA certificates in PATH (PEM)
//	cert_file=PATH        client certificate (PEM), with key_file
//	key_file=PATH         its private key (PEM)
//	tls_server_name=NAME  verify the servers' certificates under NAME
//	skip_verify=true      do not verify certificates at all (tests only)
//
// # Locks, leases and fences
//
// A lock on KEY is the etcd key PREFIX+KEY, attached to an etcd lease of
// its own: one lease per grant, never shared, so that renewing or revoking
// that lease renews or releases that grant and nothing else. Its value
// holds the owner, the TTL asked for and a digest of the token (SHA-256,
// shortened to 128 bits; the token itself never leaves the process).
//
//   - Acquire puts the key, in one transaction, if it does not exist (its
//     create revision is 0), attached to a lease: a new one (granted
//     first: two round trips), or one the driver kept from a released
//     grant with the same TTL, renewed by a keep-alive sent beside the
//     transaction (one round trip; the grant counts only if the keep-alive
//     found the lease, so etcd renewed it after the call's start). A busy
//     attempt reads the holder's remaining TTL, and keeps its unused lease
//     for the token's next attempt, which renews it with a keep-alive
//     before its transaction. A keep-alive does not write to etcd's log, a
//     grant or a revoke does. An attempt by the token that holds the key
//     renews it and returns the same fence.
//   - Refresh sends one keep-alive of the grant's lease; Release deletes
//     the key in a transaction that checks it is still on that lease, and
//     keeps the lease for the driver's next attempt with the same TTL
//     (which renews it with a keep-alive rather than grant a new one).
//     One round trip each, when the driver that made the grant remembers
//     its lease (it does for the grants it made or renewed); another
//     driver reads the key first, and revokes the lease it finds.
//   - RefreshBatch ([driver.BatchRefresher]) sends the keep-alives of all
//     its leases on one stream: one round trip for any number of leases.
//     Every keep-alive of a driver (these, Refresh's, and the renewal of a
//     reused lease) goes on the driver's one long-lived keep-alive stream,
//     opened at the first and again after it breaks.
//   - The fence is the key's create revision: etcd's revision counter
//     never goes back, across leader changes, restarts and the loss of a
//     minority of members, so every grant of a key has a greater fence
//     than every earlier one, and no fence key is needed. A cluster
//     restored from a backup goes back to the backup's revision: restore
//     it with a bumped revision (etcdutl snapshot restore
//     --bump-revision) to keep fences increasing.
//   - Inspect ([driver.Inspector]) reads the key and its lease: owner,
//     fence, and the time left, in whole seconds rounded up.
//
// # TTLs
//
// etcd counts lease TTLs in whole seconds, and raises any shorter than
// its minimum to it (one and a half election timeouts, rounded up to the
// second: 2 s with the default election timeout of 1 s); it also finds
// expired leases only in a check every 500 ms. A TTL of 500 ms is therefore asked of etcd as
// 1 s, and etcd may grant 2 s: the holder's lease still ends at its own
// local deadline, counted from the send time of the acquire or refresh
// with the TTL asked for (500 ms less the drift allowance), so the
// holder stops before etcd could free the key — but a key whose holder
// vanished stays taken until etcd's expiry, up to the granted TTL plus
// 500 ms. Prefer TTLs of several seconds with etcd.
//
// etcd cannot change a lease's TTL. A Refresh with a TTL other than the
// one the grant's lease was asked for moves the key onto a new lease
// (granted, swapped in by a transaction that checks the key still has its
// create revision and the old lease, then the old lease revoked): three
// round trips, and the key keeps its fence.
//
// # Waiting
//
// The driver implements [driver.Notifier] with etcd watches: a delete of
// the key or of one of its slots, by a release or by a lease's expiry,
// wakes every subscriber of the key within the round trip of the watch
// event. It does not queue waiters: they are not served in the order they
// came, and a release wakes them all, each then making one attempt (a
// keep-alive, a transaction and, if busy, a read of the holder's TTL). Under
// heavy contention this costs far more than concurrency.Mutex, whose
// waiters wait in a queue and are woken one at a time; see the etcd
// section of the repository's benchmarks module (benchmarks/README.md).
//
// A watch whose member dies (its connection breaks) resumes on another
// member from the last revision it saw, and wakes its waiters for what
// they missed. A watch whose member is frozen (its process stopped, its
// host hung) stays silent until gRPC's keep-alive drops the connection
// (12 s with the settings Open uses): meanwhile its waiters wake only at
// their retry backoff (at most 1 s with dlock's default) or the holder's
// expiry.
//
// It does not implement [driver.Handoff] either. A queue in etcd, as
// concurrency.Mutex keeps it (each waiter writes a key of its own on its
// own lease; the lowest create revision holds), makes the head of the
// queue the holder as soon as the key before it is deleted, without a
// round trip: that is a handoff, but one the contract cannot express
// safely. A waiter that gives up must take its queue key with it, or the
// key stays held by nobody who knows it until that key's lease expires;
// the subscription's cancel, which is all the contract gives a leaving
// waiter, has no context for that deletion, and no capability may oblige
// a driver to run I/O of its own in the background. The queue key's
// lease must also be kept alive while the waiter waits, and become the
// grant's lease at its turn, which a Turn cannot hand over.
//
// # Semaphores
//
// The driver implements [driver.Semaphore]. Each holder of a slot of KEY
// has an etcd key of its own, PREFIX+KEY, a NUL byte and its token's
// digest, on a lease of its own, and the limit slot keys with the lowest
// create revisions hold, as in etcd's recipes. AcquireSlot puts the
// caller's slot key and reads all of them in one transaction; if limit or
// more are older than its own, or an older one was granted under another
// limit, it deletes its key again (busy, or [driver.ErrLimitMismatch]:
// three round trips, with the lease grant).
//
// At most limit tokens hold at once: take the holders at some moment, and
// the one whose slot key is the newest. Every other holder's key existed
// when that newest key was put (a slot key is never put back once
// deleted: its holder's lease is over), so the newest holder saw them all
// as older, and it holds only because fewer than limit were. A slot key of
// a busy attempt counts while it exists, so an attempt at the same moment
// may be busy for a round trip although a slot is free; it is never let
// in beyond the limit. A slot's fence is its key's create
// revision; RefreshSlot, RefreshSlots and ReleaseSlot work as Refresh,
// RefreshBatch and Release do, on the slot key. A key is a lock or a
// semaphore: the lock's acquire checks in its transaction that no slot
// key exists, and AcquireSlot that the lock key does not
// ([driver.ErrWrongKind]); Inspect of a key whose slots are held, and
// InspectSlots of a locked key, refuse with it too rather than report the
// key free. A lock whose own name is another lock's name
// followed by a NUL byte would be taken for one of its slots.
//
// # Errors
//
//   - Refresh and Release return an error wrapping [driver.ErrNotHeld]
//     when the grant's lease is gone or the key is held by another token.
//   - A call etcd surely refused (no leader, too many requests), and any
//     failed read or lease grant (which changes no lock), wraps
//     [driver.ErrUnavailable].
//   - Any other failure of a call that may have changed a lock wraps
//     [driver.ErrOutcomeUnknown]; dlock then undoes an Acquire with a
//     Release of its token, which revokes the attempt's lease: that
//     deletes the key if the put was applied, and makes a put still on
//     its way fail. The Release succeeds exactly if the put had landed
//     (the key as it was just before the revoke), and reports
//     [driver.ErrNotHeld] otherwise.
//   - Every call is bounded by Options.CallTimeout and made with the
//     client's require-leader flag, so that a member cut off from its
//     leader refuses at once and the next attempt goes to another member.
//     A member that is frozen (its process stopped, its host hung) keeps
//     its TCP connections open: the client's balancer sends it calls,
//     which time out, until gRPC's keep-alive drops the connection. Open
//     sets keep-alive pings every 10 s (gRPC's least) with a 2 s timeout;
//     a client given to [New] should set DialKeepAliveTime and
//     DialKeepAliveTimeout too.
//   - Errors of Open do not show the password.
//
// # Permissions
//
// With authentication on, the driver's etcd user needs read and write
// permission on the prefix's range (etcdctl role grant-permission ROLE
// --prefix=true readwrite PREFIX), and leases (every user may grant
// them). Open checks both permissions with a transaction that writes
// nothing.
//
// # Safety
//
// The driver is safe for concurrent use. A lease's server-side expiry is
// never before the holder's local deadline: etcd counts the TTL granted
// (at least the TTL asked for) from its receipt of the grant or
// keep-alive, after the holder sent it, and a new leader extends every
// lease by an election timeout rather than shorten it. Jepsen's analysis
// of etcd 3.4.3 found etcd's own locks unsafe when a holder pauses past
// its lease; here the holder's lease ends at its local deadline, seen at
// the first look after the pause, and the fence lets the resource refuse
// a stale holder's writes.
package etcddriver
