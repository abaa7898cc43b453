package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// child is a process of this binary in a child role. It talks in lines:
// it prints "ready" once set up, starts on "go" from its stdin, and ends
// when its stdin closes.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // stdout, line by line; closed at EOF
}

func (c *client) spawn(role string, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, append([]string{"-role", role, "-addrs", c.cfg.addrs, "-etcd", c.cfg.etcd}, args...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<16), 1<<24)
		for sc.Scan() {
			ch.lines <- sc.Text()
		}
		close(ch.lines)
	}()
	return ch, nil
}

// expect waits for a line starting with prefix and returns it.
func (ch *child) expect(prefix string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-ch.lines:
			if !ok {
				return "", fmt.Errorf("child exited before %q", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line, nil
			}
			if strings.HasPrefix(line, "error") {
				return "", fmt.Errorf("child: %s", line)
			}
		case <-t.C:
			return "", fmt.Errorf("no %q from child within %v", prefix, timeout)
		}
	}
}

func (ch *child) send(line string) error {
	_, err := io.WriteString(ch.stdin, line+"\n")
	return err
}

// finish closes stdin and collects the remaining output.
func (ch *child) finish(timeout time.Duration) []string {
	ch.stdin.Close()
	var out []string
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-ch.lines:
			if !ok {
				ch.cmd.Wait()
				return out
			}
			out = append(out, line)
		case <-t.C:
			ch.cmd.Process.Kill()
			ch.cmd.Wait()
			return out
		}
	}
}

func (ch *child) kill() {
	ch.cmd.Process.Kill()
	ch.cmd.Wait()
}

// childIO is the child side: a context that ends when stdin closes, and a
// channel that is closed on "go".
func childIO(ctx context.Context) (context.Context, <-chan struct{}) {
	ctx, cancel := context.WithCancel(ctx)
	start := make(chan struct{})
	go func() {
		defer cancel()
		sc := bufio.NewScanner(os.Stdin)
		started := false
		for sc.Scan() {
			if sc.Text() == "go" && !started {
				started = true
				close(start)
			}
		}
	}()
	return ctx, start
}

// childLib opens the library named by -lib in a child process.
func childLib(cfg *config) (lib, libSpec, error) {
	spec, err := specByLabel(cfg.lib)
	if err != nil {
		return nil, spec, err
	}
	addrs := strings.Split(cfg.addrs, ",")
	l, err := spec.open(env{main: addrs[0], nodes: addrs[1:], ttl: cfg.ttl, etcd: cfg.etcd})
	return l, spec, err
}
