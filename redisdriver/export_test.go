package redisdriver

import (
	"net/url"

	"github.com/redis/go-redis/v9"
)

// NewClientForTest makes the client of a URL without I/O, for tests of
// the options that a URL sets.
func NewClientForTest(u *url.URL) (redis.UniversalClient, error) {
	c, _, err := newClient(u)
	return c, err
}
