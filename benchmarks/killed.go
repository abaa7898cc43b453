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
func (c *client) killedScenario(ctx context.Context, specs []libSpec) error {
	var errs []error
	for _, s := range specs {
		row := &KilledRow{Lib: s.Name, Config: s.Config, TTLms: float64(c.cfg.killedTTL) / 1e6}
		for trial := range c.cfg.killedTrials {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			gap, err := c.killedTrial(ctx, s, fmt.Sprintf("killed%d", trial))
			if err != nil {
				row.Errors = append(row.Errors, err.Error())
				fmt.Fprintf(os.Stderr, "%s: holder-killed trial: %v\n", s.label(), err)
				continue
			}
			row.GapsMs = append(row.GapsMs, gap)
		}
		row.Trials = len(row.GapsMs)
		if row.Trials > 0 {
			row.P50ms = median(row.GapsMs)
			row.MaxMs = slices.Max(row.GapsMs)
		} else {
			errs = append(errs, fmt.Errorf("%s: no successful trial", s.label()))
		}
		c.res.Killed = append(c.res.Killed, row)
	}
	return errors.Join(errs...)
}

func (c *client) killedTrial(ctx context.Context, s libSpec, key string) (float64, error) {
	c.flush(ctx)
	ttl := c.cfg.killedTTL
	// The waiter starts first, so that the holder (which in bsm/redislock
	// and redsync does not renew) is killed well within its TTL.
	waiter, err := c.spawn("waiter", "-lib", s.label(), "-key", key, "-ttl", ttl.String())
	if err != nil {
		return 0, err
	}
	defer waiter.kill()
	if _, err := waiter.expect("ready", 20*time.Second); err != nil {
		return 0, fmt.Errorf("waiter: %w", err)
	}
	holder, err := c.spawn("holder", "-lib", s.label(), "-key", key, "-ttl", ttl.String())
	if err != nil {
		return 0, err
	}
	defer holder.kill()
	if _, err := holder.expect("held", 20*time.Second); err != nil {
		return 0, fmt.Errorf("holder: %w", err)
	}
	waiter.send("go")
	if _, err := waiter.expect("waiting", 5*time.Second); err != nil {
		return 0, fmt.Errorf("waiter: %w", err)
	}
	// Kill at a random moment: the waiter is waiting by then, and the
	// holder's renewal is at a random phase.
	time.Sleep(time.Duration((0.1 + 0.4*rand.Float64()) * float64(ttl)))
	holder.kill()

	keys, need := s.keys(key)
	var exp []float64
	for _, k := range keys {
		ms, err := c.all[0].Do(ctx, "PEXPIRETIME", k).Int64()
		if err != nil {
			return 0, fmt.Errorf("PEXPIRETIME %s: %w", k, err)
		}
		switch {
		case ms == -2: // no key: free already
			exp = append(exp, math.Inf(-1))
		case ms < 0:
			return 0, fmt.Errorf("%s has no expiry", k)
		default:
			exp = append(exp, float64(ms))
		}
	}
	slices.Sort(exp)
	when := exp[need-1]
	if math.IsInf(when, -1) {
		return 0, fmt.Errorf("the lock was free right after the kill")
	}
	line, err := waiter.expect("granted", 5*ttl+10*time.Second)
	if err != nil {
		return 0, fmt.Errorf("waiter: %w", err)
	}
	granted, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "granted")), 10, 64)
	if err != nil {
		return 0, err
	}
	free := (when + 1) * 1e6 // ns since the epoch
	waiter.finish(5 * time.Second)
	return (float64(granted) - free) / 1e6, nil
}

// runHolder takes the key and holds it until killed.
func runHolder(ctx context.Context, cfg *config) error {
	l, _, err := childLib(cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	ctx, _ = childIO(ctx)
	h, err := l.Lock(ctx, cfg.key)
	if err != nil {
		return err
	}
	fmt.Println("held")
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
