package redisdriver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dlock-go/dlock/driver"
)

var _ driver.Semaphore = (*locker)(nil)

// slotKeys returns the keys of the slot scripts for key: the lock key, its
// fence key and its holders' hash.
func (d *locker) slotKeys(key string) (lk, fk, hk string) {
	lk, fk = d.keyPair(key, fenceSuffix)
	return lk, fk, lk + slotsSuffix
}

// errSlotsReplicated refuses semaphores with replica acknowledgements,
// which they do not implement yet.
var errSlotsReplicated = fmt.Errorf("redisdriver: semaphores with replica_acks: %w", errors.ErrUnsupported)

// AcquireSlot implements [driver.Semaphore].
func (d *locker) AcquireSlot(ctx context.Context, req driver.Request, limit int) (driver.Result, error) {
	if err := d.checkSlots(req.Token); err != nil {
		return driver.Result{}, err
	}
	if err := driver.CheckLimit(limit); err != nil {
		return driver.Result{}, fmt.Errorf("redisdriver: %w", err)
	}
	lk, fk, hk := d.slotKeys(req.Key)
	ttlMS := msArg(req.TTL)
	ttl := d.ms.box(ttlMS)
	v, err := eval(ctx, d.pipe.Awaited(), acquireSlotScript, []any{nil, nil, 3, lk, fk, hk,
		req.Token, ttl, d.owner.box(req.Owner), d.fenceKeep(ttl, ttlMS), limit}).Result()
	if err != nil {
		return driver.Result{}, d.wrap("acquire slot", req.Key, err)
	}
	switch v := v.(type) {
	case string:
		if other, ok := strings.CutPrefix(v, "!"); ok {
			return driver.Result{}, slotRefusal(req.Key, limit, lk, fk, hk, other)
		}
		fence, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return driver.Result{}, fmt.Errorf("redisdriver: acquire slot %q: bad fence %q", req.Key, v)
		}
		return driver.Result{Acquired: true, Fence: fence}, nil
	case int64:
		return driver.Result{HolderTTL: time.Duration(max(v, 1)) * time.Millisecond}, nil
	}
	return driver.Result{}, fmt.Errorf("redisdriver: acquire slot %q: unexpected reply %v", req.Key, v)
}

// slotRefusal decodes a "!N ..." reply of the slot scripts.
func slotRefusal(key string, limit int, lk, fk, hk, reply string) error {
	which, detail, _ := strings.Cut(reply, " ")
	switch which {
	case "1":
		return lockKeyType(key, lk, detail, "zset")
	case "2":
		return wrongType(key, fk, detail)
	case "3":
		return fmt.Errorf("%w: redisdriver: acquire slot %q: the next fence would reach 2^53", driver.ErrInvalid, key)
	case "4":
		return wrongType(key, hk, detail)
	case "5":
		return fmt.Errorf("redisdriver: acquire slot %q: %w: its holders have limit %s, this acquire %d", key, driver.ErrLimitMismatch, detail, limit)
	}
	return fmt.Errorf("redisdriver: semaphore %q: unexpected reply %q", key, reply)
}

// lockKeyType is wrongType for the lock key lk of key, found holding typ
// by a call of the kind that stores mine there ("string" for a lock,
// "zset" for a semaphore). The other of the two is the other kind of dlock
// key, reported with [driver.ErrWrongKind] too, so that callers can tell
// clients that disagree on the kind (a limit of 1 against one above) from
// someone else's data.
func lockKeyType(key string, lk, typ any, mine string) error {
	err := wrongType(key, lk, typ)
	if t, _ := typ.(string); t != mine && (t == "zset" || t == "string") {
		return fmt.Errorf("%w (%w)", err, driver.ErrWrongKind)
	}
	return err
}

// checkSlots refuses, before any I/O, what the slot scripts cannot serve.
func (d *locker) checkSlots(token string) error {
	if err := d.check(); err != nil {
		return err
	}
	if d.cfg.replicaAcks > 0 {
		return errSlotsReplicated
	}
	return checkToken(token)
}

