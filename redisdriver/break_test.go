package redisdriver_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	_ "github.com/dlock-go/dlock/redlock" // redlock:// for TestOpenErrorsHideSecret
	"github.com/redis/go-redis/v9"
)

// TestForeignQueueKeyKept: someone else's data at a lock's queue key
// (PREFIX{KEY}:queue) is never touched: a waiter's busy attempt used to
// set an expiry on it, so it vanished a few seconds later.
func TestForeignQueueKeyKept(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), nil)
	defer d.Close()
	ctx := testCtx(t)
	key := uniqueKey("foreignqueue/")
	qk := "dlock:{" + key + "}:queue"
	if err := admin.Set(ctx, qk, "someone else's", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Acquire(ctx, req(key, "holder")); err != nil {
		t.Fatal(err)
	}
	w := req(key, "waiter")
	w.Wait = 100 * time.Millisecond
	if res, err := d.Acquire(ctx, w); err != nil || res.Acquired {
		t.Fatalf("waiter's Acquire = %+v, %v; want busy", res, err)
	}
	if err := d.Release(ctx, key, "holder"); err != nil {
		t.Fatal(err)
	}
	if ttl := admin.PTTL(ctx, qk).Val(); ttl != -1 {
		t.Errorf("foreign key %s got an expiry (PTTL %v): someone else's data would be deleted", qk, ttl)
	}
	if v := admin.Get(ctx, qk).Val(); v != "someone else's" {
		t.Errorf("foreign key %s = %q, changed", qk, v)
	}
}

