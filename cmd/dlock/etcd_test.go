//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-go/dlock/etcddriver/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// These tests run dlock processes against real etcd members, from
// etcddriver/etcdtest (skipped without an etcd binary, unless
// DLOCK_REQUIRE_ETCD=1 or DLOCK_REQUIRE_REDIS=1).

// etcdHost returns the host:port of a member's client URL, for an etcd://
// URL.
func etcdHost(m *etcdtest.Member) string {
	return strings.TrimPrefix(m.ClientURL, "http://")
}

// TestEtcdRunBusy: dlock run on etcd, with the URL from DLOCK_URL, runs
// its command with DLOCK_FENCE, the key's create revision; a second run
// while the key is held exits with the busy status and names the holder;
// dlock status (--url) prints the holder with its control bytes escaped;
// after the command exits, the key is free.
func TestEtcdRunBusy(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	dir := t.TempDir()
	key := uniqueKey(t)
	const prefix = "cli-test"
	url := "etcd://" + etcdHost(c.Members()[0]) + "/" + prefix
	env := []string{"DLOCK_URL=" + url, "D=" + dir}
	const owner = "web-1\x1b[31m\nfake line"
	child := script(t, dir, "child.sh", `
echo "$DLOCK_FENCE" >> "$D/fence"
while [ ! -e "$D/go" ]; do sleep 0.02; done
`)
	holder := startDlock(t, "holder", env, "run", "--key", key, "--owner", owner, "--", child)
	waitFor(t, 20*time.Second, "the command to start", func() bool { return readFile(t, filepath.Join(dir, "fence")) != "" })

	fence, err := strconv.ParseInt(strings.TrimSpace(readFile(t, filepath.Join(dir, "fence"))), 10, 64)
	if err != nil || fence <= 0 {
		t.Fatalf("DLOCK_FENCE %q: want a positive number", readFile(t, filepath.Join(dir, "fence")))
	}
	// The lock's entries: one per token under the key (see etcddriver's
	// package doc), the holder's alone while nobody waits.
	resp, err := cli.Get(t.Context(), prefix+"/"+key+"\x00", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the lock's etcd entries under %q: %v, %v; want one", prefix+"/"+key, resp, err)
	}
	if got := resp.Kvs[0].CreateRevision; got != fence {
		t.Errorf("DLOCK_FENCE is %d, the key's create revision %d", fence, got)
	}

	second := startDlock(t, "second", env, "run", "--key", key, "--", "sh", "-c", `echo ran >> "$D/second"`)
	if code := second.wait(t, 20*time.Second); code != exitBusy {
		t.Errorf("second run while held: exit status %d, want %d (busy); stderr:\n%s", code, exitBusy, second.stderr.String())
	}
	const escaped = `"web-1\x1b[31m\nfake line"`
	if want := "held by " + escaped + " (fence " + strconv.FormatInt(fence, 10); !strings.Contains(second.stderr.String(), want) {
		t.Errorf("the busy message does not name the holder (%s):\n%s", want, second.stderr.String())
	}
	if readFile(t, filepath.Join(dir, "second")) != "" {
		t.Errorf("the second run's command ran while the key was held")
	}

	st := startDlock(t, "status", nil, "status", "--url", url, key)
	if code := st.wait(t, 20*time.Second); code != 0 {
		t.Errorf("status of a held key: exit status %d, want 0; stderr:\n%s", code, st.stderr.String())
	}
	out := st.stdout.String()
	if want := "held by " + escaped; !strings.Contains(out, want) {
		t.Errorf("status does not name the holder escaped (%s):\n%s", want, out)
	}
	if strings.ContainsAny(out, "\x1b") || strings.Count(out, "\n") != 1 {
		t.Errorf("status prints the owner's control bytes raw:\n%q", out)
	}

	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := holder.wait(t, 20*time.Second); code != 0 {
		t.Errorf("holder: exit status %d, want 0; stderr:\n%s", code, holder.stderr.String())
	}
	st = startDlock(t, "status", env, "status", key)
	if code := st.wait(t, 20*time.Second); code != exitFree {
		t.Errorf("status after release: exit status %d, want %d (free); stdout: %s", code, exitFree, st.stdout.String())
	}
}

