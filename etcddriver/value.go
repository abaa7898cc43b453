package etcddriver

import (
	"strconv"
	"strings"
)

// valueMagic starts the value of every lock and slot key the driver
// writes.
const valueMagic = "dlock/1"

// lockValue is the value of a lock or slot key: on its first line the
// magic, the digest of the holder's token, the TTL asked for in seconds
// and, for a slot, the semaphore's limit; then the owner.
type lockValue struct {
	digest string
	asked  int64
	limit  int // 0 for a lock
	owner  string
}

func (lv lockValue) encode() string {
	head := valueMagic + " " + lv.digest + " " + strconv.FormatInt(lv.asked, 10)
	if lv.limit > 0 {
		head += " " + strconv.Itoa(lv.limit)
	}
	return head + "\n" + lv.owner
}

// decodeValue parses a lock or slot value; ok is false for a value the
// driver did not write.
func decodeValue(v []byte) (lv lockValue, ok bool) {
	head, owner, found := strings.Cut(string(v), "\n")
	if !found {
		return lv, false
	}
	f := strings.Fields(head)
	if len(f) < 3 || len(f) > 4 || f[0] != valueMagic {
		return lv, false
	}
	asked, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || asked < 1 {
		return lv, false
	}
	lv = lockValue{digest: f[1], asked: asked, owner: owner}
	if len(f) == 4 {
		if lv.limit, err = strconv.Atoi(f[3]); err != nil || lv.limit < 1 {
			return lv, false
		}
	}
	return lv, true
}