// TestBusyServerIsRetried: BUSY (a script running past
// busy-reply-threshold) is a refusal before anything ran: ErrUnavailable,
// retried by Locker.Acquire until the script is killed, not a permanent
// failure.
func TestBusyServerIsRetried(t *testing.T) {
	s := redistest.StartProcess(t, &redistest.Options{Args: []string{"--busy-reply-threshold", "20"}})
	ctx := testCtx(t)
	admin := s.Client(t)
	o := s.Options()
	o.ReadTimeout = -1
	blocker := newClient(t, o)
	scriptDone := make(chan error, 1)
	go func() {
		scriptDone <- blocker.Eval(ctx, "while true do end", nil).Err()
	}()
	// Wait for the script to run: the server answers BUSY from then on.
	for {
		err := admin.Ping(ctx).Err()
		if err != nil && strings.HasPrefix(err.Error(), "BUSY") {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the server never got busy")
		}
		time.Sleep(5 * time.Millisecond)
	}
	spy := newErrorSpy(redisdriver.NewDriver(s.Client(t), nil))
	l := dlock.New(spy, &dlock.Options{TTL: 10 * time.Second, RenewInterval: -1,
		Retry: dlock.LinearBackoff(20 * time.Millisecond)})
	t.Cleanup(func() { l.Close() })
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	done := goAcquire(actx, l, "busy/k", nil)
	var first error
	select {
	case first = <-spy.errs:
	case a := <-done:
		admin.ScriptKill(ctx)
		<-scriptDone
		t.Fatalf("Acquire returned while the server was busy: %v", a.err)
	}
	if !errors.Is(first, dlock.ErrUnavailable) {
		t.Errorf("BUSY reported as %v; want ErrUnavailable", first)
	}
	if err := admin.ScriptKill(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	<-scriptDone
	a := <-done
	if a.err != nil {
		t.Fatalf("Acquire after the script was killed: %v", a.err)
	}
	if err := a.lease.Release(ctx); err != nil {
		t.Error(err)
	}
}

// TestOpenChecksScriptCommands: a user who may run scripts but not one of
// the commands they run (TIME, SET, ZRANGEBYSCORE, PEXPIRE, WAIT with
// replica_acks, HSET and ZCOUNT of the semaphore scripts, PUBSUB NUMSUB),
// or not EVAL (needed once the server forgets the
// scripts), fails at Open, naming the command, instead of passing Open
// and failing at every acquire (or, for a command called with pcall,
// silently never pruning the waiter queue).
func TestOpenChecksScriptCommands(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	ctx := testCtx(t)
	admin := s.Client(t)
	for _, c := range []struct{ cmd, query string }{
		{"time", ""}, {"set", ""}, {"zrangebyscore", ""}, {"pexpire", ""}, {"wait", "?replica_acks=1"},
		{"hset", ""}, {"zcount", ""}, // semaphore scripts
		{"pubsub|numsub", ""}, // a release asks whether a waiter listens
		// Last, once the scripts are cached: EVALSHA then works
		// without +eval, until a SCRIPT FLUSH or a restart.
		{"eval", ""},
	} {
		t.Run(c.cmd, func(t *testing.T) {
			user := "no" + strings.ReplaceAll(c.cmd, "|", "-")
			rule := strings.ReplaceAll(minimalACL+" ", " +"+c.cmd+" ", " ")
			if rule == minimalACL+" " {
				t.Fatalf("+%s is not in the minimal rule", c.cmd)
			}
			if err := admin.Do(ctx, append([]any{"ACL", "SETUSER", user, "reset"}, toAny(strings.Fields(rule))...)...).Err(); err != nil {
				t.Fatal(err)
			}
			l, err := dlock.Open(ctx, "redis://"+user+":locker-secret-pw@"+s.Addr()+"/0"+c.query)
			if err == nil {
				l.Close()
				t.Fatalf("Open succeeded for a user without +%s, which the driver needs", c.cmd)
			}
			if !strings.Contains(strings.ToLower(err.Error()), c.cmd) {
				t.Errorf("Open error does not name %s: %v", c.cmd, err)
			}
			noSecret(t, err, "locker-secret-pw")
		})
	}
}

// TestScriptPermissionErrorSaysSo: a command refused inside a script
// (Redis answers "ERR The user executing the script can't run this
// command") is reported as a missing permission, like NOPERM, for a
// driver made by New, which Open's check does not cover.
func TestScriptPermissionErrorSaysSo(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	ctx := testCtx(t)
	rule := strings.ReplaceAll(minimalACL, " +time ", " ")
	if err := s.Client(t).Do(ctx, append([]any{"ACL", "SETUSER", "notime", "reset"}, toAny(strings.Fields(rule))...)...).Err(); err != nil {
		t.Fatal(err)
	}
	o := s.Options()
	o.Username, o.Password = "notime", "locker-secret-pw"
	d := redisdriver.NewDriver(newClient(t, o), nil)
	defer d.Close()
	_, err := d.Acquire(ctx, req("perm/k", "tok"))
	if err == nil || !strings.Contains(err.Error(), "lacks a permission") {
		t.Errorf("Acquire without +time = %v; want an error saying the user lacks a permission", err)
	}
}

// TestSilentPubsubConnection: the pub/sub connection goes silent (a
// half-open TCP connection: a NAT or firewall dropped it without a reset)
// while the connections for commands still work. A waiter's Subscribe on
// it must not hang until the 15s idle ping finds the connection dead
// twice: the unanswered SUBSCRIBE says so within a read timeout, the
// connection is replaced, and the waiter gets the key soon after the
// holder's release.
func TestSilentPubsubConnection(t *testing.T) {
	verifyNoLeaks(t)
	s := redistest.StartProcess(t, nil)
	px := redistest.NewProxy(t, s.Addr())
	var viaProxy atomic.Bool
	o := s.Options()
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if viaProxy.Load() {
			addr = px.Addr()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	client := redis.NewClient(o)
	defer client.Close()
	dw := redisdriver.NewDriver(client, nil)
	waiter := dlock.New(dw, &dlock.Options{TTL: 30 * time.Second, RenewInterval: -1, Retry: noPolling})
	defer waiter.Close()
	holder := newLocker(t, s.Options(), &dlock.Options{TTL: 30 * time.Second})
	ctx := testCtx(t)
	const key = "silent/k"

	// Only the pub/sub connection goes through the proxy.
	viaProxy.Store(true)
	for _, w := range subscribeN(t, dw, "silent/warm", 1) {
		w.cancel()
	}
	viaProxy.Store(false)
	px.Partition()

	lease, err := holder.TryAcquire(ctx, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 12*time.Second)
	defer cancel()
	got := goAcquire(wctx, waiter, key, nil)
	// The waiter's first attempt is busy (it queues itself); it then
	// subscribes.
	for client.ZCard(ctx, "dlock:{"+key+"}:queue").Val() == 0 {
		if ctx.Err() != nil {
			t.Fatal("the waiter never attempted")
		}
		time.Sleep(time.Millisecond)
	}
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	a := <-got
	if a.err != nil {
		t.Fatalf("waiter on a silent pub/sub connection: %v (%v after the release)", a.err, time.Since(released).Round(time.Millisecond))
	}
	if d := a.at.Sub(released); d > 8*time.Second {
		t.Errorf("waiter got the key %v after the release", d)
	}
	a.lease.Release(ctx)
	waiter.Close()
	px.Heal()
}

// TestReconnectStorm: one driver, many keys on its one pub/sub
// connection, waiters that come and go with short contexts, while the
// connection is killed again and again and the server restarts. No Subscribe outlives its context by more than a moment;
// afterwards every long-lived waiter is woken by its key's release, the
// server keeps no subscription of a waiter that left, and Close leaves no
// goroutine or connection behind.
func TestReconnectStorm(t *testing.T) {
	verifyNoLeaks(t)
	s := redistest.StartProcess(t, nil)
	admin := s.Client(t)
	o := s.Options()
	o.DialTimeout = 200 * time.Millisecond
	client := redis.NewClient(o)
	defer client.Close()
	d := redisdriver.NewDriver(client, nil)
	defer d.Close()
	direct := redisdriver.NewDriver(s.Client(t), nil)
	defer direct.Close()
	ctx := testCtx(t)

	const nLive = 40
	live := make([][]waiter, nLive)
	for i := range live {
		live[i] = subscribeN(t, d, "storm/live"+strconv.Itoa(i), 1)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var overran atomic.Int64
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := "storm/churn" + strconv.Itoa((g*7+i)%12)
				bound := time.Duration(1+i%40) * time.Millisecond
				sctx, cancel := context.WithTimeout(context.Background(), bound)
				start := time.Now()
				_, unsub, err := d.(driver.Notifier).Subscribe(sctx, key, "tok"+strconv.Itoa(g))
				if took := time.Since(start); took > bound+2*time.Second {
					overran.Add(1)
					t.Errorf("Subscribe with a %v context returned after %v (err %v)", bound, took, err)
				}
				cancel()
				if err == nil {
					unsub()
				}
			}
		}()
	}
	for i := range 12 {
		if i == 6 {
			s.Restart(t) // unreachable a moment, then empty
		} else {
			admin.ClientKillByFilter(ctx, "TYPE", "pubsub")
		}
		time.Sleep(80 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	for i := range live {
		drain(live[i])
	}
	for i := range live {
		releaseOnce(t, direct, "storm/live"+strconv.Itoa(i))
	}
	for i := range live {
		awaitWoken(t, live[i], "by a release after the storm")
	}
	for i := range live {
		live[i][0].cancel()
	}
	// Nothing of the churn is left subscribed on the server.
	deadline := time.Now().Add(wakeBound)
	for {
		chans, err := admin.PubSubChannels(ctx, "dlock:{storm/*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(chans) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("channels still subscribed after every waiter left: %v", chans)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.Close()
	client.Close()
	awaitNoPubsub(t, []*redistest.Server{s})
}

// TestCloseDuringResubscribe: Close while the reader resubscribes many
// channels after a killed connection, and while subscribers wait with no
// deadline: every Subscribe returns (with ErrClosed or live), Close
// returns, and no goroutine or connection is left.
func TestCloseDuringResubscribe(t *testing.T) {
	verifyNoLeaks(t)
	for round := range 5 {
		s := redistest.StartProcess(t, nil)
		admin := s.Client(t)
		client := redis.NewClient(s.Options())
		d := redisdriver.NewDriver(client, nil)
		for i := range 30 {
			subscribeN(t, d, "closing/"+strconv.Itoa(i), 1)
		}
		done := make(chan error, 20)
		for i := range 20 {
			go func() {
				ch, unsub, err := d.(driver.Notifier).Subscribe(context.Background(), "closing/new"+strconv.Itoa(i), "tok")
				if err == nil {
					<-ch // woken at Close
					unsub()
				}
				done <- err
			}()
		}
		admin.ClientKillByFilter(testCtx(t), "TYPE", "pubsub")
		if round%2 == 1 {
			time.Sleep(time.Duration(round) * time.Millisecond)
		}
		closed := make(chan struct{})
		go func() {
			d.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(wakeBound):
			t.Fatal("Close hangs while the driver resubscribes")
		}
		for range 20 {
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, dlock.ErrClosed) {
					t.Errorf("Subscribe ended by Close: %v; want ErrClosed", err)
				}
			case <-time.After(wakeBound):
				t.Fatal("a Subscribe with no deadline hangs after Close")
			}
		}
		client.Close()
		awaitNoPubsub(t, []*redistest.Server{s})
	}
}

// TestScriptFlush: after SCRIPT FLUSH (a restart, a failover to a replica
// that never ran the scripts, an operator) every operation still works:
// each path that runs a script by its SHA falls back to sending it
// (NOSCRIPT), pipelines included, on standalone, Sentinel with
// replica_acks, and Cluster.
func TestScriptFlush(t *testing.T) {
	type target struct {
		name   string
		client func(t *testing.T) redis.UniversalClient
		opts   *redisdriver.Options
		flush  func(ctx context.Context, t *testing.T)
	}
	flushAll := func(servers ...*redistest.Server) func(ctx context.Context, t *testing.T) {
		return func(ctx context.Context, t *testing.T) {
			for _, s := range servers {
				c := redis.NewClient(s.Options())
				err := c.ScriptFlush(ctx).Err()
				c.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	sa := redistest.Shared(t)
	se := redistest.SharedSentinel(t)
	cl := redistest.SharedCluster(t)
	targets := []target{
		{"Standalone", func(t *testing.T) redis.UniversalClient { return sa.Client(t) }, nil, flushAll(sa)},
		{"SentinelReplicaAcks", func(t *testing.T) redis.UniversalClient { return se.Client(t) },
			&redisdriver.Options{ReplicaAcks: 1, ReplicaTimeout: 2 * time.Second}, flushAll(se.Master(), se.Replica())},
		{"Cluster", func(t *testing.T) redis.UniversalClient { return cl.Client(t) }, nil, flushAll(cl.Nodes()...)},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			ctx := testCtx(t)
			d := redisdriver.NewDriver(tg.client(t), tg.opts)
			defer d.Close()
			key := uniqueKey("flush/")
			step := func(what string, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s after SCRIPT FLUSH: %v", what, err)
				}
			}
			tg.flush(ctx, t)
			res, err := d.Acquire(ctx, req(key, "a"))
			step("Acquire", err)
			if !res.Acquired {
				t.Fatal("Acquire of a free key: not acquired")
			}
			tg.flush(ctx, t)
			w := req(key, "b")
			w.Wait = time.Second
			res, err = d.Acquire(ctx, w)
			step("busy Acquire", err)
			if res.Acquired {
				t.Fatal("busy key acquired")
			}
			tg.flush(ctx, t)
			nf := req(key, "c")
			nf.NoFence = true
			_, err = d.Acquire(ctx, nf)
			step("busy NoFence Acquire", err)
			tg.flush(ctx, t)
			step("Refresh", d.Refresh(ctx, key, "a", 10*time.Second))
			tg.flush(ctx, t)
			errs := d.(driver.BatchRefresher).RefreshBatch(ctx, []driver.RefreshRequest{{Key: key, Token: "a", TTL: 10 * time.Second}})
			step("RefreshBatch", errs[0])
			tg.flush(ctx, t)
			_, _, err = d.(driver.Inspector).Inspect(ctx, key)
			step("Inspect", err)
			tg.flush(ctx, t)
			step("RaiseFence", d.(driver.FenceRaiser).RaiseFence(ctx, key, "a", res.Fence+1))
			tg.flush(ctx, t)
			step("Release", d.Release(ctx, key, "a"))
		})
	}
}

// TestExpiredSubscriberKeepsConnection: a Subscribe whose context's
// deadline has passed (an Acquire with a few ms left) must fail alone. It
// used to send SUBSCRIBE under that deadline; the write failed, and the
// shared pub/sub connection was dropped, so every channel of every waiter
// was subscribed again and every live waiter woken for nothing.
func TestExpiredSubscriberKeepsConnection(t *testing.T) {
	verifyNoLeaks(t)
	s := redistest.StartProcess(t, nil)
	admin := s.Client(t)
	client := redis.NewClient(s.Options())
	defer client.Close()
	d := redisdriver.NewDriver(client, nil)
	defer d.Close()
	ctx := testCtx(t)
	live := subscribeN(t, d, "expired/live", 1)
	before, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		ectx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Millisecond))
		// It fails with the context's error, or succeeds if the
		// confirmation won the race with the ended context.
		_, unsub, err := d.(driver.Notifier).Subscribe(ectx, "expired/k"+strconv.Itoa(i), "tok")
		cancel()
		if err == nil {
			unsub()
		} else if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Subscribe with an expired context: %v", err)
		}
	}
	// A subscription on the same connection afterwards is confirmed there.
	subscribeN(t, d, "expired/after", 1)
	select {
	case <-live[0].ch:
		t.Error("a live waiter was woken by other waiters' expired contexts: its connection was replaced")
	default:
	}
	after, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if a, b := pubsubIDs(before), pubsubIDs(after); a != b {
		t.Errorf("pub/sub connection replaced: ids %q before, %q after", a, b)
	}
}

