package redistest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lifetime collects cleanups of servers shared by a whole test binary.
type lifetime struct {
	mu    sync.Mutex
	fns   []func()
	swept sync.Once
}

func (l *lifetime) Cleanup(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fns = append(l.fns, f)
}

// tempDirPrefix starts the names of the directories of shared servers,
// followed by the test binary's PID and '-'.
const tempDirPrefix = "redistest-"

// tempDir returns a new directory removed at the end of the binary's run.
// Its name carries the PID, so that the first call of a later run can
// remove the directories of runs that died without their cleanups (a
// SIGKILL, the panic of a test timeout); the processes they started died
// with them (see setSysProcAttr).
func (l *lifetime) tempDir() string {
	l.swept.Do(sweepDeadRuns)
	dir, err := os.MkdirTemp("", tempDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		panic("redistest: " + err.Error())
	}
	l.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// sweepDeadRuns removes the directories of shared servers whose test
// binary is no longer running.
func sweepDeadRuns() {
	entries, _ := os.ReadDir(os.TempDir())
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), tempDirPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
	}
}

func (l *lifetime) run() {
	l.mu.Lock()
	fns := l.fns
	l.fns = nil
	l.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

var shared lifetime

type onceVal[T any] struct {
	once sync.Once
	v    T
	err  error
}

func (o *onceVal[T]) get(t testing.TB, start func() (T, error)) T {
	t.Helper()
	o.once.Do(func() { o.v, o.err = start() })
	if o.err != nil {
		fail(t, o.err)
	}
	return o.v
}

var (
	sharedServer   onceVal[*Server]
	sharedTLS      onceVal[*Server]
	sharedCluster  onceVal[*Cluster]
	sharedSentinel onceVal[*Sentinel]
)

// Shared returns a standalone server started once per test binary, as
// [Start] would. Tests that share it must use keys of their own, and must
// not kill, restart or flush it.
func Shared(t testing.TB) *Server {
	t.Helper()
	return sharedServer.get(t, func() (*Server, error) { return start(&shared, shared.tempDir) })
}

// SharedTLS returns a TLS server with ACL users ([StartTLS]) started once
// per test binary.
func SharedTLS(t testing.TB) *Server {
	t.Helper()
	return sharedTLS.get(t, func() (*Server, error) {
		return startProcess(&shared, shared.tempDir(), &Options{TLS: true, ACL: true})
	})
}

// SharedCluster returns a Cluster ([StartCluster]) started once per test
// binary.
func SharedCluster(t testing.TB) *Cluster {
	t.Helper()
	return sharedCluster.get(t, func() (*Cluster, error) { return startCluster(&shared, shared.tempDir()) })
}

// SharedSentinel returns a master, replica and Sentinel ([StartSentinel])
// started once per test binary.
func SharedSentinel(t testing.TB) *Sentinel {
	t.Helper()
	return sharedSentinel.get(t, func() (*Sentinel, error) { return startSentinel(&shared, shared.tempDir()) })
}

// M wraps a testing.M so that servers shared by the test binary stop when
// its tests are done; see [Main].
type M struct{ m *testing.M }

// Main returns m wrapped so that its Run stops the shared servers after the
// tests, before goleak (or anything else) checks for leftovers:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }
func Main(m *testing.M) *M { return &M{m} }

// Run removes what dead runs left behind (see lifetime.tempDir), runs
// the tests and then stops the shared servers.
func (x *M) Run() int {
	shared.swept.Do(sweepDeadRuns)
	code := x.m.Run()
	shared.run()
	return code
}
