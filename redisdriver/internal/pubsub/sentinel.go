package pubsub

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// watchSentinels follows the master switches that the Sentinels of fo
// announce (+switch-master), one Sentinel at a time, the next when one
// fails: at a switch it replaces every pub/sub connection at once, so that
// the members listen on the new master. go-redis moves its command
// connections at a switch, but not the Mux's: a connection to an old
// master that froze (paused, partitioned) stays open and silent, and only
// the idle ping would find it dead, after two health intervals, while
// every message published on the new master reaches no member.
func (n *Mux) watchSentinels(fo *redis.FailoverOptions) {
	defer n.wg.Done()
	var backoff time.Duration
	for i := 0; ; i++ {
		sc := redis.NewSentinelClient(&redis.Options{
			Addr: fo.SentinelAddrs[i%len(fo.SentinelAddrs)], Dialer: fo.Dialer,
			Username: fo.SentinelUsername, Password: fo.SentinelPassword, TLSConfig: fo.TLSConfig,
			DialTimeout: fo.DialTimeout, ReadTimeout: fo.ReadTimeout, WriteTimeout: fo.WriteTimeout,
		})
		ps := sc.Subscribe(n.ctx, "+switch-master")
		n.mu.Lock()
		closed := n.closed
		n.sentinelPS = ps
		n.mu.Unlock()
		if !closed {
			n.followSwitches(ps, fo.MasterName, &backoff)
		}
		ps.Close()
		sc.Close()
		if closed || n.ctx.Err() != nil {
			return
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
	}
}

// followSwitches reads ps, subscribed to a Sentinel's +switch-master,
// until it fails or stays silent for two health intervals, and replaces
// every pub/sub connection at each switch of master.
func (n *Mux) followSwitches(ps *redis.PubSub, master string, backoff *time.Duration) {
	silent := 0
	for {
		msg, err := ps.ReceiveTimeout(n.ctx, healthInterval)
		switch {
		case n.ctx.Err() != nil:
			return
		case err == nil:
			silent, *backoff = 0, 0
			if m, ok := msg.(*redis.Message); ok && strings.HasPrefix(m.Payload, master+" ") {
				n.reconnectAll()
			}
		case isTimeout(err) && silent == 0:
			silent++
			ctx, cancel := context.WithTimeout(n.ctx, time.Second)
			err = ps.Ping(ctx)
			cancel()
			if err != nil {
				return
			}
		default:
			return
		}
	}
}

// reconnectAll closes every pub/sub connection: each reader replaces its
// own, dialling the master the client finds now.
func (n *Mux) reconnectAll() {
	n.mu.Lock()
	pss := make([]*redis.PubSub, 0, len(n.conns))
	for _, c := range n.conns {
		pss = append(pss, c.ps)
	}
	n.mu.Unlock()
	for _, ps := range pss {
		ps.Close()
	}
}
