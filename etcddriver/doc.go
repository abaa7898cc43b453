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
// Every token that holds or waits for KEY has an entry of its own, the
// etcd key PREFIX+KEY, a NUL byte, then a name the driver chose: its
// instance id (64 random bits, new for every driver) and the lowest slot
// number it did not use on KEY at the time, so that a driver reuses a
// few names per key rather than writing a new one per grant (etcd keeps
// every name ever deleted in its index until a compaction, and every
// attempt's compare over the entries of a key walks them all). The
// entry's value holds a digest of the token (SHA-256, shortened to 128
// bits: it cannot be guessed without the token, which never leaves the
// process, nor collide with another token's), the owner and the TTL asked
// for; the digest, not the name, says whose entry it is. A name serves
// one token at a time in its driver, and every write that could land on
// a name another token now has is guarded in its transaction (a put only
// if the name is free, a delete only if the value names the token). A
// second driver with the same token (another process) finds the token's
// entry by reading the entries of KEY for its digest. The entry is
// attached to an etcd lease of its own: one lease per grant, never
// shared, so that renewing or revoking that lease renews or releases that
// grant and nothing else. The entries of KEY are a queue in
// create-revision order, as in concurrency.Mutex: the first one holds the
// lock; a name put again is a new entry with a new, higher create
// revision. Running etcd with auto-compaction
// (--auto-compaction-retention), as any etcd in production should, still
// keeps the index small.
//
//   - Acquire puts the token's entry, in one transaction, if KEY has no
//     entry at all (no holder, no waiter: the range's create revisions are
//     all 0), attached to a lease: a new one (granted first: two round
//     trips), or one the driver kept from a released grant with the same
//     TTL, renewed by a keep-alive sent beside the transaction (one round
//     trip; the grant counts only if the keep-alive found the lease, so
//     etcd renewed it after the call's start). Otherwise the transaction
//     reads the first entry: the holder. A busy attempt reads the
//     holder's remaining TTL, and keeps its unused lease for the token's
//     next attempt, which renews it with a keep-alive before its
//     transaction. A keep-alive does not write to etcd's log, a grant or
//     a revoke does. An attempt by the token that holds the key renews it
//     and returns the same fence. Acquire never queues: a waiter's place
//     is kept by AcquireQueued (see Waiting).
//   - Refresh sends one keep-alive of the grant's lease; Release is a
//     plain delete of the token's entry when the driver that made it
//     remembers the grant (while it does, it gives the name to no other
//     token, so nothing needs comparing; a transaction that compares the
//     value otherwise), and keeps the lease for the
//     driver's next attempt with the same TTL (which renews it with a
//     keep-alive rather than grant a new one). One round trip each, when
//     the driver that made the grant remembers its lease (it does for the
//     grants it made or renewed); another driver reads the entries first
//     to refresh, and revokes the lease the deleted entry was on.
//   - RefreshBatch ([driver.BatchRefresher]) sends the keep-alives of all
//     its leases on one stream: one round trip for any number of leases.
//     Every keep-alive of a driver (these, Refresh's, and the renewal of a
//     reused lease) goes on the driver's one long-lived keep-alive stream,
//     opened at the first and again after it breaks.
//   - The fence is the holder's entry's create revision: etcd's revision
//     counter never goes back, across leader changes, restarts and the
//     loss of a minority of members, and a holder's entry is newer than
//     every earlier holder's (had it existed then, that holder's entry
//     would not have been first), so every grant of a key has a greater
//     fence than every earlier one, and no fence key is needed. A cluster
//     restored from a backup goes back to the backup's revision: restore
//     it with a bumped revision (etcdutl snapshot restore
//     --bump-revision) to keep fences increasing.
//   - Inspect ([driver.Inspector]) reads the first entry and its lease: owner,
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
// The driver implements [driver.Handoff]: a lock's waiters are served
// first come, first served, and a release wakes exactly the next one.
//
//   - AcquireQueued is Acquire that keeps the token's entry when it is not
//     the first: the waiter's place, behind every entry put before it. A
//     token's entry is never put back at a lower revision, and every new
//     entry is behind it, so an entry that is first stays first until it
//     is deleted. Each queued attempt renews the entry's lease (a
//     keep-alive sent after the attempt's start, or a lease granted after
//     it), so that etcd's expiry of the entry is at least the TTL after
//     the attempt was sent; an entry whose waiter stops trying expires
//     with its lease, and those behind it move up. A queued attempt of a
//     waiter whose subscription has seen its entry is one keep-alive of
//     the entry's lease (alive: the entry still exists, renewed after
//     the attempt's start; first in the watch's view: the key is the
//     waiter's), not a transaction: etcd proposes every transaction that
//     may write through raft, whichever branch it takes.
//   - SubscribeHandoff reads the entries of KEY with their create
//     revisions, and watches them from that read's revision on: it knows
//     the queue at every revision. At a delete (a release, a waiter
//     leaving, a lease's expiry) after which the waiter's entry is first,
//     the key is the waiter's, and the subscription sends it a Turn with
//     Granted, the entry's create revision as fence, and the queued
//     attempt that last renewed the entry: the waiter counts its lease
//     from that attempt's send time, which is safe by the argument in
//     [driver.Handoff] (etcd renewed the lease after the attempt was
//     sent). Nothing but the lease's expiry can take that grant back. A
//     delete that leaves the entry behind another sends nothing: the
//     waiters behind the next one make no request at all. A waiter with
//     no entry (before its first queued attempt, or after its entry
//     expired) is woken plainly to try again.
//   - Cancel of the subscription ends the watch, then deletes the
//     waiter's entry unless the waiter has the key (by a Turn or an
//     attempt's reply): the next waiter gets the key, or the place, at
//     once. If that delete fails, a Turn with Granted and Attempt 0 is
//     left in the channel, and the caller releases the token, which
//     deletes the entry.
//
// [driver.Notifier]'s Subscribe, which semaphores' waiters use (several
// slots may be free at once), watches the same range and wakes its
// subscriber at every delete.
//
// A watch whose member dies (its connection breaks) resumes on another
// member from the last revision it saw, and wakes or hands off for what
// it missed. A watch that etcd ends (the revision it resumes from was
// compacted) wakes its waiter, whose queued attempts are then
// transactions again: the subscription's view of the queue ended with it. A watch whose member is frozen (its process stopped, its
// host hung) stays silent until gRPC's keep-alive drops the connection
// (12 s with the settings Open uses): meanwhile its waiters move only at
// their retry backoff (at most 1 s with dlock's default), whose attempt
// finds the key theirs if their entry became first.
//
// Entries of an older version of this driver (the lock as the key
// PREFIX+KEY itself) are not seen by this one: do not run both on one
// prefix.
//
// # Semaphores
//
// The driver implements [driver.Semaphore] on the same entries: a slot's
// entry is its token's entry, with the semaphore's limit in its value,
// and the limit entries with the lowest create revisions hold, as in
// etcd's recipes. AcquireSlot puts the caller's entry and reads all of
// them in one transaction; if limit or more are older than its own, or an
// older one was granted under another limit or is a lock's, it deletes
// its entry again (busy, [driver.ErrLimitMismatch] or
// [driver.ErrWrongKind]: three round trips, with the lease grant).
//
// At most limit tokens hold at once: take the holders at some moment, and
// the one whose entry is the newest. Every other holder's entry existed
// when that newest one was put (an entry is never put back once
// deleted: its holder's lease is over), so the newest holder saw them all
// as older, and it holds only because fewer than limit were. An entry of
// a busy attempt counts while it exists, so an attempt at the same moment
// may be busy for a round trip although a slot is free; it is never let
// in beyond the limit. A slot's fence is its entry's create revision;
// RefreshSlot, RefreshSlots and ReleaseSlot work as Refresh,
// RefreshBatch and Release do, on the entry. A key is a lock or a
// semaphore, never both: a lock holds only with no entry before its own,
// and a slot only with no lock's entry before its own, so of a lock and a
// slot both claiming the key, the newer saw the older and refused
// ([driver.ErrWrongKind]); Inspect of a key whose slots are held, and
// InspectSlots of a locked key, refuse with it too rather than report the
// key free. A lock whose own name is another lock's name followed by a
// NUL byte would have its entries taken for the other's.
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
//     deletes the entry if the put was applied, and makes a put still on
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
