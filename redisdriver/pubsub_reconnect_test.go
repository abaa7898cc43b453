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
	"github.com/redis/go-redis/v9"
)

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
	waiter := dlock.New(dw, &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 30 * time.Second, RenewInterval: -1, Retry: noPolling}})
	defer waiter.Close()
	holder := newLocker(t, s.Options(), &dlock.Options{LeaseOptions: dlock.LeaseOptions{TTL: 30 * time.Second}})
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
				_, unsub, err := d.(driver.Notifier).Subscribe(sctx, key)
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
				ch, unsub, err := d.(driver.Notifier).Subscribe(context.Background(), "closing/new"+strconv.Itoa(i))
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

// TestExpiredSubscriberKeepsConnection: a Subscribe whose context's
// deadline has passed (an Acquire with a few ms left) must fail alone. A
// SUBSCRIBE written under that deadline would fail, and dropping the
// shared pub/sub connection for it would subscribe every channel of every
// waiter again and wake every live waiter for nothing.
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
		_, unsub, err := d.(driver.Notifier).Subscribe(ectx, "expired/k"+strconv.Itoa(i))
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

// TestManyKeysResubscribe: after a reconnect, a connection carrying the
// subscriptions of many keys gets them all back at the pace of the
// server's replies. Matching each reply must not scan all the channels
// still due under the notifier's lock: with such a scan, 30,000 keys take
// 2.5 minutes (-race) to be live again, and every Subscribe of the driver
// waits meanwhile.
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
		ch, unsub, err := d.(driver.Notifier).Subscribe(testCtx(t), "many/"+strconv.Itoa(i))
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