// slotResult decodes the reply of refreshSlotScript or releaseSlotScript.
func (d *locker) slotResult(op, key, lk, fk, hk string, v any, err error) error {
	if err != nil {
		return d.wrap(op, key, err)
	}
	switch v := v.(type) {
	case int64:
		if v == 1 {
			return nil
		}
		return fmt.Errorf("redisdriver: %s %q: %w", op, key, driver.ErrNotHeld)
	case string:
		if other, ok := strings.CutPrefix(v, "!"); ok {
			return fmt.Errorf("redisdriver: %s %q: %w: %w", op, key, driver.ErrNotHeld, slotRefusal(key, 0, lk, fk, hk, other))
		}
	}
	return fmt.Errorf("redisdriver: %s %q: unexpected reply %v", op, key, v)
}

// RefreshSlot implements [driver.Semaphore].
func (d *locker) RefreshSlot(ctx context.Context, key, token string, ttl time.Duration) error {
	if err := d.checkSlots(token); err != nil {
		return err
	}
	lk, fk, hk := d.slotKeys(key)
	ttlMS := msArg(ttl)
	v, err := eval(ctx, d.pipe, refreshSlotScript, []any{nil, nil, 3, lk, fk, hk, token, ttlMS, d.fenceKeep(ttlMS, ttlMS)}).Result()
	return d.slotResult("refresh slot", key, lk, fk, hk, v, err)
}

// RefreshSlots implements [driver.Semaphore]: all refreshes go out in one
// pipeline (on Cluster, one per node, in parallel).
func (d *locker) RefreshSlots(ctx context.Context, reqs []driver.RefreshRequest) []error {
	errs := make([]error, len(reqs))
	keys := make([][3]string, len(reqs))
	var send []int
	for i, r := range reqs {
		if errs[i] = d.checkSlots(r.Token); errs[i] == nil {
			send = append(send, i)
			keys[i][0], keys[i][1], keys[i][2] = d.slotKeys(r.Key)
		}
	}
	if len(send) == 0 {
		return errs
	}
	cmds := d.refreshPipeline(ctx, refreshSlotScript, reqs, send, func(i int) []string { return keys[i][:] })
	for _, i := range send {
		v, err := cmds[i].Result()
		errs[i] = d.slotResult("refresh slot", reqs[i].Key, keys[i][0], keys[i][1], keys[i][2], v, err)
	}
	return errs
}

// ReleaseSlot implements [driver.Semaphore]; it wakes every subscriber of
// the key.
func (d *locker) ReleaseSlot(ctx context.Context, key, token string) error {
	if err := d.checkSlots(token); err != nil {
		return err
	}
	lk, fk, hk := d.slotKeys(key)
	v, err := eval(ctx, d.pipe, releaseSlotScript, []any{nil, nil, 3, lk, fk, hk, token, d.publish, d.notify.scope}).Result()
	return d.slotResult("release slot", key, lk, fk, hk, v, err)
}

// InspectSlots implements [driver.Semaphore].
func (d *locker) InspectSlots(ctx context.Context, key string) ([]driver.Holder, int, error) {
	if err := d.check(); err != nil {
		return nil, 0, err
	}
	lk, fk, hk := d.slotKeys(key)
	v, err := eval(ctx, d.pipe, inspectSlotsScript, []any{nil, nil, 3, lk, fk, hk}).Result()
	if err != nil {
		return nil, 0, d.wrap("inspect slots", key, err)
	}
	if s, ok := v.(string); ok {
		return nil, 0, slotRefusal(key, 0, lk, fk, hk, strings.TrimPrefix(s, "!"))
	}
	vs, ok := v.([]any)
	if !ok || len(vs)%2 != 1 {
		return nil, 0, fmt.Errorf("redisdriver: inspect slots %q: unexpected reply %v", key, v)
	}
	limit, _ := vs[0].(int64)
	var hs []driver.Holder
	for i := 1; i+1 < len(vs); i += 2 {
		pttl, _ := vs[i].(int64)
		val, _ := vs[i+1].(string)
		fs, rest, _ := strings.Cut(val, "\n")
		since, owner, _ := strings.Cut(rest, "\n")
		fence, _ := strconv.ParseUint(fs, 10, 64)
		hs = append(hs, driver.Holder{Owner: owner, Fence: fence, TTL: time.Duration(pttl) * time.Millisecond, Since: parseTime(since)})
	}
	return hs, int(limit), nil
}
