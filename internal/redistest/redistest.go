// Package redistest gives tests real Redis servers: standalone, TLS, with
// ACL users, a three-master Cluster, and a master with a replica watched by
// a Sentinel, plus a TCP proxy for fault injection ([Proxy]).
//
// Servers are processes of the server binary on free loopback ports, each
// with its own temporary directory and no persistence, stopped when the
// test ends. [Start] and [Shared] use the server at DLOCK_REDIS_ADDR
// instead when it is set (host:port of a server you run). Servers that a
// test kills or restarts, or that need special configuration (TLS, ACL,
// Cluster, Sentinel), are always processes ([StartProcess]). Containers
// are not started here: the tests module (tests/containers) runs the
// conformance suite against Redis and Valkey containers, so that this
// module does not require testcontainers-go.
//
// When no server can be had, tests are skipped; with DLOCK_REQUIRE_REDIS=1
// (as CI sets) they fail instead.
//
// # Environment
//
//   - DLOCK_REDIS_SERVER: the server binary, by name on PATH or by path:
//     redis-server (the default) or valkey-server; the Cluster is made
//     with the matching client (redis-cli or valkey-cli).
//   - DLOCK_REDIS_ADDR: an external standalone server for [Start] and
//     [Shared].
//   - DLOCK_REQUIRE_REDIS=1: fail instead of skip without a server.
//   - DLOCK_TOXIPROXY_SERVER: the toxiproxy server binary for [Proxy];
//     by default it is built (once, then cached) from the module in
//     toxiproxyserver/ that pins toxiproxy v2.12.0.
//
// Servers started with a testing.TB stop in its Cleanup. The Shared…
// functions start a server once per test binary; wrap the test main with
// [Main] so they stop before goleak looks for leftover goroutines:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }
//
// Every process started here binds to 127.0.0.1 only and is killed by the
// kernel if the test binary dies before its cleanup.
package redistest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Environment variables read by this package.
const (
	EnvAddr      = "DLOCK_REDIS_ADDR"
	EnvServer    = "DLOCK_REDIS_SERVER"
	EnvRequire   = "DLOCK_REQUIRE_REDIS"
	EnvToxiproxy = "DLOCK_TOXIPROXY_SERVER"
)

// startTimeout bounds the wait for one server to answer.
const startTimeout = 15 * time.Second

// errNoRedis reports that no Redis could be found on this machine: tests
// skip, unless DLOCK_REQUIRE_REDIS=1.
var errNoRedis = errors.New("redistest: no Redis available")

// cleaner is the part of testing.TB that servers need to tie their
// lifetime to: a test, or the test binary for shared servers.
type cleaner interface {
	Cleanup(func())
}

// fail ends t for err: a skip when Redis is missing and not required, a
// failure otherwise.
func fail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, errNoRedis) && os.Getenv(EnvRequire) != "1" {
		t.Skipf("%v (set %s=1 to fail instead)", err, EnvRequire)
	}
	t.Fatal(err)
}

// serverBinary finds the server binary that DLOCK_REDIS_SERVER names
// (default redis-server).
func serverBinary() (string, error) {
	name := os.Getenv(EnvServer)
	if name == "" {
		name = "redis-server"
	}
	return lookBinary(name)
}

// cliBinary finds the command-line client that comes with the server:
// valkey-cli for valkey-server, else redis-cli.
func cliBinary() (string, error) {
	server, err := serverBinary()
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(filepath.Base(server), "valkey") {
		return lookBinary(filepath.Join(filepath.Dir(server), "valkey-cli"))
	}
	return lookBinary("redis-cli")
}

// ServerName returns the base name of the server binary the processes
// run: redis-server or valkey-server, after DLOCK_REDIS_SERVER.
func ServerName() string {
	if name := os.Getenv(EnvServer); name != "" {
		return filepath.Base(name)
	}
	return "redis-server"
}

// lookBinary finds a binary by path, on PATH or in /usr/bin.
func lookBinary(name string) (string, error) {
	if filepath.IsAbs(name) {
		if _, err := os.Stat(name); err != nil {
			return "", fmt.Errorf("%w: %s: %v", errNoRedis, name, err)
		}
		return name, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/bin", name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: %s is not installed", errNoRedis, name)
}

// Credentials are an ACL user's name and password.
type Credentials struct {
	Username, Password string
}

