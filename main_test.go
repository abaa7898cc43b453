package dlock_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/dlock-go/dlock/internal/redistest"
)

// TestMain stops the Redis servers shared by the tests before goleak looks.
func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }
