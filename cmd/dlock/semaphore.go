package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
)

// limitFlag registers --limit: how many may hold the key at once.
func limitFlag(fs *flag.FlagSet, what string) *int {
	return fs.Int("limit", 1, "let up to `N` "+what+" hold K at once (a semaphore; every one on K must give\nthe same N). 1, the default, is a lock")
}

// checkLimit validates --limit.
func checkLimit(c *command, limit int) int {
	if limit < 1 || limit > driver.MaxLimit {
		return c.usageError("--limit %d: want 1 to %d", limit, driver.MaxLimit)
	}
	return 0
}

// acquireN takes key as --wait says: its lock, or with limit above 1 a
// slot of its semaphore.
func acquireN(ctx context.Context, l *dlock.Locker, key string, limit int, wait waitFlag, waiting func()) (*dlock.Lease, error) {
	lease, err := acquire(ctx, l, key, &dlock.LeaseOptions{Limit: limit}, wait, waiting)
	return lease, limitError(err, limit)
}

// limitError makes a refusal that says the clients of a key disagree on
// --limit a configuration error (exitUsage), not busy nor the backend
// failing: another limit than the holders' (ErrLimitMismatch, also for a
// key held as a lock, limit 1, by a semaphore or the other way round), or
// a backend without semaphores for a limit above 1.
func limitError(err error, limit int) error {
	switch {
	case err == nil || errors.Is(err, dlock.ErrInvalid):
		return err
	case errors.Is(err, dlock.ErrLimitMismatch):
		return fmt.Errorf("%w: %w (every dlock on a key must give the same --limit)", dlock.ErrInvalid, err)
	case limit > 1 && errors.Is(err, errors.ErrUnsupported):
		return fmt.Errorf("%w: %w (--limit %d needs a backend with semaphores)", dlock.ErrInvalid, err, limit)
	}
	return err
}

// describeBusy says who holds key: its lock's holder, or with limit
// above 1 every holder of its slots.
func describeBusy(ctx context.Context, l *dlock.Locker, key string, limit int) (string, []slog.Attr) {
	if limit <= 1 {
		return describeHolder(ctx, l, key)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	hs, err := l.Holders(ctx, key)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return fmt.Sprintf("all %d slots held (this backend cannot say by whom)", limit), nil
	case err != nil:
		return fmt.Sprintf("all %d slots held (looking up the holders failed: %v)", limit, cliText(err.Error())), []slog.Attr{errAttr(err)}
	case len(hs) == 0:
		return fmt.Sprintf("all %d slots held, and released since", limit), nil
	}
	owners := make([]string, len(hs))
	for i, h := range hs {
		owners[i] = safeText(h.Owner)
	}
	return fmt.Sprintf("all %d slots held, by %s", limit, strings.Join(owners, ", ")),
		[]slog.Attr{slog.Int("limit", limit), slog.Int("holders", len(hs))}
}

// printSlots prints every holder of a semaphore's slots, one a line, for
// dlock status.
func printSlots(w io.Writer, key string, hs []dlock.Holder, limit int) {
	fmt.Fprintf(w, "%q is a semaphore with limit %d, held by %d:\n", key, limit, len(hs))
	for _, h := range hs {
		fmt.Fprintf(w, "  %s\n", holderString(h))
	}
}
