package linearize

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/memdriver"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/dlock-go/dlock/redlock"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }

// Workload.
const (
	clients    = 6
	runFor     = 2 * time.Second
	maxOps     = 300 // per client
	checkLimit = time.Minute
)

var keys = []string{"a", "b"}

// backend makes the driver of each client; quorum says whether busy
// attempts may come from split votes (see Input.Excused).
type backend struct {
	newDriver func(t *testing.T) driver.Locker
	quorum    bool
}

func TestLinearizable(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T) backend
	}{
		{"Memdriver", func(t *testing.T) backend {
			s := memdriver.NewStore()
			return backend{newDriver: func(*testing.T) driver.Locker { return s.Driver() }}
		}},
		{"Redis", func(t *testing.T) backend {
			srv := redistest.Start(t)
			return backend{newDriver: func(t *testing.T) driver.Locker {
				return redisdriver.NewDriver(srv.Client(t), nil)
			}}
		}},
		{"RedisLatency", func(t *testing.T) backend {
			srv := redistest.Start(t)
			px := redistest.NewProxy(t, srv.Addr())
			px.Latency(2 * time.Millisecond)
			return backend{newDriver: func(t *testing.T) driver.Locker {
				return redisdriver.NewDriver(client(t, srv, px.Addr()), nil)
			}}
		}},
		{"Cluster", func(t *testing.T) backend {
			c := redistest.StartCluster(t)
			return backend{newDriver: func(t *testing.T) driver.Locker {
				return redisdriver.NewDriver(c.Client(t), nil)
			}}
		}},
		{"Redlock", func(t *testing.T) backend {
			var addrs []string
			var srvs []*redistest.Server
			for range 3 {
				s := redistest.Start(t)
				srvs = append(srvs, s)
				addrs = append(addrs, s.Addr())
			}
			return backend{quorum: true, newDriver: func(t *testing.T) driver.Locker {
				return quorum(t, srvs, addrs)
			}}
		}},
		{"RedlockLatency", func(t *testing.T) backend {
			var addrs []string
			var srvs []*redistest.Server
			for range 3 {
				s := redistest.Start(t)
				px := redistest.NewProxy(t, s.Addr())
				px.Latency(2 * time.Millisecond)
				srvs = append(srvs, s)
				addrs = append(addrs, px.Addr())
			}
			return backend{quorum: true, newDriver: func(t *testing.T) driver.Locker {
				return quorum(t, srvs, addrs)
			}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, tt.make(t))
		})
	}
}

// client returns a client of srv that connects to addr (a proxy of it).
func client(t *testing.T, srv *redistest.Server, addr string) *redis.Client {
	o := srv.Options()
	o.Addr = addr
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// quorum returns a redlock driver over new clients of srvs at addrs.
func quorum(t *testing.T, srvs []*redistest.Server, addrs []string) driver.Locker {
	nodes := make([]driver.Locker, len(srvs))
	for i, s := range srvs {
		nodes[i] = redisdriver.NewDriver(client(t, s, addrs[i]), nil)
	}
	d, err := redlock.NewDriver(nodes, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// run drives the workload on b, checks the history and that no key is left
// held.
func run(t *testing.T, b backend) {
	h := NewHistory()
	prefix := fmt.Sprintf("linearize-%s-%d/", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
	var wg sync.WaitGroup
	stop := time.Now().Add(runFor)
	for c := range clients {
		rec := &Recorder{Locker: b.newDriver(t), H: h, Client: c}
		l := dlock.New(rec, &dlock.Options{TTL: 30 * time.Second, Owner: fmt.Sprint("client-", c)})
		wg.Go(func() {
			defer func() {
				if err := l.Close(); err != nil {
					t.Errorf("client %d: Close = %v", c, err)
				}
			}()
			work(t, l, h, c, prefix, stop)
		})
	}
	wg.Wait()

	// After the run no key may be left held.
	d := b.newDriver(t)
	defer d.Close()
	for _, k := range keys {
		res, err := d.Acquire(t.Context(), driver.Request{Key: prefix + k, Token: "final-check", TTL: time.Second, Owner: "check"})
		switch {
		case err != nil:
			t.Errorf("final acquire of %q: %v", k, err)
		case !res.Acquired:
			t.Errorf("key %q still held after every client released and closed (for %v more): a phantom holder", k, res.HolderTTL)
		default:
			d.Release(t.Context(), prefix+k, "final-check")
		}
	}

	ops := h.Operations(b.quorum)
	res, info := porcupine.CheckOperationsVerbose(Model.ToModel(), ops, checkLimit)
	counts := map[string]int{}
	for _, op := range ops {
		counts[fmt.Sprint(op.Input.(Input).Kind, "/", op.Output.(Output).Result)]++
	}
	t.Logf("%d operations: %v", len(ops), counts)
	if res == porcupine.Ok {
		return
	}
	dir := os.Getenv("DLOCK_ARTIFACTS")
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("linearize-%s-%d.html", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano()))
	if err := porcupine.VisualizePath(Model.ToModel(), info, path); err != nil {
		t.Logf("visualization: %v", err)
	}
	t.Errorf("history of %d operations is %s for a lock with fences; visualization: %s", len(ops), res, path)
}

// work is one client: until stop, or maxOps, it takes a random key and,
// if it holds it, refreshes it with a new TTL or releases it; else it
// tries to take it, once or waiting a few milliseconds.
func work(t *testing.T, l *dlock.Locker, h *History, c int, prefix string, stop time.Time) {
	held := map[string]*dlock.Lease{}
	ctx := t.Context()
	for n := 0; n < maxOps && time.Now().Before(stop); n++ {
		key := prefix + keys[rand.N(len(keys))]
		if lease := held[key]; lease != nil {
			if rand.N(3) == 0 {
				lease.Refresh(ctx, time.Duration(10+rand.N(21))*time.Second)
				continue
			}
			delete(held, key)
			lease.Release(ctx)
			continue
		}
		actx, toks := WithTokens(ctx)
		var lease *dlock.Lease
		var err error
		switch rand.N(3) {
		case 0:
			lease, err = l.TryAcquire(actx, key, nil)
		case 1:
			wctx, cancel := context.WithTimeout(actx, time.Duration(1+rand.N(5))*time.Millisecond)
			lease, err = l.Acquire(wctx, key, nil)
			cancel()
		default:
			wctx, cancel := context.WithTimeout(actx, time.Duration(20+rand.N(30))*time.Millisecond)
			lease, err = l.Acquire(wctx, key, nil)
			cancel()
		}
		if err == nil {
			held[key] = lease
			continue
		}
		if !errors.Is(err, dlock.ErrNotAcquired) {
			t.Errorf("client %d: acquire: %v", c, err)
		}
		ret := h.Now()
		for _, tok := range toks.Tokens() {
			h.Add(c, Input{Kind: GiveUp, Key: key, Token: tok}, ret, Output{}, ret)
		}
	}
	for _, lease := range held {
		lease.Release(ctx)
	}
}
