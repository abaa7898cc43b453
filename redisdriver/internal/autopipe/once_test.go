package autopipe_test

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dlock-go/dlock/redisdriver/internal/autopipe"
	"github.com/redis/go-redis/v9"
)

// hangUp listens on a free loopback port and closes every connection it
// accepts after reading from it: each attempt of a command fails with
// EOF, which go-redis retries unless told not to. It returns the address
// and the count of connections accepted.
func hangUp(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Read(make([]byte, 512))
			c.Close()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), &n
}

// TestOneAttemptPerCommand: a command through DoOnce, OnceDoer or a
// Pipeline is sent once, whatever the client's MaxRetries; the same
// command through client.Do is sent again, which shows that the server
// makes go-redis retry.
func TestOneAttemptPerCommand(t *testing.T) {
	ctx := testCtx(t)
	for _, tc := range []struct {
		name string
		do   func(c *redis.Client) error
	}{
		{"DoOnce", func(c *redis.Client) error { return autopipe.DoOnce(ctx, c, []any{"SET", "k", "v"}).Err() }},
		{"OnceDoer", func(c *redis.Client) error { return autopipe.OnceDoer{C: c}.Do(ctx, "SET", "k", "v").Err() }},
		{"Pipeline", func(c *redis.Client) error {
			p := autopipe.New(c, frees)
			defer p.Wait()
			return p.Do(ctx, "SET", "k", "v").Err()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := hangUp(t)
			c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: 3, ContextTimeoutEnabled: true})
			defer c.Close()
			if err := tc.do(c); err == nil {
				t.Fatal("a command to a server that hangs up succeeded")
			}
			if n := conns.Load(); n != 1 {
				t.Fatalf("the command was sent on %d connections, want one attempt", n)
			}
		})
	}
	t.Run("ClientDoRetries", func(t *testing.T) {
		addr, conns := hangUp(t)
		c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: 3, ContextTimeoutEnabled: true})
		defer c.Close()
		if err := c.Do(ctx, "SET", "k", "v").Err(); err == nil {
			t.Fatal("a command to a server that hangs up succeeded")
		}
		if n := conns.Load(); n < 2 {
			t.Fatalf("client.Do sent the command on %d connection: the server does not provoke retries, and the test shows nothing", n)
		}
	})
}

// TestUnsentWhenNoConnection: a command that found no connection (the
// dial was refused) fails with an UnsentError: it was never written.
func TestUnsentWhenNoConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the dial is refused
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer c.Close()
	err = autopipe.DoOnce(testCtx(t), c, []any{"PING"}).Err()
	var unsent *autopipe.UnsentError
	if !errors.As(err, &unsent) {
		t.Fatalf("refused dial: %v (%T), want an UnsentError", err, err)
	}
}