// pubsubIDs returns the ids of the pub/sub clients in a CLIENT LIST.
func pubsubIDs(list string) string {
	var ids []string
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " sub=") && !strings.Contains(line, " sub=0 psub=0 ssub=0 ") {
			id, _, _ := strings.Cut(line, " ")
			ids = append(ids, id)
		}
	}
	return strings.Join(ids, ",")
}

// TestFenceKeyOutlivesFloor: a fence granted from a floor ahead of the
// server's clock (a client whose clock runs ahead; at most a TTL ahead)
// must stay on record until the server's clock has passed it, even when
// FenceExpiry is shorter than the TTL and the lock was released at once:
// otherwise the next grant, from the clock alone, goes below it.
func TestFenceKeyOutlivesFloor(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	d := redisdriver.NewDriver(s.Client(t), &redisdriver.Options{FenceExpiry: 100 * time.Millisecond})
	defer d.Close()
	ctx := testCtx(t)
	key := uniqueKey("fence/floor/")
	fast := req(key, "fast")
	fast.TTL = 5 * time.Second
	fast.FenceFloor = uint64(time.Now().Add(3 * time.Second).UnixMicro()) // a client 3s ahead
	res, err := d.Acquire(ctx, fast)
	if err != nil || !res.Acquired {
		t.Fatalf("Acquire = %+v, %v", res, err)
	}
	if err := d.Release(ctx, key, "fast"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // three fence expiries
	next, err := d.Acquire(ctx, req(key, "ontime"))
	if err != nil || !next.Acquired {
		t.Fatalf("Acquire = %+v, %v", next, err)
	}
	defer d.Release(ctx, key, "ontime")
	if next.Fence <= res.Fence {
		t.Errorf("fence went backwards: %d after %d (fence key PTTL %v)", next.Fence, res.Fence,
			admin.PTTL(ctx, "dlock:{"+key+"}:fence").Val())
	}
}

// TestClosedClientIsPermanent: a go-redis client that its owner closed
// never works again: an Acquire through it fails at once, with
// dlock.ErrClosed, instead of being retried as unavailable until the
// caller's context ends (forever with context.Background).
func TestClosedClientIsPermanent(t *testing.T) {
	s := redistest.Shared(t)
	client := redis.NewClient(s.Options())
	l := mustNew(t, client, nil)
	defer l.Close()
	client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := l.Acquire(ctx, "closed/k", nil)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Acquire through a closed client returned after %v (%v); want at once", took, err)
	}
	if !errors.Is(err, dlock.ErrClosed) {
		t.Errorf("Acquire through a closed client: %v; want ErrClosed", err)
	}
}

