package pubsub_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver/internal/pubsub"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }

// testCtx returns a context that ends with the test, bounded so that a
// hang fails the test instead of the whole binary.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// message is one message that reached recorder.Message.
type message struct {
	ch, payload string
	subscribed  bool // the Mux had a subscription of ch on its connection
}

// recorder is a Hooks that records what the Mux reports, in channels
// buffered enough for a test.
type recorder struct {
	messages     chan message
	unsubscribed chan string
	resets       chan struct{}
}

func newRecorder() *recorder {
	return &recorder{messages: make(chan message, 64), unsubscribed: make(chan string, 64), resets: make(chan struct{}, 64)}
}

func (r *recorder) Message(_ *pubsub.Conn, s *pubsub.Sub, ch, payload string) func() {
	r.messages <- message{ch, payload, s != nil}
	return nil
}
func (r *recorder) Unsubscribed(_ *pubsub.Conn, ch string)     { r.unsubscribed <- ch }
func (r *recorder) Reset(*pubsub.Conn)                         { r.resets <- struct{}{} }
func (r *recorder) PermissionError(ch string, err error) error { return err }
func (r *recorder) Closing() func()                            { return nil }

// member is a Member that counts its wake-ups and cuts.
type member struct {
	woken chan struct{}
	mu    sync.Mutex
	cut   bool
}

func newMember() *member { return &member{woken: make(chan struct{}, 1)} }

func (m *member) Wake() {
	select {
	case m.woken <- struct{}{}:
	default:
	}
}

func (m *member) Cut() {
	m.mu.Lock()
	m.cut = true
	m.mu.Unlock()
}

func (m *member) wasCut() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cut
}

// join subscribes m to chans and waits until every subscription is live.
func join(t *testing.T, mux *pubsub.Mux, m pubsub.Member, chans ...string) []*pubsub.Sub {
	t.Helper()
	ctx := testCtx(t)
	subs := make([]*pubsub.Sub, len(chans))
	readies := make([]*pubsub.Readiness, len(chans))
	fresh, err := mux.Join(chans, m, subs, readies, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(fresh) > 0 {
		mux.Place(ctx, fresh)
	}
	for i, r := range readies {
		select {
		case <-r.Done():
			if err := r.Err(); err != nil {
				t.Fatalf("subscribe %q: %v", chans[i], err)
			}
		case <-ctx.Done():
			t.Fatalf("subscribe %q: never live nor failed", chans[i])
		}
	}
	return subs
}

// await returns the next value of ch, failing the test if none comes in
// time.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-testCtx(t).Done():
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}
