package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-go/dlock/internal/redistest"
)

// startIdleProcesses starts n idle processes (perl, forked, sharing
// memory) for as long as t runs: a busy host, whose /proc takes a while
// to scan.
func startIdleProcesses(t *testing.T, n int) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Closing w makes the parent kill the children, in batches (an exit
	// of thousands at once loads the machine), and reap them. Each child
	// reports that it is idle on a pipe, then waits for end-of-file on
	// another pipe of the parent's, so that none is left if the parent
	// dies; the parent says "ready" once every child is idle.
	cmd := exec.Command("perl", "-e", `$| = 1; my @k; pipe(my $r, my $w) or die "pipe: $!"; pipe(my $ir, my $iw) or die "pipe: $!";
for (1..$ARGV[0]) { my $p = fork(); die "fork: $!" unless defined $p; if (!$p) { close STDIN; close STDOUT; close $w; close $ir; syswrite($iw, "x"); close $iw; sysread($r, my $b, 1); exit 0 } push @k, $p }
close $r; close $iw; my $n = 0; while ($n < @k) { my $got = sysread($ir, my $b, 4096) or die "children: $!"; $n += $got }
print "ready\n"; close STDOUT;
sysread(STDIN, my $b, 1); while (my @batch = splice(@k, 0, 200)) { kill 'KILL', @batch; waitpid($_, 0) for @batch }`, strconv.Itoa(n))
	cmd.Stdin = r
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("perl, to start %d processes: %v", n, err)
	}
	t.Cleanup(func() {
		w.Close()
		cmd.Wait()
	})
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("starting %d idle processes failed", n)
	}
}

// TestRedisBusyHostKillsTreeBeforeExpiry: with 4,000 idle processes on the
// host, Redis pauses writes (CLIENT PAUSE WRITE), so a lease of TTL 500ms
// cannot be renewed; the job ignores SIGTERM and has a child that called
// setsid and ignores it too. Every process of the job must be dead before
// the key's expiry on the server (PEXPIRETIME), 5 runs out of 5, with the
// job in a cgroup of its own (cgroup.kill). Without one (a scan of /proc,
// which on such a host took longer than the fixed kill lead: the setsid'd
// child outlived the key by 41-44ms) the same holds, 3 runs out of 3, at
// a TTL of 3s: the kill lead must be twice a scan, which takes up to
// 400ms for a race-enabled guardian on a loaded machine, and a TTL of
// 500ms leaves it 163ms (dlock warns then).
func TestRedisBusyHostKillsTreeBeforeExpiry(t *testing.T) {
	if _, err := exec.LookPath("perl"); err != nil {
		t.Fatal("perl, which starts the idle processes, is not installed")
	}
	startIdleProcesses(t, 4000)
	srv := redistest.StartProcess(t, nil)
	rdb := srv.Client(t)
	for _, tc := range []struct {
		name, env, containment string
		ttl                    time.Duration
		runs                   int
	}{
		{"Cgroup", "", "runs in cgroup ", 500 * time.Millisecond, 5},
		{"Scan", noCgroupEnv + "=1", "contained by scanning /proc", 3 * time.Second, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for run := range tc.runs {
				dir := t.TempDir()
				key := uniqueKey(t)
				lockKey := "dlock:{" + key + "}"
				env := []string{"D=" + dir, tc.env}
				job := script(t, dir, "job.sh", `
trap "" TERM
setsid sh -c 'trap "" TERM; echo $$ > "$D/bg"; exec sleep 600' &
echo $$ > "$D/main"
while :; do sleep 0.05; done
`)
				p := startDlock(t, "dlock run", env, "run", "--url", "redis://"+srv.Addr(), "--key", key, "--ttl", tc.ttl.String(), "--verbose", "--", job)
				waitFor(t, 20*time.Second, "the job and its setsid'd child to start", func() bool {
					return readFile(t, filepath.Join(dir, "main")) != "" && readFile(t, filepath.Join(dir, "bg")) != ""
				})
				pids := readPIDs(t, dir, "main", "bg")
				ctx := t.Context()
				if err := rdb.Do(ctx, "CLIENT", "PAUSE", "10000", "WRITE").Err(); err != nil {
					t.Fatal(err)
				}
				unpause := func() { rdb.Do(ctx, "CLIENT", "UNPAUSE") }
				t.Cleanup(unpause)
				// Reads go on during the pause; no renewal lands after it.
				expiryMs, err := rdb.Do(ctx, "PEXPIRETIME", lockKey).Int64()
				if err != nil || expiryMs <= 0 {
					t.Fatalf("PEXPIRETIME %s: %d, %v", lockKey, expiryMs, err)
				}
				expiry := time.UnixMilli(expiryMs)
				gone := waitExit(t, pids, time.Until(expiry)+5*time.Second)
				unpause()
				switch {
				case !allGone(pids):
					t.Fatalf("run %d: the job's processes %v still run 5s after the key's expiry", run, pids)
				case !gone.Before(expiry):
					t.Errorf("run %d: the job's last process was gone %v after the key's expiry on the server", run, gone.Sub(expiry))
					t.Logf("run %d: the key expired at %s, the job's tree was gone at %s; dlock run's stderr:\n%s",
						run, expiry.Format("15:04:05.000"), gone.Format("15:04:05.000"), p.stderr.String())
				default:
					t.Logf("run %d: the job's tree was gone %v before the key's expiry", run, expiry.Sub(gone))
				}
				if code := p.wait(t, 20*time.Second); code != exitLeaseLost {
					t.Errorf("run %d: exit status %d, want %d (lease lost)", run, code, exitLeaseLost)
				}
				if !strings.Contains(p.stderr.String(), tc.containment) {
					t.Errorf("run %d: dlock run --verbose does not say %q:\n%s", run, tc.containment, p.stderr.String())
				}
				if m := cgroupRE.FindStringSubmatch(p.stderr.String()); m != nil {
					if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
						t.Errorf("run %d: the job's cgroup %s is left after dlock exited (%v)", run, m[1], err)
					}
				}
			}
		})
	}
}

