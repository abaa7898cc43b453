package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// killedScenario: a holder process takes the key (with the library's
// renewal, where it has one), a waiter process waits for it, and the
// holder is killed with SIGKILL at a random moment. The gap runs from the
// server-side expiry of the holder's lock to the waiter's acquire
// returning.
//
// The server-side expiry is read after the kill with PEXPIRETIME (Redis
// 7.0): the absolute Unix time in ms at which the key expires. Redis treats
// a key as expired once its clock in whole ms is past that value, so the
// key is free from (PEXPIRETIME+1) ms on; the waiter stamps its grant with
// time.Now (CLOCK_REALTIME), the clock Redis reads too, on the same host.
// For locks spread over several keys (rueidislock's KeyMajority), the
// expiry is that of the key whose expiry frees a majority.
//
// The trials of the libraries are interleaved (trial k runs every library
// once, in an order rotated per trial). The holder acquires at a random
// moment (up to one TTL after it is ready), so that the expiry falls at a
// random phase of the server's expiry cycle and of the waiter's polling;
// the kill lands 0.55–0.9 × TTL after the acquire returned: after the
// first renewal of every library that renews (dlock at TTL/3, rueidislock
// at TTL/2) and before the expiry of those that do not (bsm/redislock,
// redsync).
func (c *client) killedScenario(ctx context.Context, specs []libSpec) error {
	rows := make([]*KilledRow, len(specs))
	for i, s := range specs {
		rows[i] = &KilledRow{Lib: s.Name, Config: s.Config, TTLms: float64(c.cfg.killedTTL) / 1e6}
	}
	for trial := range c.cfg.killedTrials {
		for j := range specs {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			i := (j + trial) % len(specs)
			s, row := specs[i], rows[i]
			gap, killAt, err := c.killedTrial(ctx, s, fmt.Sprintf("killed%d", trial))
			if err != nil {
				row.Errors = append(row.Errors, err.Error())
				fmt.Fprintf(os.Stderr, "%s: holder-killed trial: %v\n", s.label(), err)
				continue
			}
			row.GapsMs = append(row.GapsMs, gap)
			row.KillAfterMs = append(row.KillAfterMs, killAt)
		}
	}
	var errs []error
	for _, row := range rows {
		row.Trials = len(row.GapsMs)
		if row.Trials > 0 {
			row.P50ms = median(row.GapsMs)
			row.MaxMs = slices.Max(row.GapsMs)
			for _, g := range row.GapsMs {
				row.MeanMs += g / float64(row.Trials)
			}
		} else {
			errs = append(errs, fmt.Errorf("%s %s: no successful trial", row.Lib, row.Config))
		}
		c.res.Killed = append(c.res.Killed, row)
	}
	return errors.Join(errs...)
}

// killedTrial runs one kill and returns the gap after the expiry and the
// moment of the kill after the acquire, in ms.
func (c *client) killedTrial(ctx context.Context, s libSpec, key string) (gap, killAt float64, err error) {
	c.flush(ctx)
	ttl := c.cfg.killedTTL
	// The waiter starts first, so that the holder (which in bsm/redislock
	// and redsync does not renew) is killed well within its TTL.
	waiter, err := c.spawn("waiter", "-lib", s.label(), "-key", key, "-ttl", ttl.String())
	if err != nil {
		return 0, 0, err
	}
	defer waiter.kill()
	if _, err := waiter.expect("ready", 20*time.Second); err != nil {
		return 0, 0, fmt.Errorf("waiter: %w", err)
	}
	holder, err := c.spawn("holder", "-lib", s.label(), "-key", key, "-ttl", ttl.String())
	if err != nil {
		return 0, 0, err
	}
	defer holder.kill()
	if _, err := holder.expect("ready", 20*time.Second); err != nil {
		return 0, 0, fmt.Errorf("holder: %w", err)
	}
	// A random acquire phase.
	time.Sleep(time.Duration(rand.Float64() * float64(ttl)))
	holder.send("go")
	line, err := holder.expect("held", 20*time.Second)
	if err != nil {
		return 0, 0, fmt.Errorf("holder: %w", err)
	}
	// The holder stamps its acquire (CLOCK_MONOTONIC, shared by the
	// processes of the host): when it called and when it returned. On a
	// loaded machine this process may read the line late, so the kill is
	// timed from the stamps, not from reading it.
	var called, held int64
	if _, err := fmt.Sscanf(line, "held %d %d", &called, &held); err != nil {
		return 0, 0, fmt.Errorf("holder: %q: %w", line, err)
	}
	waiter.send("go")
	if _, err := waiter.expect("waiting", 5*time.Second); err != nil {
		return 0, 0, fmt.Errorf("waiter: %w", err)
	}
	// Kill after the first renewal, at a random moment; for the libraries
	// that do not renew, before the TTL counted from the call.
	kill := min(held+int64((0.55+0.35*rand.Float64())*float64(ttl)), called+int64(0.9*float64(ttl)))
	time.Sleep(time.Duration(kill - monoNow()))
	holder.kill()
	killAt = float64(monoNow()-held) / 1e6

	keys, need := s.keys(key)
	var exp []float64
	for _, k := range keys {
		ms, err := c.all[0].Do(ctx, "PEXPIRETIME", k).Int64()
		if err != nil {
			return 0, 0, fmt.Errorf("PEXPIRETIME %s: %w", k, err)
		}
		switch {
		case ms == -2: // no key: free already
			exp = append(exp, math.Inf(-1))
		case ms < 0:
			return 0, 0, fmt.Errorf("%s has no expiry", k)
		default:
			exp = append(exp, float64(ms))
		}
	}
	slices.Sort(exp)
	when := exp[need-1]
	if math.IsInf(when, -1) {
		return 0, 0, fmt.Errorf("the lock was free right after the kill (%.0f ms after the acquire)", killAt)
	}
	line, err = waiter.expect("granted", 5*ttl+10*time.Second)
	if err != nil {
		return 0, 0, fmt.Errorf("waiter: %w", err)
	}
	granted, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "granted")), 10, 64)
	if err != nil {
		return 0, 0, err
	}
	free := (when + 1) * 1e6 // ns since the epoch
	waiter.finish(5 * time.Second)
	return (float64(granted) - free) / 1e6, killAt, nil
}

// runHolder takes the key and holds it until killed.
func runHolder(ctx context.Context, cfg *config) error {
	l, _, err := childLib(cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	ctx, start := childIO(ctx)
	fmt.Println("ready")
	select {
	case <-start:
	case <-ctx.Done():
		return nil
	}
	called := monoNow()
	h, err := l.Lock(ctx, cfg.key)
	held := monoNow()
	if err != nil {
		return err
	}
	fmt.Println("held", called, held)
	<-ctx.Done() // killed before this, normally
	return h.Release(context.Background())
}

// runWaiter waits for the key and reports when it got it.
func runWaiter(ctx context.Context, cfg *config) error {
	l, _, err := childLib(cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := warmUp(ctx, l, cfg.key+":warm"); err != nil {
		return err
	}
	ctx, start := childIO(ctx)
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	select {
	case <-start:
	case <-ctx.Done():
		return nil
	}
	fmt.Fprintln(out, "waiting")
	out.Flush()
	h, err := l.Lock(ctx, cfg.key)
	t := time.Now().UnixNano()
	if err != nil {
		fmt.Fprintf(out, "error %v\n", err)
		out.Flush()
		return nil
	}
	fmt.Fprintf(out, "granted %d\n", t)
	out.Flush()
	h.Release(context.Background())
	return nil
}
