// Package etcdtest starts real etcd servers for tests: one member or a
// cluster of several, as processes on free loopback ports, with their data
// in a directory under /dev/shm (memory, so that fsync costs nothing).
// Each cluster stops, and its data is removed, when the test that started
// it ends; the kernel kills the processes if the test binary dies first.
//
// It is test machinery, not part of the driver's API: it is a package of
// the etcddriver module rather than an internal one only so that the
// repository's other test modules (tests/linearize) can start etcd too,
// and it may change with them. Applications do not compile it unless they
// import it, and it needs nothing the driver does not.
//
// When no etcd binary can be found, tests are skipped; with
// DLOCK_REQUIRE_ETCD=1, or DLOCK_REQUIRE_REDIS=1 as CI sets, they fail
// instead.
//
// # Environment
//
//   - DLOCK_ETCD_SERVER: the etcd binary, by name on PATH or by path
//     (default: etcd, then /usr/bin/etcd).
//   - DLOCK_REQUIRE_ETCD=1 (or DLOCK_REQUIRE_REDIS=1): fail instead of
//     skip without etcd.
//
// The members run with a heartbeat of 100 ms and an election timeout of
// 600 ms, so that etcd's least lease TTL (1.5 election timeouts, rounded up
// to the second) is one second and the conformance suite's short TTLs are
// not stretched to two.
package etcdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Environment variables.
const (
	EnvServer       = "DLOCK_ETCD_SERVER"
	EnvRequire      = "DLOCK_REQUIRE_ETCD"
	EnvRequireRedis = "DLOCK_REQUIRE_REDIS"
)

// startTimeout bounds the wait for a cluster to elect a leader.
const startTimeout = 20 * time.Second

// Cluster is a running etcd cluster. Its methods are safe for concurrent
// use.
type Cluster struct {
	members []*Member
	dir     string
}

// Member is one etcd process of a Cluster.
type Member struct {
	Name      string
	ClientURL string // http://127.0.0.1:PORT
	peerURL   string
	args      []string
	log       string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited and been reaped
}

// Binary returns the path of the etcd binary, or an error if there is none.
func Binary() (string, error) {
	name := os.Getenv(EnvServer)
	if name == "" {
		name = "etcd"
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if !strings.Contains(name, "/") {
		if p := filepath.Join("/usr/bin", name); fileExists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("etcdtest: no etcd binary (%s=%q; install etcd-server)", EnvServer, os.Getenv(EnvServer))
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// Required reports whether a missing server must fail the test (or the
// benchmarks run): DLOCK_REQUIRE_ETCD=1 or DLOCK_REQUIRE_REDIS=1.
func Required() bool {
	return os.Getenv(EnvRequire) == "1" || os.Getenv(EnvRequireRedis) == "1"
}

// Start starts a cluster of n members and waits until it has a leader.
// It skips the test if there is no etcd binary, or fails it when one is
// required.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if Required() {
			t.Fatalf("%v, and %s=1 or %s=1 requires one", err, EnvRequire, EnvRequireRedis)
		}
		t.Skipf("%v", err)
	}
	c, err := startCluster(context.Background(), []string{bin}, n)
	if c != nil {
		t.Cleanup(c.stop)
	}
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("etcd logs:%s", c.logs())
		}
	})
	return c
}

// Run starts a cluster of n members outside a test (the benchmarks
// command uses it) and waits until it has a leader; the caller stops it
// with [Cluster.Stop]. command, if not empty, runs each member as that
// command followed by the etcd binary and its arguments (taskset -c 0
// pins the members to CPU 0). Without an etcd binary it returns the error
// of [Binary].
func Run(ctx context.Context, n int, command ...string) (*Cluster, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	c, err := startCluster(ctx, append(command, bin), n)
	if err != nil {
		if c != nil {
			err = fmt.Errorf("%w%s", err, c.logs())
			c.stop()
		}
		return nil, fmt.Errorf("etcdtest: %w", err)
	}
	return c, nil
}

// Stop kills every member and removes the data, for a cluster started by
// [Run] (one started by [Start] stops when its test ends).
func (c *Cluster) Stop() { c.stop() }

// startCluster starts n members, each by the command line argv0 then the
// member's arguments, and waits for a leader. It returns the cluster
// (to stop) whenever its directory was made, also with an error. A port
// that was free when chosen may be taken before a member binds it (by
// another test's server): the cluster is then started again on other
// ports, a few times.
func startCluster(ctx context.Context, argv0 []string, n int) (*Cluster, error) {
	for try := 1; ; try++ {
		c, err := startClusterOnce(ctx, argv0, n)
		if err == nil || c == nil || try == 5 || !strings.Contains(c.logs(), "address already in use") {
			return c, err
		}
		c.stop()
	}
}

