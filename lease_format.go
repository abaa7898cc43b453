package dlock

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// The methods in this file print a Lease without its token, which is the
// proof of ownership: whoever reads it in a log could release the key.
// A Lease is only handed out by pointer and holds atomics (go vet refuses
// a copy), so pointer receivers cover every way it can be printed.

// String describes the lease: key, fence, owner, local deadline and state
// (held, lost or released). It never shows the token.
func (le *Lease) String() string {
	if le == nil || le.l == nil || le.ctx == nil {
		return "Lease{}" // the zero value
	}
	return "Lease{key:" + strconv.Quote(le.key) +
		" fence:" + strconv.FormatUint(le.fence, 10) +
		" owner:" + strconv.Quote(le.owner) +
		" valid_until:" + le.ValidUntil().Format(time.RFC3339Nano) +
		" state:" + le.state() + "}"
}

// Format makes every fmt verb (%v, %+v, %#v, %s, %q, %x…) print
// [Lease.String], so that no verb reaches the token.
func (le *Lease) Format(f fmt.State, verb rune) {
	s := le.String()
	switch verb {
	case 'q':
		s = strconv.Quote(s)
	case 'x', 'X':
		s = fmt.Sprintf("%"+string(verb), s)
	}
	f.Write([]byte(s))
}

// LogValue gives log/slog the lease's key, fence, owner, local deadline
// and state as a group, and a semaphore's limit; never the token.
func (le *Lease) LogValue() slog.Value {
	if le == nil || le.l == nil || le.ctx == nil {
		return slog.GroupValue()
	}
	attrs := []slog.Attr{
		slog.String("key", le.key),
		slog.Uint64("fence", le.fence),
		slog.String("owner", le.owner),
		slog.Time("valid_until", le.ValidUntil()),
		slog.String("state", le.state()),
	}
	if n := le.ops.limit(); n != 0 {
		attrs = append(attrs, slog.Int("limit", n)) // a semaphore's slot
	}
	return slog.GroupValue(attrs...)
}

func (le *Lease) state() string {
	switch err := le.Err(); {
	case err == nil:
		return "held"
	case errors.Is(err, ErrLeaseLost):
		return "lost"
	default:
		return "released"
	}
}

var (
	_ fmt.Stringer   = (*Lease)(nil)
	_ fmt.Formatter  = (*Lease)(nil)
	_ slog.LogValuer = (*Lease)(nil)
)
