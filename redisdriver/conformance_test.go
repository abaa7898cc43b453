package redisdriver_test

import (
	"testing"

	"github.com/dlock-go/dlock/conformance"
	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/internal/redistest"
	"github.com/dlock-go/dlock/redisdriver"
	"github.com/redis/go-redis/v9"
)

// standaloneHarness runs the suite on one server (plain, or TLS with ACL
// users); Partitioned puts a proxy between the client and the server.
func standaloneHarness(s *redistest.Server) func(t *testing.T) *conformance.Harness {
	return func(t *testing.T) *conformance.Harness {
		return &conformance.Harness{
			NewDriver: func(t *testing.T) driver.Locker {
				return redisdriver.NewDriver(s.Client(t), nil)
			},
			Partitioned: func(t *testing.T) (driver.Locker, func()) {
				px := redistest.NewProxy(t, s.Addr())
				o := s.Options()
				o.Addr = px.Addr()
				c := redis.NewClient(o)
				t.Cleanup(func() { c.Close() })
				return redisdriver.NewDriver(c, nil), px.Partition
			},
		}
	}
}

func TestConformanceStandalone(t *testing.T) {
	conformance.Run(t, standaloneHarness(redistest.Shared(t)))
}

func TestConformanceTLSACL(t *testing.T) {
	conformance.Run(t, standaloneHarness(redistest.SharedTLS(t)))
}

func TestConformanceCluster(t *testing.T) {
	cl := redistest.SharedCluster(t)
	conformance.Run(t, func(t *testing.T) *conformance.Harness {
		return &conformance.Harness{
			NewDriver: func(t *testing.T) driver.Locker {
				return redisdriver.NewDriver(cl.Client(t), nil)
			},
			Partitioned: func(t *testing.T) (driver.Locker, func()) {
				proxies := make(map[string]*redistest.Proxy)
				for _, a := range cl.Addrs() {
					proxies[a] = redistest.NewProxy(t, a)
				}
				o := cl.Options()
				o.Dialer = dialVia(proxies)
				c := redis.NewClusterClient(o)
				t.Cleanup(func() { c.Close() })
				return redisdriver.NewDriver(c, nil), func() {
					for _, p := range proxies {
						p.Partition()
					}
				}
			},
		}
	})
}

func TestConformanceSentinel(t *testing.T) {
	s := redistest.SharedSentinel(t)
	conformance.Run(t, func(t *testing.T) *conformance.Harness {
		return &conformance.Harness{
			NewDriver: func(t *testing.T) driver.Locker {
				return redisdriver.NewDriver(s.Client(t), nil)
			},
			Partitioned: func(t *testing.T) (driver.Locker, func()) {
				px := redistest.NewProxy(t, s.Master().Addr())
				o := s.FailoverOptions()
				o.Dialer = dialVia(map[string]*redistest.Proxy{s.Master().Addr(): px})
				c := redis.NewFailoverClient(o)
				t.Cleanup(func() { c.Close() })
				return redisdriver.NewDriver(c, nil), px.Partition
			},
		}
	})
}