// startClusterOnce is one attempt of startCluster.
func startClusterOnce(ctx context.Context, argv0 []string, n int) (*Cluster, error) {
	base := "/dev/shm"
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		base = ""
	}
	dir, err := os.MkdirTemp(base, "dlock-etcd-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	var initial []string
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i)}
		cp, err := freePort()
		if err != nil {
			return c, err
		}
		pp, err := freePort()
		if err != nil {
			return c, err
		}
		m.ClientURL = fmt.Sprintf("http://127.0.0.1:%d", cp)
		m.peerURL = fmt.Sprintf("http://127.0.0.1:%d", pp)
		m.log = filepath.Join(dir, m.Name+".log")
		initial = append(initial, m.Name+"="+m.peerURL)
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.args = append(slices.Clone(argv0),
			"--name", m.Name,
			"--data-dir", filepath.Join(dir, m.Name),
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.peerURL,
			"--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(dir),
			"--heartbeat-interval", "100",
			"--election-timeout", "600",
			"--logger", "zap",
			"--log-outputs", "stderr",
			"--log-level", "warn",
		)
		if err := m.start(); err != nil {
			return c, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if _, err := c.waitLeader(ctx, c.members); err != nil {
		return c, fmt.Errorf("%v%s", err, c.logs())
	}
	return c, nil
}

// freePort returns a loopback TCP port that was free a moment ago. A
// variable, so that a test can hand out a taken one.
var freePort = func() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start starts the member's process, which appends to its log.
func (m *Member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	logf, err := os.OpenFile(m.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(m.args[0], m.args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	setSysProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	m.cmd, m.done = cmd, done
	return nil
}

// Endpoints returns the client URLs of the members.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Pid returns the process id of the member's process (0 if it never
// started).
func (m *Member) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Members returns the members, in the order of Endpoints.
func (c *Cluster) Members() []*Member { return c.members }

// Config returns a client configuration for endpoints (all members if
// none are given), with a short dial timeout and no logging.
func (c *Cluster) Config(endpoints ...string) clientv3.Config {
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	return clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
		// Keep-alive pings drop the connection to a stopped member,
		// so that calls move to another one: gRPC pings no more often
		// than every 10s.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
	}
}

// Client returns a client of the cluster (of endpoints if given), closed
// when t ends.
func (c *Cluster) Client(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cl, err := clientv3.New(c.Config(endpoints...))
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// Leader returns the member that is the leader now, waiting up to
// startTimeout for one among the running members.
func (c *Cluster) Leader(t testing.TB) *Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var running []*Member
	for _, m := range c.members {
		if m.running() {
			running = append(running, m)
		}
	}
	l, err := c.waitLeader(ctx, running)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	return l
}

// waitLeader waits until every member of ms reports the same leader, and
// returns it.
func (c *Cluster) waitLeader(ctx context.Context, ms []*Member) (*Member, error) {
	var last error
	for {
		l, err := c.leaderOf(ctx, ms)
		if err == nil {
			return l, nil
		}
		last = err
		for _, m := range ms {
			if !m.running() {
				// It will not answer: a member that could not bind its
				// port, say.
				return nil, fmt.Errorf("no leader agreed by %d members: %s exited", len(ms), m.Name)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader agreed by %d members: %v", len(ms), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) leaderOf(ctx context.Context, ms []*Member) (*Member, error) {
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.ClientURL)
	}
	cl, err := clientv3.New(c.Config(eps...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var leader uint64
	var leaderEP string
	for _, ep := range eps {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cl.Status(sctx, ep)
		cancel()
		if err != nil {
			return nil, err
		}
		if st.Leader == 0 || (leader != 0 && st.Leader != leader) {
			return nil, errors.New("no leader yet")
		}
		leader = st.Leader
		if st.Header.MemberId == st.Leader {
			leaderEP = ep
		}
	}
	for _, m := range ms {
		if m.ClientURL == leaderEP {
			return m, nil
		}
	}
	return nil, errors.New("the leader is not among the members asked")
}

// Kill kills the member with SIGKILL and waits until it has exited.
func (m *Member) Kill(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Kill()
	<-done
}

// Pause stops the member with SIGSTOP: it keeps its sockets but answers
// nothing, as a machine frozen by a long pause. It returns once the
// process is stopped (the signal takes effect a moment after it is
// sent, and the member may answer meanwhile).
func (m *Member) Pause(t testing.TB) {
	t.Helper()
	m.signal(t, syscall.SIGSTOP)
	m.mu.Lock()
	pid := m.cmd.Process.Pid
	m.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for !stopped(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("etcdtest: %s not stopped 5s after SIGSTOP", m.Name)
		}
		time.Sleep(time.Millisecond)
	}
}

// Resume continues a paused member with SIGCONT.
func (m *Member) Resume(t testing.TB) { m.signal(t, syscall.SIGCONT) }

func (m *Member) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		t.Fatalf("etcdtest: %s is not running", m.Name)
	}
	if err := m.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("etcdtest: signal %s: %v", m.Name, err)
	}
}

// Restart starts a killed member again, with its data.
func (m *Member) Restart(t testing.TB) {
	t.Helper()
	m.Kill(t)
	if err := m.start(); err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
}

func (m *Member) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// stop kills every member and removes the data.
func (c *Cluster) stop() {
	for _, m := range c.members {
		m.mu.Lock()
		cmd, done := m.cmd, m.done
		m.mu.Unlock()
		if cmd != nil {
			cmd.Process.Signal(syscall.SIGCONT)
			cmd.Process.Kill()
			<-done
		}
	}
	os.RemoveAll(c.dir)
}

// logs returns the tail of every member's log, for failure messages.
func (c *Cluster) logs() string {
	var b bytes.Buffer
	for _, m := range c.members {
		data, _ := os.ReadFile(m.log)
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "\n--- %s:\n%s", m.Name, data)
	}
	return b.String()
}
