package dlock_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/memdriver"
)

// TestLeasePrintsNoToken prints a lease every way fmt and log/slog can and
// checks that the token never shows, while the key and fence do.
func TestLeasePrintsNoToken(t *testing.T) {
	ctx := context.Background()
	l := memdriver.New(&dlock.Options{LeaseOptions: dlock.LeaseOptions{Owner: "worker-1"}})
	defer l.Close()
	lease, err := l.TryAcquire(ctx, "printed-key", nil)
	if err != nil {
		t.Fatal(err)
	}
	token := lease.Token()
	if token == "" {
		t.Fatal("empty token")
	}
	check := func(how, out string, wantKey bool) {
		t.Helper()
		if strings.Contains(out, token) {
			t.Errorf("%s shows the token: %s", how, out)
		}
		if wantKey && !strings.Contains(out, "printed-key") {
			t.Errorf("%s does not show the key: %s", how, out)
		}
	}
	printAll := func(state string) {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
			check("Sprintf("+verb+", lease)", fmt.Sprintf(verb, lease), verb != "%x" && verb != "%X" && verb != "%T")
		}
		check("Sprint(lease)", fmt.Sprint(lease), true)
		check("Sprintf(%+v) of a struct holding a *Lease", fmt.Sprintf("%+v", struct{ L *dlock.Lease }{lease}), true)
		check("Sprintf(%+v) of a slice of leases", fmt.Sprintf("%+v", []*dlock.Lease{lease}), false)
		if s := lease.String(); !strings.Contains(s, "state:"+state) || !strings.Contains(s, "owner:\"worker-1\"") {
			t.Errorf("String() = %s; want state %s and the owner", s, state)
		}
		var buf bytes.Buffer
		for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
			log := slog.New(h)
			log.Info("got it", "lease", lease)
			log.Info("got it", slog.Any("lease", lease))
		}
		check("slog", buf.String(), true)
		if !strings.Contains(buf.String(), `"state":"`+state+`"`) || !strings.Contains(buf.String(), "lease.fence=") {
			t.Errorf("slog output lacks the lease's fields: %s", buf.String())
		}
	}
	printAll("held")
	if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	printAll("released")
	check("zero Lease", fmt.Sprintf("%+v", dlock.Lease{}), false)
}
