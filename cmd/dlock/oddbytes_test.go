//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// evilReply is a Redis error with terminal escapes (colour, window title,
// a C1 CSI), a BEL and bytes that are not UTF-8.
const evilReply = "-ERR evil\x1b[31mRED\x1b]0;title\x07 \xc2\x9b2J \xff\xfe end\r\n"

// fakeRedis serves RESP on loopback: HELLO is unknown (RESP2), every
// other command gets evilReply. It stops when t ends.
func fakeRedis(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	cmdRE := regexp.MustCompile(`^\*\d+$`)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if !cmdRE.MatchString(strings.TrimSpace(line)) {
						continue
					}
					r.ReadString('\n') // $len
					name, _ := r.ReadString('\n')
					reply := evilReply
					if strings.EqualFold(strings.TrimSpace(name), "hello") {
						reply = "-ERR unknown command 'HELLO'\r\n"
					}
					c.Write([]byte(reply))
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestBackendErrorBytesEscaped: an error text from the backend with
// terminal escapes, control characters and invalid UTF-8 reaches stderr
// escaped, on one line, in text; and as valid JSON with --log-format json.
func TestBackendErrorBytesEscaped(t *testing.T) {
	t.Parallel()
	url := "redis://" + fakeRedis(t)
	for _, format := range []string{"text", "json"} {
		for _, args := range [][]string{
			{"run", "--log-format", format, "--url", url, "--key", "k", "--", "true"},
			{"elect", "--log-format", format, "--url", url, "--key", "k", "--", "true"},
		} {
			p := startDlock(t, args[0], nil, args...)
			if code := p.wait(t, 30*time.Second); code != exitUnavailable {
				t.Errorf("dlock %s: exit %d, want %d", args[0], code, exitUnavailable)
			}
			out := p.stderr.String()
			if !strings.Contains(out, "evil") {
				t.Errorf("dlock %s --log-format %s does not show the backend's error:\n%q", args[0], format, out)
			}
			if !utf8.ValidString(out) {
				t.Errorf("dlock %s --log-format %s wrote invalid UTF-8: %q", args[0], format, out)
			}
			for _, r := range strings.TrimSuffix(out, "\n") {
				if r != '\n' && unicode.IsControl(r) {
					t.Errorf("dlock %s --log-format %s wrote control character %U: %q", args[0], format, r, out)
					break
				}
			}
			if format == "json" {
				for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
					var rec map[string]any
					if err := json.Unmarshal([]byte(line), &rec); err != nil {
						t.Errorf("not one JSON object: %q: %v", line, err)
					}
				}
			}
		}
	}
}

// TestUsageErrorsJSON: with --log-format json, usage errors found once
// the flags are parsed are one JSON object (level ERROR, status 64) like
// every other message, not two lines of text.
func TestUsageErrorsJSON(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"run", "--log-format", "json", "--url", "mem://", "--key", "k"},
		{"run", "--log-format", "json", "--key", "k", "--", "true"},
		{"run", "--log-format", "json", "--url", "mem://", "--key", "k", "--busy-exit", "300", "--", "true"},
		{"elect", "--log-format", "json", "--url", "mem://", "--ttl", "1ms", "--key", "k", "--", "true"},
		{"elect", "--log-format", "json", "--url", "mem://", "--grace", "-1s", "--key", "k", "--", "true"},
		{"run", "--log-format", "json", "--url", "mem://", "--bogus"},
	} {
		p := startDlock(t, args[0], []string{"DLOCK_URL="}, args...)
		if code := p.wait(t, 30*time.Second); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
		out := strings.TrimSuffix(p.stderr.String(), "\n")
		var rec map[string]any
		if strings.Contains(out, "\n") || json.Unmarshal([]byte(out), &rec) != nil {
			t.Errorf("%v: stderr is not one JSON object:\n%s", args, out)
			continue
		}
		if rec["level"] != "ERROR" || rec["status"] != float64(exitUsage) || rec["cmd"] != "dlock "+args[0] {
			t.Errorf("%v: record %v; want level ERROR, status 64, cmd dlock %s", args, rec, args[0])
		}
	}
}