// TestOpenErrorsHideSecret: errors of Sentinel, Cluster, TLS and redlock
// URLs that fail at the network or at the server never show the
// password.
func TestOpenErrorsHideSecret(t *testing.T) {
	plain := redistest.Shared(t)
	se := redistest.SharedSentinel(t)
	closed := closedPort(t)
	for _, u := range []string{
		"redis+sentinel://user:" + secret + "@" + closed + "/mymaster?dial_timeout=300ms",
		"redis+sentinel://user:" + secret + "@" + se.Addrs()[0] + "/" + se.MasterName() + "?sentinel_auth=true",
		"redis+sentinel://user:" + secret + "@" + se.Addrs()[0] + "/nosuchmaster",
		"redis+sentinel://user:" + secret + "@" + se.Addrs()[0] + "/" + se.MasterName(),
		"rediss://user:" + secret + "@" + plain.Addr() + "?dial_timeout=1s&read_timeout=1s",
		"rediss+cluster://user:" + secret + "@" + plain.Addr() + "?dial_timeout=1s&read_timeout=1s",
		"redis+cluster://user:" + secret + "@" + closed + "?dial_timeout=300ms",
		"redis+cluster://user:" + secret + "@" + plain.Addr(),
		"redlock://user:" + secret + "@" + closed + "," + plain.Addr() + "," + se.Master().Addr() + "?dial_timeout=300ms",
		"redlocks://user:" + secret + "@" + closed + "," + plain.Addr() + "," + se.Master().Addr() + "?dial_timeout=300ms",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		start := time.Now()
		l, err := dlock.Open(ctx, u)
		cancel()
		t.Logf("%v: %s: %v", time.Since(start).Round(time.Millisecond), driver.RedactURL(u), err)
		if err == nil {
			l.Close()
			t.Errorf("Open(%s) succeeded with a wrong password", driver.RedactURL(u))
			continue
		}
		noSecret(t, err)
	}
}

