package pubsub

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxRedirects bounds how often one subscription follows MOVED or ASK in
// a row before it fails: a slot map that keeps disagreeing with the
// servers must not keep a subscriber waiting.
const maxRedirects = 8

// placeTimeout bounds the subscribing of channels that move (after MOVED,
// a slot move or a failover), which no caller's context bounds.
const placeTimeout = 10 * time.Second

// masterFor returns the node that the Cluster slot map names master of
// ch's slot, once the node itself says it is a master (ROLE), asked only
// for a node the Mux has no connection to yet. A map that predates a
// failover names the old master, now a replica, which accepts shard
// subscriptions of its master's slots: its members would miss what is
// published on the master (redisdriver hands a key on only to waiters
// that listen there). The map is then
// reloaded and asked again, for a few tries (go-redis reloads in the
// background, with no event to wait for). A user that may not run ROLE
// gets the map's answer.
func (n *Mux) masterFor(ctx context.Context, ch string) (*redis.Client, error) {
	cl := n.cluster
	for try := 0; ; try++ {
		node, err := cl.MasterForKey(ctx, ch)
		if err != nil {
			return nil, err
		}
		n.mu.Lock()
		known := n.conns[node.Options().Addr] != nil
		n.mu.Unlock()
		if known {
			return node, nil
		}
		role, err := node.Do(ctx, "ROLE").Slice()
		if isRedisError(err) {
			// The user may not run ROLE (the least ACL rule does not
			// grant it): the map is all there is to go by.
			return node, nil
		}
		if err != nil {
			return nil, err
		}
		if len(role) > 0 && role[0] == "master" {
			return node, nil
		}
		if try == 50 {
			return nil, fmt.Errorf("redisdriver: the Cluster slot map names %s master of channel %q, which says it is a %v", node.Options().Addr, ch, role[0])
		}
		cl.ReloadState(ctx)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// dropIfUnusedLocked drops c once every channel moved away from it (its
// node lost its slots, or is no longer a master): its reader ends, and a
// later subscription there makes a new connection. n.mu must be held.
func (n *Mux) dropIfUnusedLocked(c *Conn) {
	if len(c.chans) > 0 || len(c.sent) > 0 || c.dead {
		return
	}
	c.dead = true
	if n.conns[c.addr] == c {
		delete(n.conns, c.addr)
	}
	c.ps.Close()
}

// moveLocked subscribes ss, taken off the connection to from, again on
// their owner, once the slot map says the owner is to (if known) or no
// longer from. It runs in the background, as it waits for the slot map.
// n.mu must be held.
func (n *Mux) moveLocked(ss []*Sub, from, to string) {
	if n.closed {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, placeTimeout)
		defer cancel()
		n.awaitSlotMap(ctx, ss[0].ch, from, to)
		for _, s := range ss {
			n.Place(ctx, []*Sub{s})
		}
	}()
}

// awaitSlotMap asks go-redis to reload the Cluster slot map, and waits a
// little for it to name a new owner of ch: to, or any but from. go-redis
// reloads in the background, with no event to wait for; if the map stays
// stale, the subscription is refused with MOVED again, up to
// maxRedirects times.
func (n *Mux) awaitSlotMap(ctx context.Context, ch, from, to string) {
	cl := n.cluster
	if cl == nil {
		return
	}
	cl.ReloadState(ctx)
	for range 50 {
		node, err := cl.MasterForKey(ctx, ch)
		if err == nil {
			addr := node.Options().Addr
			if (to != "" && addr == to) || (to == "" && addr != from) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// owners returns the current owner of each channel of c on Cluster, after
// asking for a fresh slot map (the connection may have broken because its
// node failed over); nil otherwise.
func (n *Mux) owners(c *Conn) map[string]string {
	cl := n.cluster
	if cl == nil {
		return nil
	}
	n.mu.Lock()
	chans := make([]string, 0, len(c.chans))
	for ch := range c.chans {
		chans = append(chans, ch)
	}
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(n.ctx, time.Second)
	defer cancel()
	cl.ReloadState(ctx)
	owners := make(map[string]string, len(chans))
	for _, ch := range chans {
		if node, err := cl.MasterForKey(ctx, ch); err == nil {
			owners[ch] = node.Options().Addr
		}
	}
	return owners
}
