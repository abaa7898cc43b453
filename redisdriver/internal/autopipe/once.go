package autopipe

import (
	"context"
	"errors"
	"net"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// onceCmd is a command that go-redis sends at most once. By default
// go-redis sends a command or pipeline again after EOF, a reset or a
// timeout (MaxRetries, 3 unless set): on its own, after the driver's
// caller may have left and the root undone the call (a batch runs on a
// context detached from its callers'), so that an acquire takes the key
// again for nobody, and a release that was applied is sent again and
// answered "not held". The driver makes one attempt per call, as its
// contract says ("no retries"); the root retries what may be retried.
// One attempt also makes a dial error exact: the command was never
// written (see [UnsentError]).
type onceCmd struct{ *redis.Cmd }

// NoRetry tells go-redis not to send the command again, nor any
// pipeline that carries it.
func (onceCmd) NoRetry() bool { return true }

// Processor is a client or a pipeline.
type Processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// DoOnce runs the command args on c as one attempt (see [onceCmd]).
func DoOnce(ctx context.Context, c Processor, args []any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, args...)
	c.Process(ctx, onceCmd{cmd})
	MarkUnsent(cmd)
	return cmd
}

// QueueOnce queues the command args on pipe as one attempt (see
// [onceCmd]): go-redis then sends pipe once. After pipe.Exec, the
// command's error is to be passed through MarkUnsent.
func QueueOnce(ctx context.Context, pipe redis.Pipeliner, args []any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, args...)
	pipe.Process(ctx, onceCmd{cmd})
	return cmd
}

// OnceDoer is a client or pipeline whose Do makes one attempt.
type OnceDoer struct{ C Processor }

func (o OnceDoer) Do(ctx context.Context, args ...any) *redis.Cmd { return DoOnce(ctx, o.C, args) }

// MarkUnsent wraps the error of cmd, sent as one attempt, in an
// [UnsentError] when it shows the command was never written: no
// connection could be dialed or taken from the pool.
func MarkUnsent(cmd *redis.Cmd) {
	if err := cmd.Err(); err != nil && unsent(err) {
		cmd.SetErr(&UnsentError{Err: err})
	}
}

func unsent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted)
}

// UnsentError is the failure of a command sent as one attempt that was
// never written: it had no connection. A bare dial error or pool timeout
// means less: go-redis may have written the command on an earlier
// attempt, then found no connection for its retry.
type UnsentError struct{ Err error }

func (e *UnsentError) Error() string { return e.Err.Error() }

func (e *UnsentError) Unwrap() error { return e.Err }