// TestManyKeysResubscribe: after a reconnect, a connection carrying the
// subscriptions of many keys gets them all back at the pace of the
// server's replies. Matching each reply against the channels still due
// used to cost a scan of them all, under the notifier's lock: 30,000 keys
// took 2.5 minutes (-race) to be live again, and every Subscribe of the
// driver waited meanwhile.
func TestManyKeysResubscribe(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	admin := s.Client(t)
	client := redis.NewClient(s.Options())
	defer client.Close()
	d := redisdriver.NewDriver(client, nil)
	defer d.Close()
	const n = 20000
	chs := make([]<-chan struct{}, n)
	for i := range n {
		ch, unsub, err := d.(driver.Notifier).Subscribe(testCtx(t), "many/"+strconv.Itoa(i), "")
		if err != nil {
			t.Fatal(err)
		}
		defer unsub()
		chs[i] = ch
	}
	start := time.Now()
	if err := admin.ClientKillByFilter(testCtx(t), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(wakeBound)
	for i := range n {
		select {
		case <-chs[i]:
		case <-deadline:
			t.Fatalf("%d of %d subscriptions live again %v after the reconnect", i, n, wakeBound)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("%d subscriptions took %v to be live again after a reconnect", n, took)
	}
}

// TestSentinelReplicaOnlyRefused: replica_only=true connects a Sentinel
// client to replicas only, where every lock write is refused (READONLY),
// which is retried as unavailable: every Acquire would wait for its whole
// context, forever without a deadline. Open refuses it.
func TestSentinelReplicaOnlyRefused(t *testing.T) {
	se := redistest.SharedSentinel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l, err := dlock.Open(ctx, "redis+sentinel://"+se.Addrs()[0]+"/"+se.MasterName()+"?replica_only=true")
	if err == nil {
		_, aerr := l.TryAcquire(ctx, "replicaonly/k", nil)
		l.Close()
		t.Fatalf("Open with replica_only=true succeeded (TryAcquire then: %v)", aerr)
	}
	if !errors.Is(err, dlock.ErrInvalid) || !strings.Contains(err.Error(), "replica_only") {
		t.Errorf("Open with replica_only=true: %v; want ErrInvalid naming replica_only", err)
	}
	l, err = dlock.Open(ctx, "redis+sentinel://"+se.Addrs()[0]+"/"+se.MasterName()+"?replica_only=false")
	if err != nil {
		t.Fatalf("Open with replica_only=false: %v", err)
	}
	l.Close()
}

// TestOpenReplicaRefused: a redis:// URL that names a read-only replica
// (a common slip: the replica's address instead of the master's) fails at
// Open, saying so, instead of opening a Locker whose every acquire is
// refused (READONLY) and retried until its context ends.
func TestOpenReplicaRefused(t *testing.T) {
	master := redistest.StartProcess(t, nil)
	replica := redistest.StartProcess(t, nil)
	ctx := testCtx(t)
	host, port, _ := net.SplitHostPort(master.Addr())
	if err := replica.Client(t).SlaveOf(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	octx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	l, err := dlock.Open(octx, "redis://"+replica.Addr())
	if err == nil {
		_, aerr := l.TryAcquire(octx, "replica/k", nil)
		l.Close()
		t.Fatalf("Open of a read-only replica succeeded (TryAcquire then: %v)", aerr)
	}
	if !strings.Contains(err.Error(), "replica") {
		t.Errorf("Open of a replica: %v; want an error saying the server is a replica", err)
	}
	open(t, "redis://"+master.Addr()) // the master opens
}
