package redisdriver

import (
	"context"
	"fmt"
	"strings"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver/internal/autopipe"
	"github.com/dlock-go/dlock/redisdriver/internal/pubsub"
	"github.com/redis/go-redis/v9"
)

// refusedCommand returns the command that a NOPERM error says the user may
// not run ("… has no permissions to run the 'publish' command"), in
// lower case, or "" when the refusal is of a key or a channel. go-redis
// has no typed answer for which permission was missing, so the server's
// words are read: Redis 7 and Valkey both quote the command after "run
// the".
func refusedCommand(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	_, rest, ok := strings.Cut(msg, "to run the '")
	if !ok {
		return ""
	}
	cmd, _, ok := strings.Cut(rest, "'")
	if !ok || cmd == "" || strings.ContainsAny(cmd, " \t\r\n") {
		return ""
	}
	return strings.ToLower(cmd)
}

// ChannelPermissionError reports that the Redis user may not use the
// pub/sub channels that release notifications need: the channel itself
// (Redis 7 gives new ACL users no channel permission), or the command
// (SUBSCRIBE, or PUBLISH from the release script). Pattern is the channel
// pattern to grant, as in "ACL SETUSER name &" + Pattern; its message
// names the command instead when the server refused the command.
type ChannelPermissionError struct {
	Channel string // the channel that was refused
	Pattern string // the channel pattern the user needs
	Err     error  // the server's error (NOPERM)
}

func (e *ChannelPermissionError) Error() string {
	if cmd := refusedCommand(e.Err); cmd != "" {
		return fmt.Sprintf("redisdriver: the Redis user may not run %s, which release notifications need: grant it +%s (ACL SETUSER <user> +%s): %v",
			strings.ToUpper(cmd), cmd, cmd, e.Err)
	}
	return fmt.Sprintf("redisdriver: the Redis user may not use channel %q: grant it the channel pattern %q (ACL SETUSER <user> &%s): %v",
		e.Channel, e.Pattern, e.Pattern, e.Err)
}

func (e *ChannelPermissionError) Unwrap() error { return e.Err }

// channelPattern is the ACL channel pattern that covers every channel of
// the driver.
func (d *locker) channelPattern() string { return d.cfg.prefix + "*" }

// checkChannels publishes to and subscribes to a channel of the driver, on
// a pub/sub connection of its own that it closes.
func (d *locker) checkChannels(ctx context.Context) error {
	ch := d.notify.releasedChannel(d.lockKey("open-check"))
	refused := func(err error) error {
		if redis.IsPermissionError(err) {
			return &ChannelPermissionError{Channel: ch, Pattern: d.channelPattern(), Err: err}
		}
		return d.wrap("check channels", "", err)
	}
	if err := d.client.Do(ctx, d.publish, ch, "").Err(); err != nil {
		return refused(err)
	}
	var ps *redis.PubSub
	if d.cluster != nil {
		node, err := d.cluster.MasterForKey(ctx, ch)
		if err != nil {
			return d.wrap("check channels", "", err)
		}
		ps = node.Subscribe(ctx)
	} else {
		ps = d.client.Subscribe(ctx)
	}
	defer ps.Close()
	err := pubsub.Subscribe(ctx, ps, d.cluster != nil, []string{ch})
	if err == nil {
		_, err = ps.Receive(ctx) // the confirmation, or the refusal
	}
	if err != nil {
		return refused(err)
	}
	return nil
}

// redlock checks the access of each node's driver through CheckAccess.
var _ interface{ CheckAccess(context.Context) error } = (*locker)(nil)

// CheckAccess checks, within ctx, that the server behind d answers and
// that its user has every permission the driver needs (see Permissions in
// the package docs): that it may run the scripts and each command they
// run, on keys under the prefix, and use the driver's channels (a
// [*ChannelPermissionError] if not). open does it; a driver that composes
// others over clients it was given (redlock's Open) does it for each,
// through this method of the drivers that [NewDriver] returns.
func (d *locker) CheckAccess(ctx context.Context) error {
	if err := d.check(); err != nil {
		return err
	}
	return d.checkAccess(ctx, "check access")
}

// checkAccess runs checkScript, then checkChannels; op starts its
// errors.
func (d *locker) checkAccess(ctx context.Context, op string) error {
	acks := "0"
	if d.cfg.replicaAcks > 0 {
		acks = "1"
	}
	v, err := eval(ctx, autopipe.OnceDoer{C: d.client}, checkScript, []any{nil, nil, 1, d.lockKey("open-check"), acks}).Result()
	if err != nil {
		return d.wrap(op, "", err)
	}
	if v == "!READONLY" {
		return fmt.Errorf("redisdriver: %s: the server is a read-only replica, which refuses every lock; give the master's address (or redis+sentinel:// to follow failovers): %w",
			op, driver.ErrUnavailable)
	}
	if refused, ok := v.(string); ok {
		return fmt.Errorf("redisdriver: %s: the Redis user may not run %s on keys under %q, which the driver needs (see Permissions in the package docs)",
			op, refused, d.cfg.prefix)
	}
	if err := d.checkChannels(ctx); err != nil {
		return fmt.Errorf("redisdriver: %s: %w", op, err)
	}
	return nil
}