// ACL users of servers started with Options.ACL. The default user is
// disabled there.
var (
	// FullUser may run every command on every key and channel.
	FullUser = Credentials{"dlock", "dlock-secret-pw"}
	// RestrictedUser may not run scripts (EVAL, EVALSHA…), so it cannot
	// take locks: for tests of a missing ACL permission.
	RestrictedUser = Credentials{"noscript", "noscript-secret-pw"}
)

// Options configure a server started by [StartProcess]. The zero value is
// a plain server.
type Options struct {
	// TLS makes the server accept TLS connections only, with a
	// certificate made for this server; see [Server.TLSConfig].
	TLS bool
	// ACL disables the default user and adds [FullUser] and
	// [RestrictedUser].
	ACL bool
	// Args are more redis-server configuration directives, as command-line
	// arguments ("--maxmemory", "10mb").
	Args []string

	// perAttempt, if set, adds arguments chosen anew for each start
	// attempt (such as a free cluster bus port).
	perAttempt func() ([]string, error)
}

// Server is one standalone Redis server. Its methods that kill or restart
// it work only for processes.
type Server struct {
	addr     string
	tlsConf  *tls.Config
	acl      bool
	external bool

	mu   sync.Mutex
	proc *process // nil for an external server or a container
	spec procSpec
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.addr }

// TLSConfig returns a client TLS configuration that trusts the server's
// certificate, or nil if the server does not use TLS. Each call returns a
// new copy.
func (s *Server) TLSConfig() *tls.Config {
	if s.tlsConf == nil {
		return nil
	}
	return s.tlsConf.Clone()
}

// Options returns go-redis client options for the server: its address,
// TLS configuration, and [FullUser] when the server has ACL users. Short
// timeouts suit tests.
func (s *Server) Options() *redis.Options {
	o := &redis.Options{
		Addr:                  s.addr,
		TLSConfig:             s.TLSConfig(),
		DialTimeout:           2 * time.Second,
		ReadTimeout:           2 * time.Second,
		WriteTimeout:          2 * time.Second,
		ContextTimeoutEnabled: true,
	}
	if s.acl {
		o.Username, o.Password = FullUser.Username, FullUser.Password
	}
	return o
}

// Client returns a new client of the server with [Server.Options], closed
// when t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(s.Options())
	t.Cleanup(func() { c.Close() })
	return c
}

// Kill stops the server at once with SIGKILL, as a crash would.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	p := s.process(t)
	p.kill()
}

// Stop shuts the server down with SIGTERM and waits for it to exit.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	p := s.process(t)
	p.stop()
}

// Restart kills the server if it runs and starts it again, empty, on the
// same port, and waits until it answers.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	p := s.process(t)
	p.kill()
	np, err := startProcessOnce(s.spec)
	if err != nil {
		t.Fatalf("redistest: restart %s: %v", s.addr, err)
	}
	s.mu.Lock()
	s.proc = np
	s.mu.Unlock()
}

func (s *Server) process(t testing.TB) *process {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		t.Fatalf("redistest: server %s is not a process this package started; use StartProcess", s.addr)
	}
	return s.proc
}

// shutdown kills the current process, if any; for cleanup.
func (s *Server) shutdown() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// Start returns a standalone server: the one at DLOCK_REDIS_ADDR, else a
// server process. It stops when t ends. Use [StartProcess] to kill or
// restart it.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start(t, t.TempDir)
	if err != nil {
		fail(t, err)
	}
	return s
}

func start(c cleaner, tempDir func() string) (*Server, error) {
	if addr := os.Getenv(EnvAddr); addr != "" {
		return &Server{addr: addr, external: true}, nil
	}
	return startProcess(c, tempDir(), nil)
}

// StartProcess starts a server process configured by o (nil for a
// plain server) on a free loopback port, and stops it when t ends.
func StartProcess(t testing.TB, o *Options) *Server {
	t.Helper()
	s, err := startProcess(t, t.TempDir(), o)
	if err != nil {
		fail(t, err)
	}
	return s
}

// StartTLS starts a TLS server with the ACL users of Options.ACL.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	return StartProcess(t, &Options{TLS: true, ACL: true})
}

// StartACL starts a server whose default user is disabled, with the users
// [FullUser] and [RestrictedUser].
func StartACL(t testing.TB) *Server {
	t.Helper()
	return StartProcess(t, &Options{ACL: true})
}

// procSpec is everything needed to start (or restart) one process.
type procSpec struct {
	bin  string   // redis-server
	args []string // including --port
	dir  string   // working directory and log
	port int
	tls  *tls.Config
	name string // for messages
}

