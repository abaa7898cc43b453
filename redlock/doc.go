// Package redlock is a dlock driver that holds a lock on a majority of N
// independent nodes, as in the Redlock algorithm described on the Redis
// documentation's page "Distributed Locks with Redis"
// (https://redis.io/docs/latest/develop/use/patterns/distributed-locks/),
// with the fencing tokens that Martin Kleppmann's critique "How to do
// distributed locking" (2016,
// https://martin.kleppmann.com/2016/02/08/how-to-do-distributed-locking.html)
// found missing from it.
//
// [New] composes any driver.Locker values (usually redisdriver nodes, in
// tests also memdriver ones) into a dlock.Locker, and [NewDriver] into the
// bare driver; [NewRedis] builds the nodes from go-redis clients; a
// redlock:// URL does both from configuration.
//
// # Algorithm
//
// An acquire sends the request to every node at once; the round is
// decided within [Options.NodeTimeout]. The lock is granted only if a
// majority of nodes (N/2+1) granted it and that happened within the
// validity window, TTL − [Options.Drift], counted from sending; otherwise
// it is released on every node that granted it or did not answer (the
// request may have landed). Refreshes go to every node and need a majority
// within the window too; releases go to every node.
//
// Every call is decided at the majority's answers, as redsync's fail-fast
// mode decides: a granted acquire returns as soon as a majority granted one
// fence, a failed one as soon as a majority can no longer grant it (or
// when its context ends), a refresh once a majority confirmed, a release
// once a majority released, an inspection once the answers decide it, and
// Open once a majority passed its check: the slower nodes' answers cannot
// change the outcome. A release still running on a slower node is
// awaited there by this driver's next acquire of the key, which then
// finds that node free. Their calls finish in the background on the
// driver's worker goroutines (which exit after 10s idle); Close lets them
// finish for the node timeout of the Locker's TTL at most, then ends those
// still running and waits for them (a call blocked in a read on a client
// given to [NewRedis], which Close leaves open, ends only at the client's
// ReadTimeout or the call's deadline: see Close).
//
// On each node, the acquires and releases of one token are ordered: a
// release, or the undo of a failed acquire, goes out only once that node
// answered the acquire or its call gave up. An acquire's node calls do not
// end with the caller's context, which would leave the request on its way
// (in a socket buffer, a proxy, a retransmitted packet) while an undo sent
// on another connection overtook it; each listens for its answer for the
// validity window (the client's read timeout may cut that short), so that a
// slow answer is known and undone after it, and a grant that lands after a
// lease was released is released after it. A failed acquire waits for its
// undo on every node (until the node timeout from its start), so that a
// busy answer leaves no node held by it for another client to find; an
// undo still running then goes on in the background. A release or undo
// whose outcome is unknown may still land after later requests: for the
// lock's TTL (at least a minute) a later acquire with that token is not
// sent to that node, whose late release would free it under the lease. Nor
// is a later acquire with a token sent to a node where its earlier acquire
// has not returned, so that a caller waiting on a hung node does not queue
// a call there per attempt. What remains is a request delayed beyond those
// bounds: an acquire may still land, and holds that node for its TTL; a
// release landing after a later grant of its token frees that node. The
// nodes of a redlock:// URL dial once and do not retry commands, so a
// refused node fails its calls at once, with its cause ("connection
// refused"), instead of holding each round for its node timeout; [NewRedis]
// refuses clients that retry.
//
// A busy key reports, as the holder's remaining TTL, the time at which a
// majority of nodes may be free, and a release seen on a majority of nodes
// wakes waiters (on nodes that notify).
//
// # Fencing
//
// Each node grants its own fence, increasing per key. The client proposes
// one fence to all nodes (a floor, [FloorAcquirer]: its clock in
// microseconds plus the node timeout, kept increasing), which is why every
// node must honour fence floors, and a Redis node
// grants the largest of that floor (capped at its own clock plus the TTL:
// the floor is never trusted alone), its own clock, and one more than its
// last fence. The request reaches each node within the node timeout, so
// nodes whose clocks agree with the client's all grant the floor. The lease gets the
// largest fence that a majority granted; if no majority agrees, it gets
// the largest fence of the nodes that granted it, which is first written
// to a majority of nodes (driver.FenceRaiser). Any later majority shares a
// node with that one, which grants only larger fences from then on, so
// every later lease's fence is larger — provided that node kept its state
// (see Safety). If the write-back does not reach a majority within the
// validity window, the attempt fails and is released. A resource that records the largest fence
// it has seen and rejects smaller ones is then protected from a holder that
// paused (a GC pause, a stopped VM, a slow network) past the end of its
// lease: the failure that timing alone, which is all Redlock has, cannot
// rule out. [Options.DisableFencing] tells the nodes to skip fences
// (driver.Request.NoFence; on Redis a free key is then taken by a plain
// SET NX); leases then carry fence 0. A Locker with
// dlock.Options.DisableFencing gets the same single round for its
// requests even when fencing is on.
//
// # Safety
//
// The guarantees hold under these assumptions, which Redlock needs and
// which the deployment must provide:
//
//   - Independent masters. Nodes are separate Redis servers (or other
//     backends) that fail independently: not replicas of one another, whose
//     asynchronous replication loses a lock on failover, and not shards of
//     one cluster. [NewRedis] refuses a Cluster client and a client with
//     several addresses as a node, and duplicate addresses.
//   - Bounded clock drift. The local deadline of a lease is computed on
//     this process's clock, the expiry on each node's. The nodes' clocks
//     may not run faster than this one's by more than Drift over a TTL, and
//     a node's clock must never jump (a stepped wall clock makes Redis
//     expire keys early).
//   - Persistence or delayed restarts. A node that restarts empty forgets
//     the locks it granted, and then a second client can get a majority
//     while the first still believes it holds the lock. Either run the
//     nodes with fsync'ed persistence (appendfsync always) or keep a
//     restarted node out of service for at least the longest TTL. Redis
//     fences stay increasing across an empty restart of a majority kept
//     out that long, whatever the clocks of the clients, as long as the
//     nodes' clocks do not go back and agree within the time a node is kept
//     out beyond the TTL: no Redis node grants a fence more than a TTL
//     ahead of its own clock.
//   - Bounded pauses. The lease's context is cancelled at its local
//     deadline, before any node expires the lock, but a process that is
//     paused can act after that moment without knowing. Only fencing, with
//     a resource that checks fences, makes that harmless.
//
// Kleppmann's point stands: a lock service built on timing is a tool for
// efficiency, and for correctness the protected resource must check fences.
// With fencing, Redlock's majority guarantees that fences increase; a
// single Redis node gives the same guarantee with less machinery, and
// Redlock adds tolerance of the loss of a minority of nodes.
//
// # Semaphores
//
// The driver does not offer semaphores (dlock's LeaseOptions.Limit): its
// driver.Semaphore methods return an error wrapping errors.ErrUnsupported.
// A majority of per-node semaphores does not bound the holders: with a
// limit of 2 and three nodes, holders A, B and C can take slots on nodes
// {1,2}, {1,3} and {2,3}; every node then has two holders, within its
// limit, and each holder has a majority, so three hold a semaphore of
// two. Majorities guarantee that two holders of a lock meet on a node that
// refuses one of them; N+1 holders of a semaphore need a node that counts
// all of them, which majorities do not give. Use one Redis (redisdriver,
// with Sentinel or Cluster for availability) for semaphores.
//
// # URLs
//
// The driver registers the schemes redlock and redlocks (TLS to every
// node):
//
//	redlock://[USER[:PASSWORD]@]HOST:PORT,HOST:PORT,HOST:PORT[/DB][?PARAMS]
//	redlocks://...                                                  (TLS)
//
// PORT defaults to 6379 (give it for every host, or for none: Go's URL
// parser rejects a list whose last host lacks one); IPv6 literals go in
// brackets. User and password apply to every node, and DB is the
// database on each. One go-redis client is opened per host, with
// ContextTimeoutEnabled, and closed by Close; Open checks every node as
// redisdriver's Open checks its server (it answers, and its user has the
// permissions the driver needs: see redisdriver's Permissions) and fails
// unless a majority passes. URLs are parsed strictly, as by
// dlock.Open: escape '@', '/', '?' and '#' in a password.
//
// Query parameters:
//
//	node_timeout=100ms   Options.NodeTimeout
//	fencing=false        Options.DisableFencing, and the Locker's
//	                     DisableFencing: one setting
//	drift=…              Options.Drift, and the Locker's Drift: one setting
//	ttl=…                the Locker's TTL, which also sets the node
//	                     timeout of calls that carry no TTL
//	prefix, fence_expiry, replica_acks, replica_timeout
//	                     redisdriver's, for every node (Options.Redis)
//	tls_server_name, skip_verify
//	                     redlocks:// only; as in redisdriver: each node is
//	                     verified under its host name unless
//	                     tls_server_name names one for all, and
//	                     skip_verify=true turns verification off (for
//	                     tests only: anyone on the path can then read the
//	                     password and forge locks)
//	protocol, client_name, max_retries, min_retry_backoff,
//	max_retry_backoff, dial_timeout, read_timeout, write_timeout,
//	pool_fifo, pool_size, pool_timeout, min_idle_conns, max_idle_conns,
//	max_active_conns, max_concurrent_dials, pipeline_pool_size,
//	pipeline_read_buffer_size, pipeline_write_buffer_size,
//	conn_max_idle_time, conn_max_lifetime, conn_max_lifetime_jitter,
//	idle_timeout, max_conn_age
//	                     go-redis client parameters, for every node;
//	                     max_retries only -1, the default here: a node's
//	                     client must not retry commands (see [NewRedis]),
//	                     and a URL that asks for retries is refused (0 is
//	                     go-redis's default, 3 retries)
//
// dlock.Open reads ttl, renew, drift, owner and fencing for every scheme, and
// passes the values the Locker uses on to this driver. Unknown parameters
// are refused, and errors show URLs without user name or password.
//
// # Errors
//
// Construction errors (fewer than [MinNodes] nodes, duplicates, a node that
// cannot raise fences or does not honour fence floors, a Cluster client)
// wrap dlock.ErrInvalid. An attempt
// that does not reach a majority fails with a [*QuorumError] that lists
// each failed node's cause, wrapped, so errors.Is(err,
// dlock.ErrUnavailable) holds when nodes were unavailable, and its Timeout
// method reports true when a node timed out; dlock retries both. A
// majority that answered "held" is not an error but a busy key.
// Refresh wraps dlock.ErrNotHeld only when a majority can no longer hold
// the lock, so the lease is lost exactly then; a refresh that misses a
// majority for other reasons is retried by dlock until the lease's
// deadline. Release succeeds when a majority of nodes is free of the lock,
// even if a minority could not be reached (their locks expire with the
// TTL); it wraps dlock.ErrNotHeld when a majority did not hold it.
// A majority that confirms only after the validity window yields an error
// wrapping context.DeadlineExceeded.
package redlock
