package etcddriver

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
)

// Entry names. The entry of a token on a key is the etcd key
// PREFIX+KEY, a NUL byte, the driver's instance id, a dot and a slot
// number: the lowest this driver does not use on that key at the time.
// The token's digest is in the entry's value (see lockValue), which is
// what says whose entry it is. Names are reused on purpose: etcd keeps
// the index entry of every key name ever deleted (a tombstone) until the
// store is compacted, and every attempt's compare and read over the
// entries of a key walks all of them; a name per token made that walk
// grow with every grant ever made on the key (etcd's CPU profile of 8
// goroutines on 32 keys, after about 10,000 pairs: a quarter of the
// server's time in treeIndex.visit under applyCompare, in the one
// apply loop that orders every write). A name per driver and slot keeps
// the names of a key as few as the tokens that used it at once.
//
// A name serves one token at a time in this driver: it is kept while
// the driver remembers anything of the token's entry (a grant, a busy
// attempt's spare lease, a waiter's subscription) or a call of the token
// on the key is running, and freed after. Every write that could land on
// a reused name is guarded in its transaction: a put only if the name is
// free (or, for Acquire, the whole key), a delete only if the value
// names the token (digestIs). A token whose entry another driver made (a
// second process with the same token) is found by reading the key's
// entries for its digest (entryOf), at each call: the driver remembers
// no grant under another driver's name (see remember). A waiter's queued attempts (AcquireQueued) go through the
// driver of its subscription, as dlock makes them: they look for the
// token's entry under that driver's name alone.

// nameKey is a token's place in the name table: the key and the digest
// of the token.
type nameKey struct{ key, digest string }

// entryName is the name of a token's entry on a key.
type entryName struct {
	ek   string
	slot int // -1: a name another driver made, adopted
	pins int // calls running with it
}

// newInstance returns a random id for a driver's entry names: two
// drivers, in one process or two, never share one.
func newInstance() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// keyOf returns the lock key of ek, an entry name.
func (d *locker) keyOf(ek string) string {
	return ek[len(d.prefix):strings.LastIndexByte(ek, 0)]
}

// pinName returns the name of the entry of key of the token of dig, and
// keeps it for that token until unpin is called: the name the driver
// knows for the token, or the lowest free slot's.
func (d *locker) pinName(key, dig string) (ek string, unpin func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	nk := nameKey{key, dig}
	n := d.names[nk]
	if n == nil {
		n = &entryName{}
		n.ek, n.slot = d.newSlot(key)
		d.names[nk] = n
	}
	n.pins++
	return n.ek, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		n.pins--
		d.gcName(nk)
	}
}

// newSlot takes the lowest free slot of key and returns its name. Under
// mu.
func (d *locker) newSlot(key string) (ek string, slot int) {
	used := d.slots[key]
	if used == nil {
		used = make(map[int]bool)
		d.slots[key] = used
	}
	for used[slot] {
		slot++
	}
	used[slot] = true
	lo, _ := d.entryRange(key)
	return lo + d.instance + "." + strconv.Itoa(slot), slot
}

// adoptName makes ek, found in etcd as the entry of the token of dig,
// the name the driver uses for that token. Under mu.
func (d *locker) adoptName(ek, dig string) {
	nk := nameKey{d.keyOf(ek), dig}
	old := d.names[nk]
	if old != nil && old.ek == ek {
		return
	}
	slot := d.takeSlot(ek)
	if old == nil {
		d.names[nk] = &entryName{ek: ek, slot: slot}
		return
	}
	// Calls running with the old name finish with it; the token's next
	// ones use ek.
	d.freeSlot(nk.key, old.slot)
	old.ek, old.slot = ek, slot
}

// takeSlot marks the slot of ek taken and returns it, if ek is a name of
// this driver; else it returns -1. Under mu.
func (d *locker) takeSlot(ek string) int {
	key := d.keyOf(ek)
	lo, _ := d.entryRange(key)
	slot, err := strconv.Atoi(strings.TrimPrefix(ek, lo+d.instance+"."))
	if err != nil || !d.ownName(ek) || slot < 0 || d.burned[ek] {
		// A burned name's slot stays taken: no entryName frees it.
		return -1
	}
	if d.slots[key] == nil {
		d.slots[key] = make(map[int]bool)
	}
	d.slots[key][slot] = true
	return slot
}

// gcName frees the name of nk if nothing keeps it. Under mu.
func (d *locker) gcName(nk nameKey) {
	n := d.names[nk]
	if n == nil || n.pins > 0 {
		return
	}
	gk := grantKey{n.ek, nk.digest}
	if _, ok := d.grants[gk]; ok {
		return
	}
	if _, ok := d.spares[gk]; ok {
		return
	}
	if _, ok := d.handoffs[gk]; ok {
		return
	}
	delete(d.names, nk)
	d.freeSlot(nk.key, n.slot)
}

// freeSlot frees slot of key. Under mu.
func (d *locker) freeSlot(key string, slot int) {
	if slot < 0 {
		return
	}
	used := d.slots[key]
	delete(used, slot)
	if len(used) == 0 {
		delete(d.slots, key)
	}
}

// gcGrant frees the name of gk, a grant, spare or subscription just
// dropped, if nothing else keeps it. Under mu.
func (d *locker) gcGrant(gk grantKey) {
	d.gcName(nameKey{d.keyOf(gk.ek), gk.digest})
}

// burnName stops handing out ek, an entry name of this driver found
// holding another token's entry, or that a delete of unknown outcome
// may still reach: its slot stays taken for the driver's life, and the
// tokens that had it get another name at their next call. Under mu.
func (d *locker) burnName(ek string) {
	key := d.keyOf(ek)
	d.takeSlot(ek)
	// Found again as the token's entry (adoptName), it still never
	// frees its slot.
	d.burned[ek] = true
	for nk, n := range d.names {
		if nk.key == key && n.ek == ek {
			n.ek, n.slot = d.newSlot(key)
		}
	}
}

// ownName reports whether ek is a name of this driver.
func (d *locker) ownName(ek string) bool {
	lo, _ := d.entryRange(d.keyOf(ek))
	return strings.HasPrefix(ek, lo+d.instance+".")
}
