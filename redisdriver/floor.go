package redisdriver

import "github.com/dlock-go/dlock/driver"

var _ driver.FenceFloorer = (*locker)(nil)

// CheckFenceFloors implements [driver.FenceFloorer]: the acquire script
// grants the largest of Request.FenceFloor (capped at the server's clock
// plus the TTL), the server's clock in µs and one more than the last fence.
func (d *locker) CheckFenceFloors() error { return nil }
