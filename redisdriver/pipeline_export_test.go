package redisdriver

import (
	"context"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver/internal/autopipe"
	"github.com/redis/go-redis/v9"
)

// SetQueuedHookForTest makes d, a driver of NewDriver, run f each time a
// call joins the queue of one of its batchers.
func SetQueuedHookForTest(d driver.Locker, f func()) {
	d.(*locker).pipe.SetQueued(f)
}

// SetLanesForTest makes d, a driver of NewDriver, send up to lanes
// commands or batches at once, its senders yielding unless eager; before
// its first call. lanes AllDirectForTest sends every command directly.
func SetLanesForTest(d driver.Locker, lanes int, eager bool) {
	d.(*locker).pipe.SetLanes(lanes, eager)
}

// MaxInFlightForTest is how many commands or batches go out before calls
// queue for the next batch.
const MaxInFlightForTest = autopipe.MaxInFlight

// AllDirectForTest, as lanes of SetLanesForTest, sends every command
// alone, from its caller, as if there were no batcher.
const AllDirectForTest = autopipe.AllDirect

// PipelineDoForTest runs the command args through the batchers of d, a
// driver of NewDriver, as its calls on one key do.
func PipelineDoForTest(ctx context.Context, d driver.Locker, args ...any) *redis.Cmd {
	return d.(*locker).pipe.Do(ctx, args...)
}