func startProcess(c cleaner, dir string, o *Options) (*Server, error) {
	if o == nil {
		o = &Options{}
	}
	bin, err := serverBinary()
	if err != nil {
		return nil, err
	}
	var clientTLS *tls.Config
	var tlsArgs []string
	if o.TLS {
		files, conf, err := writeCerts(dir)
		if err != nil {
			return nil, err
		}
		clientTLS = conf
		tlsArgs = []string{
			"--tls-cert-file", files.cert, "--tls-key-file", files.key,
			"--tls-ca-cert-file", files.ca, "--tls-auth-clients", "no",
		}
	}
	extra := append([]string(nil), o.Args...)
	if o.ACL {
		extra = append(extra,
			"--user", "default", "off",
			"--user", FullUser.Username, "on", ">"+FullUser.Password, "~*", "&*", "+@all",
			"--user", RestrictedUser.Username, "on", ">"+RestrictedUser.Password, "~*", "&*", "+@all", "-@scripting",
		)
	}
	// A free port may be taken by someone else before the server binds
	// it: try a few.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		spec := procSpec{bin: bin, dir: dir, port: port, tls: clientTLS, name: ServerName()}
		spec.args = baseArgs(port, dir, o.TLS)
		spec.args = append(spec.args, tlsArgs...)
		spec.args = append(spec.args, extra...)
		if o.perAttempt != nil {
			more, err := o.perAttempt()
			if err != nil {
				return nil, err
			}
			spec.args = append(spec.args, more...)
		}
		p, err := startProcessOnce(spec)
		if err != nil {
			lastErr = err
			continue
		}
		s := &Server{addr: p.addr, tlsConf: clientTLS, acl: o.ACL, proc: p, spec: spec}
		c.Cleanup(s.shutdown)
		return s, nil
	}
	return nil, lastErr
}

func baseArgs(port int, dir string, useTLS bool) []string {
	p := strconv.Itoa(port)
	args := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--logfile", "", "--protected-mode", "yes"}
	if useTLS {
		return append(args, "--port", "0", "--tls-port", p)
	}
	return append(args, "--port", p)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// process is one running redis-server (or sentinel).
type process struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and been reaped
	log  string
	once sync.Once
}

// startProcessOnce starts spec's process and waits until it answers.
func startProcessOnce(spec procSpec) (*process, error) {
	p, err := spawn(spec, nil)
	if err != nil {
		return nil, err
	}
	if err := waitReady(p, spec.tls); err != nil {
		p.kill()
		return nil, fmt.Errorf("redistest: %s on port %d: %w\n%s", spec.name, spec.port, err, tail(p.log))
	}
	return p, nil
}

// spawn starts spec's process with its output in a log file in spec.dir,
// and env added to the environment. The process dies with the test binary
// (see setSysProcAttr); a goroutine reaps it and closes done.
func spawn(spec procSpec, env []string) (*process, error) {
	logPath := filepath.Join(spec.dir, fmt.Sprintf("%s-%d.log", spec.name, spec.port))
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(spec.bin, spec.args...)
	cmd.Dir = spec.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	setSysProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redistest: start %s: %w", spec.bin, err)
	}
	p := &process{
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(spec.port)),
		cmd:  cmd, done: make(chan struct{}), log: logPath,
	}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls the server with PING until it answers. There is no
// event to wait for: redis-server tells nobody when it listens.
func waitReady(p *process, tlsConf *tls.Config) error {
	deadline := time.Now().Add(startTimeout)
	delay := 2 * time.Millisecond
	for {
		select {
		case <-p.done:
			return errors.New("exited during start-up")
		default:
		}
		err := ping(p.addr, tlsConf)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer after %v: %w", startTimeout, err)
		}
		time.Sleep(delay)
		delay = min(delay*2, 50*time.Millisecond)
	}
}

// ping sends one PING and accepts any reply: NOAUTH also means the server
// is up.
func ping(addr string, tlsConf *tls.Config) error {
	d := net.Dialer{Timeout: time.Second}
	var conn net.Conn
	var err error
	if tlsConf != nil {
		conn, err = tls.DialWithDialer(&d, "tcp", addr, tlsConf)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "-LOADING") {
		return errors.New(strings.TrimSpace(line))
	}
	return nil
}

func (p *process) kill() {
	p.once.Do(func() {
		p.cmd.Process.Kill()
	})
	<-p.done
}

func (p *process) stop() {
	p.cmd.Process.Signal(sigterm)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

// tail returns the end of a log file, for failure messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