// TestEtcdElectTakeover: two dlock elect on etcd; one runs its command,
// the other waits; after kill -9 of the leader's dlock, the standby's
// command starts once etcd has expired the leader's lease, with a larger
// DLOCK_FENCE.
func TestEtcdElectTakeover(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1)
	dir := t.TempDir()
	key := uniqueKey(t)
	env := []string{"DLOCK_URL=etcd://" + etcdHost(c.Members()[0]), "D=" + dir}
	const ttl = 2 * time.Second
	child := script(t, dir, "child.sh", `
echo "$DLOCK_FENCE $$" >> "$D/starts"
while :; do sleep 30 & wait $!; done
`)
	elect := func(name string) *proc {
		return startDlock(t, name, env, "elect", "--key", key, "--ttl", ttl.String(), "--owner", name, "--", child)
	}
	starts := func() [][]string {
		var s [][]string
		for _, line := range strings.Split(strings.TrimSpace(readFile(t, filepath.Join(dir, "starts"))), "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				s = append(s, f)
			}
		}
		return s
	}
	a := elect("A")
	waitFor(t, 20*time.Second, "A's command to start", func() bool { return len(starts()) == 1 })
	first := starts()[0]
	pid, _ := strconv.Atoi(first[1])
	killGroupAtEnd(t, pid)
	b := elect("B")
	waitFor(t, 20*time.Second, "B to see leader A", func() bool { return strings.Contains(b.stderr.String(), "leader is A (fence ") })

	killed := time.Now()
	a.cmd.Process.Kill()
	a.wait(t, 10*time.Second)
	waitFor(t, 20*time.Second, "B's command to start after kill -9 of A", func() bool { return len(starts()) == 2 })
	// etcd frees the key at the lease's expiry, which it checks every
	// 500ms; B's watch wakes it at the deletion.
	if d := time.Since(killed); d > ttl+1500*time.Millisecond {
		t.Errorf("takeover after kill -9 took %v, want at most TTL+1.5s", d)
	}
	second := starts()[1]
	pid, _ = strconv.Atoi(second[1])
	killGroupAtEnd(t, pid)
	f0, _ := strconv.ParseUint(first[0], 10, 64)
	f1, _ := strconv.ParseUint(second[0], 10, 64)
	if f0 == 0 || f1 <= f0 {
		t.Errorf("B's fence %d is not larger than A's %d", f1, f0)
	}

	b.cmd.Process.Signal(syscall.SIGTERM)
	if code := b.wait(t, 15*time.Second); code != 128+int(syscall.SIGTERM) {
		t.Errorf("B: exit status %d after SIGTERM, want %d; stderr:\n%s", code, 128+int(syscall.SIGTERM), b.stderr.String())
	}
}

// TestEtcdURLSecretsNotShown: run, elect and status with etcd URLs that
// carry a password: unreachable ones exit with the unavailable status,
// malformed ones with the usage status, and no output shows the password.
func TestEtcdURLSecretsNotShown(t *testing.T) {
	t.Parallel()
	const pw = "s3cretEtcdPw"
	for _, tc := range []struct {
		url  string
		want int
	}{
		{"etcd://root:" + pw + "@127.0.0.1:1/p?dial_timeout=300ms", exitUnavailable},
		{"etcds://root:" + pw + "@127.0.0.1:1/p?dial_timeout=300ms", exitUnavailable},
		{"etcd://root:" + pw + "@127.0.0.1:1/p?bogus=" + pw, exitUsage},
		{"etcd://root:" + pw + "@127.0.0.1:notaport/p", exitUsage},
	} {
		for _, args := range [][]string{
			{"run", "--url", tc.url, "--key", "k", "--", "true"},
			{"elect", "--log-format", "json", "--url", tc.url, "--key", "k", "--", "true"},
			{"status", "--url", tc.url, "k"},
		} {
			p := startDlock(t, args[0], nil, args...)
			code := p.wait(t, 30*time.Second)
			out := p.stdout.String() + p.stderr.String()
			if code != tc.want {
				t.Errorf("dlock %s --url %s: exit status %d, want %d; output:\n%s", args[0], redact(tc.url), code, tc.want, out)
			}
			if strings.Contains(out, pw) {
				t.Errorf("dlock %s shows the password:\n%s", args[0], out)
			}
			if out == "" {
				t.Errorf("dlock %s --url %s: no message", args[0], redact(tc.url))
			}
		}
	}
}
