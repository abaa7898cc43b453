package redistest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// toxiproxyServer is the toxiproxy server process that runs every [Proxy]
// of a test binary. It starts with the first NewProxy and stops with the
// shared servers ([Main]), or with the test binary.
type toxiproxyServer struct {
	addr   string // its HTTP API, on loopback
	proc   *process
	client *http.Client
}

var sharedToxiproxy onceVal[*toxiproxyServer]

func startToxiproxy() (*toxiproxyServer, error) {
	bin, err := toxiproxyBinary()
	if err != nil {
		return nil, err
	}
	dir := shared.tempDir()
	// No keep-alive: no idle connection (and no goroutine of net/http)
	// outlives a call, so goleak stays quiet between tests.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		spec := procSpec{bin: bin, dir: dir, port: port, name: "toxiproxy-server",
			args: []string{"-host", "127.0.0.1", "-port", fmt.Sprint(port)}}
		p, err := spawn(spec, []string{"LOG_LEVEL=error"})
		if err != nil {
			return nil, err
		}
		s := &toxiproxyServer{addr: p.addr, proc: p, client: client}
		if err := s.waitReady(); err != nil {
			p.kill()
			lastErr = fmt.Errorf("redistest: toxiproxy-server on port %d: %w\n%s", port, err, tail(p.log))
			continue
		}
		shared.Cleanup(p.kill)
		return s, nil
	}
	return nil, lastErr
}

// waitReady polls the API until it answers: the server tells nobody when
// it listens. A port someone else took makes the server log an error and
// stay up without an API, so the log is read too.
func (s *toxiproxyServer) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	delay := 2 * time.Millisecond
	for {
		select {
		case <-s.proc.done:
			return errors.New("exited during start-up")
		default:
		}
		var v struct {
			Version string `json:"version"`
		}
		err := s.call(http.MethodGet, "/version", nil, &v)
		if err == nil {
			return nil
		}
		if strings.Contains(tail(s.proc.log), "finished with error") {
			return errors.New("API did not start")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer after %v: %w", startTimeout, err)
		}
		time.Sleep(delay)
		delay = min(delay*2, 50*time.Millisecond)
	}
}

// toxiproxyBinary returns the toxiproxy server to run: DLOCK_TOXIPROXY_SERVER
// if set; else one built from the module that pins it in this source tree
// (toxiproxyserver/, built once and kept in the user's cache directory,
// keyed by that module's go.sum and the Go version); else
// toxiproxy-server on PATH.
func toxiproxyBinary() (string, error) {
	if p := os.Getenv(EnvToxiproxy); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("redistest: %s: %w", EnvToxiproxy, err)
		}
		return p, nil
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		src := filepath.Join(filepath.Dir(file), "toxiproxyserver")
		if _, err := os.Stat(filepath.Join(src, "go.mod")); err == nil {
			if _, err := exec.LookPath("go"); err == nil {
				return buildToxiproxy(src)
			}
		}
	}
	if p, err := exec.LookPath("toxiproxy-server"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: no toxiproxy-server (set %s, or run from the source tree with go on PATH)", errNoRedis, EnvToxiproxy)
}

// buildToxiproxy builds the server from the pinning module in src, unless
// a build of the same go.mod, go.sum and Go release is in the cache. Test
// binaries of several packages run at once: a lock file makes one of them
// build while the others wait for it.
func buildToxiproxy(src string) (string, error) {
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", fmt.Errorf("redistest: toxiproxy server module: %w", err)
		}
		h.Write(b)
	}
	h.Write([]byte(runtime.Version()))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "dlock-redistest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("redistest: %w", err)
	}
	bin := filepath.Join(dir, "toxiproxy-server-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	unlock, err := lockFile(filepath.Join(dir, "build.lock"))
	if err != nil {
		return "", fmt.Errorf("redistest: %w", err)
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // another test binary built it while we waited
	}
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "github.com/Shopify/toxiproxy/v2/cmd/server")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("redistest: build toxiproxy-server in %s: %w\n%s", src, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("redistest: %w", err)
	}
	return bin, nil
}
