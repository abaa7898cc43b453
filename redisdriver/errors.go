package redisdriver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/redisdriver/internal/autopipe"
	"github.com/redis/go-redis/v9"
)

// wrap gives a failed call's error its driver meaning: ErrUnavailable only
// when the command surely did not run; an error with Timeout() true when
// its outcome is unknown; the error as it is otherwise, with advice for
// the errors that mean a configuration problem.
func (d *locker) wrap(op, key string, err error) error {
	prefix := "redisdriver: " + op
	if key != "" {
		prefix = fmt.Sprintf("redisdriver: %s %q", op, key)
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", prefix, err)
	case errors.Is(err, redis.ErrClosed):
		// The client was closed under the driver: it never works again,
		// so no retry can help.
		return fmt.Errorf("%s: the Redis client is closed: %w: %w", prefix, driver.ErrClosed, err)
	case d.cluster == nil && isRedirect(err):
		// Not a slot moving: a Cluster node behind a client that is not
		// a Cluster client, which no retry cures.
		return fmt.Errorf("%s: the server is a Redis Cluster node; use a Cluster client (redis+cluster://): %w", prefix, err)
	case unavailable(err):
		return fmt.Errorf("%s: %w: %w", prefix, driver.ErrUnavailable, err)
	case redis.IsAuthError(err):
		return fmt.Errorf("%s: authentication failed (wrong user name or password?): %w", prefix, err)
	case redis.IsPermissionError(err), isScriptPermissionError(err):
		return fmt.Errorf("%s: the Redis user lacks a permission the driver needs (EVAL, EVALSHA, the commands its scripts run, SUBSCRIBE, and keys and channels under %q; see Permissions in the package docs): %w", prefix, d.cfg.prefix, err)
	case isTLSConfigError(err):
		return fmt.Errorf("%s: TLS: %w", prefix, err)
	case isRedisError(err):
		return fmt.Errorf("%s: %w", prefix, err)
	}
	var t interface{ Timeout() bool }
	if errors.As(err, &t) && t.Timeout() {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	// The connection failed after the command may have been sent (EOF,
	// reset): the outcome is unknown, which the contract reports as a
	// timeout.
	return &unknownOutcomeError{op: prefix, err: err}
}

// unknownOutcomeError is a failure after which the command may or may not
// have been applied. Its Timeout method reports true, as the driver
// contract asks for such errors.
type unknownOutcomeError struct {
	op  string
	err error
}

func (e *unknownOutcomeError) Error() string {
	return e.op + ": connection failed, outcome unknown: " + e.err.Error()
}

func (e *unknownOutcomeError) Unwrap() error { return e.err }

func (e *unknownOutcomeError) Timeout() bool { return true }

// unavailable reports whether err means the command surely was not
// applied: a command sent as one attempt had no connection to go out on
// (an [autopipe.UnsentError]), the client is closed, or the server refused the
// command before running it. A dial error or a pool timeout alone is not
// enough: after a retry by go-redis it says nothing of the earlier
// attempts, which may have been written and run.
func unavailable(err error) bool {
	var unsent *autopipe.UnsentError
	switch {
	case errors.Is(err, redis.ErrClosed):
		return true
	case errors.As(err, &unsent):
		return true
	case errors.Is(err, driver.ErrUnavailable):
		// The dialer's own verdict, such as a TLS handshake that got
		// no TLS answer (redisurl.NotTLSError): no connection, no command.
		return true
	case redis.IsLoadingError(err), redis.IsClusterDownError(err), redis.IsTryAgainError(err),
		redis.IsReadOnlyError(err), redis.IsMasterDownError(err), redis.IsMaxClientsError(err),
		redis.IsNoReplicasError(err), redis.IsOOMError(err):
		return true
	case redis.HasErrorPrefix(err, "BUSY "), redis.HasErrorPrefix(err, "MISCONF "):
		// A script runs past busy-reply-threshold (BUSY), or the
		// server stopped taking writes after a failed save (MISCONF):
		// refused before running, and go-redis has no typed test.
		return true
	}
	// A redirect means the node does not serve the key: it ran nothing.
	return isRedirect(err)
}

// isRedirect reports a MOVED or ASK reply.
func isRedirect(err error) bool {
	_, moved := redis.IsMovedError(err)
	_, ask := redis.IsAskError(err)
	return moved || ask
}

// isScriptPermissionError reports a command refused by the ACL inside a
// script: Redis 7.0 and Valkey answer it with ERR, not NOPERM, each in
// its own words.
func isScriptPermissionError(err error) bool {
	return redis.HasErrorPrefix(err, "The user executing the script can't") ||
		redis.HasErrorPrefix(err, "ACL failure in script")
}

func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

func isTLSConfigError(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		rh  tls.RecordHeaderError
		alt tls.AlertError
	)
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &rh) || errors.As(err, &alt)
}
