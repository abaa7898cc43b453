package redlock_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
)

// TestOpenChecksPermissions: a redlock:// URL whose user may not run a
// command the nodes' scripts need (TIME here), or may not use the
// driver's channels, fails at Open, as redis:// does, instead of opening
// and then failing every acquire.
func TestOpenChecksPermissions(t *testing.T) {
	cases := []struct{ name, rule, want string }{
		{"NoTime", "on >pw-secret-1 ~dlock:* &dlock:* +@scripting +@read +@write +@pubsub +ping", "TIME"},
		{"NoChannels", "on >pw-secret-1 ~dlock:* resetchannels +@scripting +@read +@write +@pubsub +time +ping", "channel"},
	}
	var hosts []string
	var servers []*redistest.Server
	for range 3 {
		s := redistest.StartProcess(t, nil)
		servers = append(servers, s)
		hosts = append(hosts, s.Addr())
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			user := strings.ToLower(c.name)
			for _, s := range servers {
				args := []any{"ACL", "SETUSER", user, "reset"}
				for _, f := range strings.Fields(c.rule) {
					args = append(args, f)
				}
				if err := s.Client(t).Do(ctx, args...).Err(); err != nil {
					t.Fatal(err)
				}
			}
			l, err := dlock.Open(ctx, "redlock://"+user+":pw-secret-1@"+strings.Join(hosts, ",")+"/0", nil)
			if err == nil {
				_, aerr := l.TryAcquire(ctx, "perm/k", nil)
				l.Close()
				t.Fatalf("Open succeeded for a user without a permission the nodes need (TryAcquire then: %v)", aerr)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("Open error does not name %q: %v", c.want, err)
			}
			if strings.Contains(err.Error(), "pw-secret-1") {
				t.Errorf("Open error shows the password: %v", err)
			}
		})
	}
}
