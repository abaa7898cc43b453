package redisdriver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
)

// TestPassOnMarksHeldLock: a waiter that passes its turn on (wakeScript)
// and finds the key held again marks that lock, so that its release wakes
// the waiters left behind; without the mark the release wakes nobody.
func TestPassOnMarksHeldLock(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	c := s.Client(t)
	d := newLocker(c, nil, false)
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const key = "passon/k"
	publishes := func(pass bool) string {
		t.Helper()
		if res, err := d.Acquire(ctx, driver.Request{Key: key, Token: "holder", TTL: 10 * time.Second, Owner: "o"}); err != nil || !res.Acquired {
			t.Fatalf("acquire: %+v, %v", res, err)
		}
		if err := c.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if pass {
			lk, fk, qk, ak := d.queueKeys(key)
			n, err := eval(ctx, c, wakeScript, []any{nil, nil, 4, lk, fk, qk, ak, "", d.publish, d.notify.scope}).Int64()
			if err != nil || n != 0 {
				t.Fatalf("wakeScript on a held key: %v, %v; want 0", n, err)
			}
		}
		if err := d.Release(ctx, key, "holder"); err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			if strings.HasPrefix(line, "cmdstat_publish:") {
				return line
			}
		}
		return ""
	}
	if got := publishes(false); got != "" {
		t.Errorf("a release nobody waited for published: %s", got)
	}
	if got := publishes(true); !strings.Contains(got, "calls=1,") {
		t.Errorf("the release of a lock a waiter passed its turn on to: %q, want one PUBLISH", got)
	}
}
