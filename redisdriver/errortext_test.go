package redisdriver_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/internal/redistest"
	_ "github.com/dlock-go/dlock/redisdriver"
)

// TestOpenErrorShowsCauseWithCommonPassword: with a common development
// password, the error still says what went wrong ("connection refused")
// and shows no password. The whole text was hidden before ("error text
// not shown: it contains the password"), because "redis" occurs in
// go-redis's messages.
func TestOpenErrorShowsCauseWithCommonPassword(t *testing.T) {
	for _, pw := range []string{"redis", "password", "refused"} {
		_, err := dlock.Open(testCtx(t), "redis://:"+pw+"@"+closedPort(t), nil)
		if err == nil {
			t.Fatalf("Open of a closed port succeeded")
		}
		msg := err.Error()
		if !strings.Contains(msg, "connection refused") && pw != "refused" || strings.Contains(msg, ":"+pw+"@") {
			t.Errorf("Open with password %q = %q; want the cause shown and the password not", pw, msg)
		}
		if !errors.Is(err, dlock.ErrUnavailable) {
			t.Errorf("Open of a closed port = %v; want ErrUnavailable", err)
		}
	}
}

// TestOpenWrongPasswordSaysSo: a wrong password that is a common word is
// reported as an authentication failure, readable, with the password
// masked where it stands on its own.
func TestOpenWrongPasswordSaysSo(t *testing.T) {
	srv := redistest.StartACL(t)
	_, err := dlock.Open(testCtx(t), "redis://"+redistest.FullUser.Username+":password@"+srv.Addr(), nil)
	if err == nil {
		t.Fatal("Open with a wrong password succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "authentication failed") || strings.Contains(msg, "not shown") {
		t.Errorf("Open with a wrong password = %q; want it to say authentication failed", msg)
	}
}

// TestTLSToPlaintextFailsFast: rediss:// at a plaintext server fails
// within the dial timeout, says that the server may not speak TLS on the
// port, and is ErrUnavailable. It hung 25 s (five dials of 5 s) and said
// "context deadline exceeded", neither ErrUnavailable nor ErrInvalid.
func TestTLSToPlaintextFailsFast(t *testing.T) {
	srv := redistest.Start(t)
	start := time.Now()
	_, err := dlock.Open(testCtx(t), "rediss://"+srv.Addr()+"?dial_timeout=1s", nil)
	took := time.Since(start)
	if err == nil {
		t.Fatal("Open with TLS of a plaintext server succeeded")
	}
	if !errors.Is(err, dlock.ErrUnavailable) || !strings.Contains(err.Error(), "TLS handshake failed: is the server speaking TLS on this port?") {
		t.Errorf("Open with TLS of a plaintext server = %v; want ErrUnavailable and the TLS hint", err)
	}
	if took > 2500*time.Millisecond {
		t.Errorf("Open with TLS of a plaintext server took %v; want about the 1s dial timeout", took)
	}
}

// TestOpenNamesRefusedPubSubCommand: a user with the channel pattern but
// without +publish (or +subscribe) is told to grant the command, not the
// channel pattern it already has.
func TestOpenNamesRefusedPubSubCommand(t *testing.T) {
	s := redistest.StartProcess(t, nil)
	ctx := testCtx(t)
	admin := s.Client(t)
	for _, cmd := range []string{"publish", "subscribe"} {
		user := "no" + cmd
		rule := strings.ReplaceAll(minimalACL+" ", " +"+cmd+" ", " ")
		if err := admin.Do(ctx, append([]any{"ACL", "SETUSER", user, "reset"}, toAny(strings.Fields(rule))...)...).Err(); err != nil {
			t.Fatal(err)
		}
		l, err := dlock.Open(ctx, "redis://"+user+":locker-secret-pw@"+s.Addr()+"/0", nil)
		if err == nil {
			l.Close()
			t.Fatalf("Open succeeded for a user without +%s", cmd)
		}
		if msg := err.Error(); !strings.Contains(msg, "grant it +"+cmd) || strings.Contains(msg, "channel pattern") {
			t.Errorf("Open without +%s = %v; want it to name +%s, not the channel pattern the user has", cmd, err, cmd)
		}
	}
}
