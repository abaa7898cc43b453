package redisdriver_test

import (
	"testing"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// TestReleaseNotificationsStayInTheirDB: pub/sub ignores the database
// number, so release channels are scoped by database: a release of a key
// in database 1 wakes the waiters of that key in database 1 only, not
// those of the same key (and prefix) in database 0.
func TestReleaseNotificationsStayInTheirDB(t *testing.T) {
	verifyNoLeaks(t)
	s := redistest.StartProcess(t, nil)
	o1 := s.Options()
	o1.DB = 1
	d0 := redisdriver.NewDriver(s.Client(t), nil)
	defer d0.Close()
	d1 := redisdriver.NewDriver(newClient(t, o1), nil)
	defer d1.Close()
	const key, marker = "db/k", "db/marker"
	w0 := subscribeN(t, d0, key, 1)[0]
	m0 := subscribeN(t, d0, marker, 1)[0]
	w1 := subscribeN(t, d1, key, 1)[0]

	releaseOnce(t, d1, key)
	awaitWoken(t, []waiter{w1}, "in database 1 by a release there")
	// Messages reach d0's one connection in the order they were
	// published: once the marker's release is seen, a crossing message
	// for key would have been seen before it.
	releaseOnce(t, d0, marker)
	awaitWoken(t, []waiter{m0}, "by a release in database 0")
	select {
	case <-w0.ch:
		t.Fatal("a release in database 1 woke a waiter of the same key in database 0")
	default:
	}
	releaseOnce(t, d0, key)
	awaitWoken(t, []waiter{w0}, "in database 0 by a release there")
}

// newClient returns a new client with options o, closed when t ends.
func newClient(t *testing.T, o *redis.Options) *redis.Client {
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}
