//go:build linux

package main

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestEtcdMemberLostKillsJobBeforeExpiry: dlock run reaches a 3-member
// etcd cluster through one follower, which is then paused (SIGSTOP) or
// killed (SIGKILL): renewals stop getting through while the rest of the
// cluster keeps the lease and counts it down. The job, which ignores
// SIGTERM and has a background process that ignores it too, must be gone
// while etcd still holds the key for it, dlock run must exit with the
// lease-lost status, and etcd must then free the key (dlock renews
// nothing more).
func TestEtcdMemberLostKillsJobBeforeExpiry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault func(t *testing.T, m *etcdtest.Member)
	}{
		{"Paused", func(t *testing.T, m *etcdtest.Member) { m.Pause(t) }},
		{"Killed", func(t *testing.T, m *etcdtest.Member) { m.Kill(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := etcdtest.Start(t, 3)
			leader := c.Leader(t)
			var via *etcdtest.Member
			var others []string
			for _, m := range c.Members() {
				if m != leader && via == nil {
					via = m
				} else {
					others = append(others, m.ClientURL)
				}
			}
			cli := c.Client(t, others...)
			dir := t.TempDir()
			key := uniqueKey(t)
			// A wider drift allowance than the default 22ms keeps the
			// scheduling of a loaded test machine from deciding the test;
			// the kill schedule is relative to the local deadline either
			// way.
			url := "etcd://" + etcdHost(via) + "/?drift=300ms"
			job := script(t, dir, "job.sh", `
trap "" TERM
sh -c 'echo $$ > "$D/bg"; exec sleep 600' &
echo "$DLOCK_FENCE" > "$D/fence"
echo $$ > "$D/main"
while :; do sleep 1; done
`)
			p := startDlock(t, "dlock run", []string{"D=" + dir}, "run", "--url", url, "--key", key,
				"--ttl", "2s", "--grace", "10s", "--", job)
			waitFor(t, 20*time.Second, "the job and its background process to start", func() bool {
				return readFile(t, filepath.Join(dir, "main")) != "" && readFile(t, filepath.Join(dir, "bg")) != ""
			})
			pids := readPIDs(t, dir, "main", "bg")
			fence, _ := strconv.ParseInt(strings.TrimSpace(readFile(t, filepath.Join(dir, "fence"))), 10, 64)
			held := func() bool {
				t.Helper()
				// The job's entry, alone under the key (see etcddriver's
				// package doc).
				resp, err := cli.Get(t.Context(), "dlock/"+key+"\x00", clientv3.WithPrefix())
				if err != nil {
					t.Fatalf("reading the lock's key through the other members: %v", err)
				}
				return len(resp.Kvs) == 1 && resp.Kvs[0].CreateRevision == fence
			}
			if !held() {
				t.Fatalf("etcd does not hold dlock/%s with the job's DLOCK_FENCE %d", key, fence)
			}

			tc.fault(t, via)
			faulted := time.Now()
			deadline := faulted.Add(10 * time.Second)
			for !allGone(pids) && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond) // other processes' deaths have no event
			}
			if !allGone(pids) {
				t.Fatalf("the job's processes %v still run %v after the fault", pids, time.Since(faulted))
			}
			gone := time.Since(faulted)
			if !held() {
				t.Errorf("etcd freed the key before the job's processes were all gone (%v after the fault)", gone)
			}

			if code := p.wait(t, 20*time.Second); code != exitLeaseLost {
				t.Errorf("exit status %d, want %d (lease lost); stderr:\n%s", code, exitLeaseLost, p.stderr.String())
			}
			if !strings.Contains(p.stderr.String(), "lost") {
				t.Errorf("stderr does not say the lease was lost:\n%s", p.stderr.String())
			}
			waitFor(t, 10*time.Second, "etcd to free the key at the lease's expiry", func() bool { return !held() })
			t.Logf("the job was gone %v after the fault, etcd freed the key %v after it", gone, time.Since(faulted))
		})
	}
}
