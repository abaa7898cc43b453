package redisdriver_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
)

// TestDisableFencingRedis: a lock lease taken with fencing disabled, by
// option or by URL, has Fence 0 and leaves no fence key on the server
// (the bare SET NX took it); by default the lease has a fence and the
// fence key holds it.
func TestDisableFencingRedis(t *testing.T) {
	s := redistest.Shared(t)
	admin := s.Client(t)
	ctx := testCtx(t)
	run := "nofence/" + strconv.FormatInt(time.Now().UnixNano(), 36) + "/" // fence keys outlive a run
	open := func(t *testing.T, how string) *dlock.Locker {
		t.Helper()
		switch how {
		case "url":
			l, err := dlock.Open(ctx, "redis://"+s.Addr()+"?fencing=false", nil)
			if err != nil {
				t.Fatal(err)
			}
			return l
		case "option":
			return mustNew(t, s.Client(t), &redisdriver.Options{Lock: &dlock.Options{LeaseOptions: dlock.LeaseOptions{DisableFencing: true}}})
		}
		return mustNew(t, s.Client(t), nil)
	}
	for _, how := range []string{"default", "option", "url"} {
		t.Run(how, func(t *testing.T) {
			l := open(t, how)
			defer l.Close()
			key := run + how
			lease, err := l.TryAcquire(ctx, key, nil)
			if err != nil {
				t.Fatal(err)
			}
			fk := redisdriver.DefaultPrefix + "{" + key + "}:fence"
			n, err := admin.Exists(ctx, fk).Result()
			if err != nil {
				t.Fatal(err)
			}
			h, ok, err := soleHolder(l.Holders(ctx, key))
			if err != nil || !ok {
				t.Fatalf("Holder = %+v, %v, %v", h, ok, err)
			}
			if how == "default" {
				if lease.Fence() == 0 || n != 1 || h.Fence != lease.Fence() {
					t.Errorf("fences on: Fence %d, fence key exists %d, holder's fence %d; want a fence, on record",
						lease.Fence(), n, h.Fence)
				}
			} else if lease.Fence() != 0 || n != 0 || h.Fence != 0 {
				t.Errorf("fences off: Fence %d, fence key exists %d, holder's fence %d; want 0, none, 0",
					lease.Fence(), n, h.Fence)
			}
			// Renewal and release work as with fences.
			if err := lease.Refresh(ctx, 0); err != nil {
				t.Errorf("Refresh: %v", err)
			}
			if n, _ := admin.Exists(ctx, fk).Result(); how != "default" && n != 0 {
				t.Error("a refresh of a lease without fence made a fence key")
			}
			if err := lease.Release(ctx); err != nil {
				t.Errorf("Release: %v", err)
			}
		})
	}
}
