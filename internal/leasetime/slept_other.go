//go:build !linux

package leasetime

import "time"

// slept is not measured outside Linux: it stays 0, and a deadline there
// sees a suspend only as far as Go's monotonic clock counts it (macOS's
// does not).
func slept() time.Duration { return 0 }
