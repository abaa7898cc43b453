package redisdriver

import "github.com/dlock-go/dlock/driver"

// SetQueuedHookForTest makes d, a driver of NewDriver, run f each time a
// call joins the queue of its batcher.
func SetQueuedHookForTest(d driver.Locker, f func()) {
	d.(*locker).pipe.queued = f
}

// MaxInFlightForTest is how many commands or batches go out before calls
// queue for the next batch.
const MaxInFlightForTest = maxInFlight
