package etcddriver_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
)

// slowLink is a TCP proxy that delays what the client sends by a fixed
// time, in order (a slow link to one member: a request sent on it lands
// after later requests the client sent to other members). Replies pass
// at once.
type slowLink struct {
	ln    net.Listener
	delay time.Duration
	wg    sync.WaitGroup

	mu      sync.Mutex
	pending int           // chunks sent by clients, not yet written upstream
	idle    chan struct{} // closed when pending drops to 0; nil while 0
	conns   []net.Conn
}

func newSlowLink(t *testing.T, upstream string, delay time.Duration) *slowLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &slowLink{ln: ln, delay: delay}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			s.mu.Lock()
			s.conns = append(s.conns, c, u)
			s.mu.Unlock()
			s.wg.Go(func() { io.Copy(c, u); c.Close() })
			s.wg.Go(func() { s.up(c, u) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *slowLink) addr() string { return s.ln.Addr().String() }

// up copies c to u, each chunk delay after it was read.
func (s *slowLink) up(c, u net.Conn) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	ch := make(chan chunk, 1024)
	s.wg.Go(func() {
		for k := range ch {
			time.Sleep(time.Until(k.at))
			u.Write(k.data)
			s.done()
		}
		u.Close()
	})
	defer close(ch)
	for {
		buf := make([]byte, 32<<10)
		n, err := c.Read(buf)
		if n > 0 {
			s.mu.Lock()
			if s.pending == 0 {
				s.idle = make(chan struct{})
			}
			s.pending++
			s.mu.Unlock()
			ch <- chunk{time.Now().Add(s.delay), buf[:n]}
		}
		if err != nil {
			return
		}
	}
}

func (s *slowLink) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending--; s.pending == 0 {
		close(s.idle)
		s.idle = nil
	}
}

// drained waits until everything sent so far was written upstream.
func (s *slowLink) drained(ctx context.Context) {
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
		}
	}
}

// TestLateReleaseOverSlowLink is TestLateLeaseReleaseSparesNextLease
// without a test client: a Locker whose client spreads its calls over
// three members, one of them behind a link that delays requests by
// 300 ms. Its leases are released by callers that give up after 50 ms
// (dlock then releases again), and the next lease of the Locker takes the
// key at once. When the slow link has delivered everything, another
// Locker must find the key held: a first release's delete, landing late
// on the slow member, must not have freed the next lease's key.
func TestLateReleaseOverSlowLink(t *testing.T) {
	c := etcdtest.Start(t, 3)
	ctx := testCtx(t)
	ms := c.Members()
	slow := newSlowLink(t, hostPort(ms[0]), 300*time.Millisecond)
	l := etcddriver.New(c.Client(t, "http://"+slow.addr(), ms[1].ClientURL, ms[2].ClientURL), nil)
	other := etcddriver.New(c.Client(t), nil)
	t.Cleanup(func() { l.Close(); other.Close() })
	const key, rounds = "attack/slow-link", 30

	for i := range rounds {
		a, err := l.TryAcquire(ctx, key, nil)
		if err != nil {
			t.Fatalf("round %d: TryAcquire(a) = %v", i, err)
		}
		rctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		a.Release(rctx)
		cancel()
		b, err := l.TryAcquire(ctx, key, nil)
		if err != nil {
			t.Fatalf("round %d: TryAcquire(b) = %v", i, err)
		}
		slow.drained(ctx)
		if got, err := other.TryAcquire(ctx, key, nil); err == nil {
			got.Release(ctx)
			t.Fatalf("round %d: another Locker got the key (fence %d) while b holds it (fence %d): two holders", i, got.Fence(), b.Fence())
		}
		if err := b.Release(ctx); err != nil {
			t.Fatalf("round %d: Release(b) = %v", i, err)
		}
	}
}