var cgroupRE = regexp.MustCompile(`runs in cgroup (\S+);`)

// waitCgroup returns the job's cgroup that dlock run --verbose p names. It
// waits for the line: the job may start, and write its files, before dlock
// has logged the guardian's report of its containment.
func waitCgroup(t *testing.T, p *proc) string {
	t.Helper()
	waitFor(t, 10*time.Second, p.name+" --verbose to name the job's cgroup (root runs this test, so dlock may create one)", func() bool {
		return cgroupRE.MatchString(p.stderr.String())
	})
	return cgroupRE.FindStringSubmatch(p.stderr.String())[1]
}

// waitExit waits until every process of pids has exited, for up to
// timeout, and returns when the last one did, as soon as the kernel says
// so (a pidfd becomes readable when its process exits).
func waitExit(t *testing.T, pids []int, timeout time.Duration) time.Time {
	t.Helper()
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(ep)
	const sysPidfdOpen = 434
	for _, pid := range pids {
		fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
		if errno == syscall.ESRCH {
			continue // gone already
		} else if errno != 0 {
			t.Fatalf("pidfd_open %d: %v", pid, errno)
		}
		defer syscall.Close(int(fd))
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
			t.Fatal(err)
		}
	}
	end := time.Now().Add(timeout)
	events := make([]syscall.EpollEvent, len(pids))
	for !allGone(pids) {
		left := time.Until(end)
		if left <= 0 {
			break
		}
		n, err := syscall.EpollWait(ep, events, int(left.Milliseconds())+1)
		if err != nil && err != syscall.EINTR {
			t.Fatal(err)
		}
		for _, e := range events[:max(n, 0)] {
			syscall.EpollCtl(ep, syscall.EPOLL_CTL_DEL, int(e.Fd), nil)
		}
	}
	return time.Now()
}
