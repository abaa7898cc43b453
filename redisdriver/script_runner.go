package redisdriver

import (
	"context"
	"sync/atomic"

	"github.com/dlock-go/dlock/redisdriver/internal/autopipe"
	"github.com/redis/go-redis/v9"
)

// luaScript is a script with its SHA and source boxed once, for eval.
type luaScript struct {
	*redis.Script
	sha, src any
}

func newScript(src string) luaScript {
	s := redis.NewScript(src)
	return luaScript{s, s.Hash(), src}
}

// doer is a client or a pipeline.
type doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// eval runs s by EVALSHA, or by EVAL if the server has not cached it yet.
// args is the whole command with two free slots in front, for the command
// and the script, and then the number of keys, the keys and the
// arguments: one slice per call, where go-redis's Script.Run needs three
// and boxes every key again.
func eval(ctx context.Context, c doer, s luaScript, args []any) *redis.Cmd {
	args[0], args[1] = "evalsha", s.sha
	cmd := c.Do(ctx, args...)
	if autopipe.NoScript(cmd.Err()) {
		args[0], args[1] = "eval", s.src
		cmd = c.Do(ctx, args...)
	}
	return cmd
}

// boxCache keeps the interface value of the last argument of one kind: a
// driver mostly repeats the same TTL and owner, and boxing them allocates.
type boxCache[T comparable] struct{ last atomic.Pointer[boxed[T]] }

type boxed[T comparable] struct {
	v   T
	box any
}

func (c *boxCache[T]) box(v T) any {
	if b := c.last.Load(); b != nil && b.v == v {
		return b.box
	}
	b := &boxed[T]{v, v}
	c.last.Store(b)
	return b.box
}
