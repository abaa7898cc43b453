// Package redisdriver is the dlock driver for a single Redis deployment:
// a standalone server, a master watched by Sentinel, or a Redis Cluster,
// over github.com/redis/go-redis/v9.
//
// Pass the client you already have:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
//	locker, err := redisdriver.New(rdb, nil) // refuses a client without ContextTimeoutEnabled
//	...
//	defer locker.Close() // does not close rdb
//
// or open one by URL with [dlock.Open] after importing this package:
//
//	locker, err := dlock.Open(ctx, "redis://127.0.0.1:6379/0?ttl=30s")
//
// Every operation is one atomic Lua script, run with EVALSHA (EVAL when the
// server does not have it cached): one round trip per acquire, refresh and
// release. A release with waiters queued hands the key to the first one
// still listening within that round trip (see Waiting and handoff).
//
// Calls made at the same time share round trips. A call that finds none
// of the driver's calls in flight goes out at once, on the caller's
// goroutine: a lone caller never waits for a batch. Calls that find
// others in flight leave together as one go-redis pipeline, as soon as
// the driver's flush goroutine runs, without waiting for the replies of
// those in flight; only while four round trips are in flight do they
// wait for one of them (on a Cluster, one such queue per master). The
// single Redis thread then reads and answers many calls with one system
// call each way, which is most of what a call costs it. The client's
// hooks see such a batch as a pipeline.
//
// # URLs
//
// Schemes, registered in init:
//
//	redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]
//	rediss://[USER[:PASSWORD]@]HOST[:PORT][/DB]                   (TLS)
//	redis+cluster://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]
//	rediss+cluster://...                                           (TLS)
//	redis+sentinel://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]
//	rediss+sentinel://...                                          (TLS)
//
// PORT defaults to 6379. In a Cluster URL the hosts are seed nodes; in a
// Sentinel URL they are Sentinels, and USER and PASSWORD are those of the
// master and replicas (add sentinel_auth=true to present them to the
// Sentinels too). Give every host its port in a list (Go's URL parser
// reads the port after the last ':'). IPv6 literals go in brackets.
//
// URLs are parsed strictly (see dlock.Open): a URL must name its host
// (there is no default 127.0.0.1), a password must escape '@', '/', '?'
// and '#' (%40, %2F, %3F, %23), and parameters are separated by '&' only.
// Passwords are not accepted as query parameters.
//
// Query parameters of the driver ([Options]), on every scheme:
//
//	prefix=dlock:         key and channel prefix
//	fence_expiry=168h     how long fence keys outlive the last acquire
//	replica_acks=0        replicas that must acknowledge each acquire (WAIT)
//	replica_timeout=1s    bound of that wait
//
// TLS parameters, on rediss, rediss+cluster and rediss+sentinel only (a
// scheme without TLS refuses them rather than ignore them):
//
//	tls_server_name=NAME  verify every server's certificate under NAME
//	skip_verify=true      do not verify certificates at all
//
// skip_verify=true turns off the check that the server is who it claims
// to be: anyone who can intercept the connection can then read the
// password and every lock, and grant or deny locks at will. Use it only
// for tests, never across a network you do not control.
//
// go-redis client parameters, passed to go-redis's URL parsers:
//
//	every scheme:        protocol, client_name, max_retries,
//	                     min_retry_backoff, max_retry_backoff,
//	                     dial_timeout, read_timeout, write_timeout,
//	                     pool_fifo, pool_size, pool_timeout,
//	                     min_idle_conns, max_idle_conns, max_active_conns,
//	                     max_concurrent_dials, pipeline_pool_size,
//	                     pipeline_read_buffer_size,
//	                     pipeline_write_buffer_size, conn_max_idle_time,
//	                     conn_max_lifetime, conn_max_lifetime_jitter
//	redis, rediss:       db, idle_timeout, max_conn_age
//	+cluster:            max_redirects, read_only, route_by_latency,
//	                     route_by_latency_tolerance, route_randomly,
//	                     failing_timeout_seconds, dialer_retries,
//	                     dialer_retry_timeout
//	+sentinel:           db, use_disconnected_replicas,
//	                     dialer_retries, dialer_retry_timeout,
//	                     replica_only (false only: locks are taken
//	                     on the master),
//	                     sentinel_auth (true: present USER and PASSWORD
//	                     to the Sentinels too)
//
// dlock.Open reads ttl, renew, drift, owner and fencing for every scheme
// (fencing=false: dlock.Options.DisableFencing; see Fences). Any
// other parameter is refused. Errors show URLs without user name or
// password, and with the values of parameters not listed here hidden.
//
// # TLS
//
// With rediss:// the server's certificate is verified against the
// system's roots under the URL's host name (or tls_server_name). With
// rediss+cluster:// and rediss+sentinel:// the servers are found at run
// time: each Cluster node, each Sentinel, and the master and replicas a
// Sentinel reports are verified under the host name or IP address they
// are dialled at, as the Cluster or Sentinel announces it, so their
// certificates must name those addresses (an IP address needs an IP SAN).
// When all servers share one certificate, set tls_server_name to the name
// it carries. TLS 1.2 is the least version accepted. To use other roots
// or client certificates, build the client yourself and pass it to [New].
//
// [dlock.Open] checks the connection within its context, so an
// unreachable address, a wrong password, a user without the needed
// permissions (see Permissions) or a read-only replica where the master
// was meant fails at open. Clients made from a URL have
// ContextTimeoutEnabled set, and are closed by Close.
//
// # Permissions
//
// With Redis ACL users, the user needs the keys ~PREFIX* and the channels
// &PREFIX*, EVALSHA and EVAL, and every command the scripts run, since
// Redis checks a script's commands one by one as they run: GET, SET, DEL,
// EXISTS, TYPE, PTTL, PEXPIRE, TIME (every fence is taken from the
// server's clock), ZADD, ZPOPMIN, ZREM and ZRANGEBYSCORE (the waiter
// queue), HGET, HSET and HDEL (the queue's attempts, and semaphores),
// ZRANGE, ZCOUNT, ZSCORE and UNLINK
// (semaphores), PUBSUB NUMSUB and SHARDNUMSUB (a release asks whether a
// queued waiter still listens before it hands it the key), and PUBLISH
// (SPUBLISH on Cluster); then SUBSCRIBE (SSUBSCRIBE on
// Cluster) and PING for release notifications, and WAIT with
// replica_acks. The least rule is
//
//	ACL SETUSER locker on >PASSWORD ~dlock:* &dlock:* +evalsha +eval +ping
//	    +subscribe +ssubscribe +wait +get +set +del +exists +type +pttl
//	    +pexpire +time +zadd +zpopmin +zrem +zrangebyscore +zrange +zcount
//	    +zscore +hget +hset +hdel +unlink +publish +spublish
//	    +pubsub|numsub +pubsub|shardnumsub
//
// or, by category, ~dlock:* &dlock:* +@scripting +@read +@write +@pubsub
// +time +ping (TIME is in none of those categories: a rule without +time
// can take no lock).
//
// Open checks these permissions: it runs a script that asks the ACL
// (redis.acl_check_cmd, Redis 7 and later) about each command on a key
// under the prefix, and fails naming the first command refused; then it
// publishes to and subscribes to one of the driver's channels. Redis 7
// gives new users no channel permission (acl-pubsub-default
// resetchannels), so the channel pattern is the permission most often
// missed: Open then fails with a [*ChannelPermissionError], whose Pattern
// is the pattern to grant (ACL SETUSER user &PATTERN); when the server
// refused the command instead (no +publish, no +subscribe), its message
// names the command to grant. A Subscribe refused
// later (the ACL changed) fails with the same error, and the waiter falls
// back to the holder's expiry and its backoff. A command refused inside a
// script, at any call, is reported as a missing permission.
//
// # Keys and Cluster hash tags
//
// A lock on KEY is a Redis string at PREFIX{KEY},
// "TOKEN\nFENCE\nSINCE\nOWNER" (SINCE is the server's TIME at the grant),
// set with SET NX PX and the lease TTL, so that taking a free key costs
// the server little more than a bare SET NX. Its fence key is
// PREFIX{KEY}:fence, its waiters' queue PREFIX{KEY}:queue (with their
// attempts, for a handoff, in the hash PREFIX{KEY}:attempts), and releases
// are published on PREFIX{KEY}:released or, to one waiter, on
// PREFIX{KEY}:w:TAG. Redis pub/sub ignores database numbers, so on a
// database other than 0 the key-wide channel is PREFIX{KEY}:released:dbN
// (N the database number): a release in one database never wakes the
// waiters of the same key in another. (Cluster has database 0 only; a
// waiter's own channel needs no suffix, as its tag is its own.) The braces make KEY the Cluster hash tag of them all,
// so they are on one node and one script uses them all. If KEY contains '%', '{' or '}', these
// are written %25, %7B and %7D inside the braces, so the tag is always
// exactly KEY (escaped), never empty, and two keys never share a lock.
// Prefix must not contain braces.
//
// # Waiting and handoff
//
// Release notifications use one pub/sub connection per driver, shared by
// all waiting keys (on Cluster, one per master node, with sharded pub/sub:
// SPUBLISH and SSUBSCRIBE, so a release wakes only its own node's
// subscribers). Waiters queue first come, first served (a sorted set of
// waiter tags, each a hash of the waiter's token, never the token), each
// scored by its first queued attempt (the server's TIME in µs), which its
// later attempts keep: a waiter that has waited long, and so attempts
// seldom, is not overtaken by newcomers that attempt often. Each entry's
// deadline, the time by which it attempts again (moved later by each
// attempt, never earlier), is kept in PREFIX{KEY}:attempts. A release
// wakes only the first that still listens on its own channel and whose
// deadline has not passed, so N waiters do not all rush at every release;
// with no such waiter among the first few it wakes every subscriber of
// the key. Entries of waiters that gave up are pruned by deadline, a few
// per attempt, from a window that sweeps the queue from its head (its
// place kept in the attempts hash), so the queue stays bounded even behind
// a waiter that stays at its head, and no script's work grows with it. A
// waiter woken after it gave up passes its
// turn on. Notifications only speed up waiting: a waiter that misses one
// wakes at the holder's reported expiry or its backoff.
//
// The driver implements driver.Handoff, which dlock uses for lock (not
// semaphore) waiters: a waiter that subscribes for grants numbers its
// attempts, and a busy attempt stores, with its queue entry, its token,
// TTL, owner and number (in PREFIX{KEY}:attempts, which expires with the
// queue; the token is never in a channel name or message). The release
// script then grants the key to the first queued waiter still listening,
// by the rules of an acquire (fence above every earlier one, SINCE the
// release), and publishes "grant ATTEMPT FENCE" on its channel: the waiter
// holds the key without another round trip. "Still listening" is asked of
// the master before the grant (PUBSUB NUMSUB, SHARDNUMSUB on Cluster:
// exact subscribers, which a pattern subscriber such as a monitoring
// client on PSUBSCRIBE * is not); a waiter that does not listen there is
// skipped, with nothing granted or published. So a grant message always
// means the key is the waiter's, also where the message is propagated to
// a replica on which a waiter listens after a failover. The waiter counts
// its lease from the moment it sent the attempt named in the grant, which
// is safe by the argument in driver.Handoff. A release first removes its
// own token's queue entry, so that a holder that took the key by an
// attempt of its own is never handed it back.
//
// A waiter that gives up waits for the server to confirm its UNSUBSCRIBE
// (one round trip on the pub/sub connection): a grant made before it
// arrives first, and the waiter releases it before its Acquire returns;
// after it, no release grants the waiter anything. When the driver cannot
// tell (the connection broke while the waiter listened, or the
// confirmation never came), the waiter releases its token all the same.
// So when a waiting Acquire returns without a lease, no token of it holds
// the key, also when Locker.Close ended the wait.
//
// With a Sentinel URL the driver also listens to the Sentinels'
// +switch-master and moves its pub/sub connection to the new master at
// once (go-redis moves only command connections; a connection to a
// frozen old master stays open and silent until the idle ping, after two
// health intervals of 15 s). A driver made by New over a failover client
// does not know the Sentinels and relies on that ping.
//
// # Semaphores
//
// The driver implements driver.Semaphore (dlock's LeaseOptions.Limit). The
// slots of KEY live at PREFIX{KEY} itself, as a sorted set of the holders'
// tokens scored by their expiry (the server's TIME, µs), with the hash
// PREFIX{KEY}:slots holding each holder's fence, grant time and owner and
// the limit. Each operation is one script: an acquire first drops the
// holders whose expiry passed (at most the limit's worth of work, never a
// keyspace scan), refuses a limit other than the holders' with
// dlock.ErrLimitMismatch, and grants a fence from the lock's fence key,
// so fences increase across a key's locks and slots. A release publishes
// on the lock's release channel to every subscriber. Both keys expire
// with the last holder and are deleted with the last release. A key is a
// lock or a semaphore, not both: each kind's scripts find the other's
// type at PREFIX{KEY} and refuse with [ErrWrongType]. Semaphores are not
// offered with ReplicaAcks (errors.ErrUnsupported).
//
// The driver needs Redis 6.2 or later and is tested on Redis 7.0 and
// Valkey 8.0.
//
// # Fences
//
// Each grant's fence is max(now, last + 1, min(floor, now + TTL)), where
// now is the server's TIME in microseconds, last is kept in the fence key
// for FenceExpiry, and at least the TTL, after each acquire, and at least
// as long as the lock by each refresh, which re-arms the key for
// FenceExpiry when less than the TTL is left on it (so a lock held longer
// than FenceExpiry keeps it, and a fence ahead of the clock stays on
// record until the clock has passed it), and floor is the one a quorum
// driver proposes (AcquireFloor, redlock.FloorAcquirer). The floor is never
// trusted alone: a fence is never more than a TTL ahead of the clock of
// the server that granted it, whatever the proposing client's clock.
// Fences therefore increase strictly for a key, also after the fence key
// expired, and after Redis restarted without its data and stayed out for
// longer than the TTL, as long as the server's clock does not go back.
// A repeated acquire with the holder's token returns the same fence.
//
// Fences stay below 2^53, which Lua's numbers hold exactly: a floor
// from 2^53 on is refused with [dlock.ErrInvalid] before any I/O, and so
// is a grant whose fence would reach it. A fence key that does not hold a
// fence (at most 16 digits, below 2^53) is someone else's data:
// [ErrWrongType], never overwritten.
//
// A lock taken with fencing disabled (dlock.Options.DisableFencing, which
// sets driver.Request.NoFence) has fence 0 and costs no fence work: a
// free key is taken by a bare SET NX, without a script, and the fence key
// is neither read nor written, by the grant or by its refreshes. Such a
// waiter is not queued: it is woken by a release that finds no queued
// waiter listening (with every other subscriber), otherwise by the
// holder's expiry or its backoff.
// Leases of other clients of the key still get increasing fences.
//
// # Errors
//
// Errors wrap the dlock sentinels: [dlock.ErrNotHeld] from Refresh and
// Release when the token no longer holds the key; [dlock.ErrUnavailable]
// only when the command surely did not run (no connection could be made,
// the client is closed, or Redis refused it before running it: LOADING,
// CLUSTERDOWN, TRYAGAIN, READONLY, MASTERDOWN, NOREPLICAS, OOM, BUSY (a
// script running past busy-reply-threshold), MISCONF (writes stopped
// after a failed save), too many
// clients, or a MOVED or ASK redirect that could not be followed), so
// dlock retries it: an acquire on a demoted master or under
// min-replicas-to-write succeeds once the master takes writes again. A
// call whose outcome is unknown (a timeout, a connection lost after
// sending) returns an error whose Timeout method reports true.
//
// The driver sends each command once, whatever the client's MaxRetries:
// a command that go-redis sent again after a lost connection may run
// twice, and the second run answers for both (a release that was applied
// would come back "not held"), or run after dlock undid the first (an
// acquire would take the key again for nobody). dlock retries what may
// be retried, knowing what was sent.
// A call through a go-redis client that its owner closed fails with
// [dlock.ErrClosed], not retried. [ErrWrongType] reports someone else's
// data at a lock or fence key; the
// driver never overwrites it. Authentication and ACL permission failures
// say so. Errors quote URLs only redacted. A TLS URL at a port where the
// server does not speak TLS fails within the dial timeout with
// [dlock.ErrUnavailable] and "TLS handshake failed: is the server speaking
// TLS on this port?". A client made from a URL dials each connection once
// (go-redis's default is five dials 100ms apart): dlock retries its own
// calls, and go-redis's retries made each call outlast its context.
//
// # Logging
//
// go-redis logs some failures itself ("pool.go:…: failed to dial") to
// the standard error, through a logger that is global to the process.
// dlock reports every such failure in its errors and does not change that
// logger behind the application's back (the dlock command, which owns
// its process, silences it). To silence it, or send it to your own log:
//
//	redis.SetLogger(myLogger) // any type with Printf(ctx context.Context, format string, v ...any)
//
// # Safety
//
// The driver and the Locker from [New] are safe for concurrent use.
// A lock is as safe as the Redis deployment under it:
//
//   - Standalone: a lock is lost only if the server loses its data; fences
//     still increase after a restart (see Fences).
//   - Sentinel: replication is asynchronous, so a failover may promote a
//     replica that never saw a lock, and a second holder can then acquire
//     it while the first still believes it holds it. Fences do not
//     help across such a failover unless the clocks of master and replica
//     agree (they are taken from the server's TIME). ReplicaAcks (WAIT)
//     narrows the window: an acquire succeeds only once that many
//     replicas have the lock. It does not close it: WAIT is not a
//     consensus, an acknowledging replica may not be the one promoted,
//     and refreshes are not waited for. Where a failover must never break
//     mutual exclusion, use the redlock driver over independent masters,
//     or a consensus store.
//   - Cluster: the same holds per shard, for its master's replicas.
//
// The holder learns of a lost lease before the server frees the key, as
// long as the server's clock does not run faster than the lease's drift
// allowance; see package dlock.
package redisdriver
