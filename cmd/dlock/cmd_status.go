package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

const statusUsage = `Usage: dlock status [--url URL] K

Show who holds the lock K: the holder's owner name, its fence, and how long
before its lease expires unless renewed. If K is a semaphore (dlock run
--limit N), every holder is listed, one a line, with the limit. The exit status is 0 if K is held
and 1 if it is free, so scripts can test it.
`

const statusTail = `
Examples:
  dlock status --url redis://127.0.0.1:6379 reports
  if DLOCK_URL=redis://127.0.0.1:6379 dlock status reports >/dev/null; then echo busy; fi

` + exitCodesHelp

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	c := newCommand("status", statusUsage, statusTail, stdout, stderr)
	var b backendFlags
	b.register(c.fs, false, false)
	c.fs.StringVar(&b.key, "key", "", "the lock's `name`, instead of the argument")
	pos, ok, code := c.parseInterspersed(args)
	if !ok {
		return code
	}
	switch {
	case len(pos) > 1:
		return c.usageError("one key expected, got %d arguments", len(pos))
	case len(pos) == 1 && b.key != "":
		return c.usageError("give the key as an argument or with --key, not both")
	case len(pos) == 1:
		b.key = pos[0]
	case b.key == "":
		return c.usageError("missing key: dlock status K")
	}
	rawURL, code := b.check(c)
	if code != 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, code := open(ctx, c, rawURL, nil)
	if code != 0 {
		return code
	}
	defer l.Close()
	hs, err := l.Holders(ctx, b.key)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return c.errorf(exitUsage, "the backend %s cannot report holders", redact(rawURL))
	case err != nil:
		return c.errorf(errorCode(err), "%v", err)
	case len(hs) == 0:
		fmt.Fprintf(stdout, "%q is free\n", b.key)
		return exitFree
	case hs[0].Limit > 1:
		printSlots(stdout, b.key, hs, hs[0].Limit)
		return 0
	}
	fmt.Fprintf(stdout, "%q is held by %s\n", b.key, holderString(hs[0]))
	return 0
}
