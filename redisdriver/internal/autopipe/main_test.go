package autopipe_test

import (
	"context"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
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

// frees is the driver's part in New: no command here frees a key.
func frees([]any) (any, bool) { return nil, false }
