package etcddriver_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/driver"
	"github.com/dlock-go/dlock/etcddriver"
	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestSlotLeftoverEntryHoldsNoSlot: a busy AcquireSlot drops its entry by
// revoking its lease (dropSlot); when that revoke fails (an unknown
// outcome, see TestRefusedDropIsUnknown, whose undo may fail too), the
// token's entry stays behind the holders. The token's next
// AcquireSlot must find the key busy: its entry is beyond the limit. The
// entry is written here as the failed revoke leaves it, under the name of
// the driver that made the attempt, and under another driver's name (a
// second process with the token).
func TestSlotLeftoverEntryHoldsNoSlot(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := testCtx(t)
	cl := c.Client(t)
	for _, other := range []bool{false, true} {
		key := fmt.Sprintf("attack3/slot-leftover-%v", other)
		d := etcddriver.NewDriver(c.Client(t), nil).(driver.Semaphore)
		const limit = 1
		ttl := 10 * time.Second
		held, err := d.AcquireSlot(ctx, driverRequest(key, "holder", ttl), limit)
		if err != nil || !held.Acquired {
			t.Fatalf("AcquireSlot(holder) = %+v, %v", held, err)
		}
		// T's busy attempt: through d, it makes T's entry, then drops it.
		if res, err := d.AcquireSlot(ctx, driverRequest(key, "T", ttl), limit); err != nil || res.Acquired {
			t.Fatalf("AcquireSlot(T) while the holder holds = %+v, %v; want busy", res, err)
		}
		// The entry the failed revoke leaves: T's, behind the holder.
		name := "dlock/" + key + "\x00" + "0123456789abcdef.0"
		if !other {
			name = leftoverName(t, cl, key)
		}
		lg, err := cl.Grant(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte("T"))
		value := fmt.Sprintf("dlock/1 %s 10 %d\netcddriver-test", hex.EncodeToString(sum[:16]), limit)
		if _, err := cl.Put(ctx, name, value, clientv3.WithLease(lg.ID)); err != nil {
			t.Fatal(err)
		}
		res, err := d.AcquireSlot(ctx, driverRequest(key, "T", ttl), limit)
		if err == nil && res.Acquired {
			t.Errorf("other driver's name %v: AcquireSlot(T) = acquired (fence %d) with its entry behind the holder's (fence %d), limit %d: two holders of one slot", other, res.Fence, held.Fence, limit)
		}
		d.(interface{ Close() error }).Close()
	}
}

// leftoverName returns the name d gives T's entry on key: the holder's
// entry is d's slot 0, T takes the next free slot, 1.
func leftoverName(t *testing.T, cl *clientv3.Client, key string) string {
	t.Helper()
	resp, err := cl.Get(testCtx(t), "dlock/"+key+"\x00", clientv3.WithRange("dlock/"+key+"\x01"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("entries of %q = %v, %v; want the holder's", key, resp, err)
	}
	return strings.TrimSuffix(string(resp.Kvs[0].Key), ".0") + ".1"
}
