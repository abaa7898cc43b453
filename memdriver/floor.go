package memdriver

import (
	"context"

	"github.com/dlock-go/dlock/driver"
)

// AcquireFloor implements redlock.FloorAcquirer (without importing it:
// the method is the contract): a grant's fence is the largest of floor
// and one more than the key's last fence.
func (c *client) AcquireFloor(ctx context.Context, req driver.Request, floor uint64) (driver.Result, error) {
	return c.acquire(ctx, req, driver.Queued{}, floor)
}
