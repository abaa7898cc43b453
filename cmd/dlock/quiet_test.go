//go:build unix

package main

import (
	"strings"
	"testing"
	"time"
)

// TestDeadBackendOneLine: a backend that refuses connections gets one
// line from dlock on stderr, and none of go-redis's own log lines
// ("pool.go:…: failed to dial"), which dlock silences in its process.
func TestDeadBackendOneLine(t *testing.T) {
	p := startDlock(t, "dlock run", nil, "run", "--url", "redis://127.0.0.1:1", "--key", "k", "--", "true")
	if code := p.wait(t, 20*time.Second); code != exitUnavailable {
		t.Errorf("exit status %d; want %d", code, exitUnavailable)
	}
	got := p.stderr.String()
	if strings.Count(got, "\n") != 1 || strings.Contains(got, "pool.go") || !strings.Contains(got, "connection refused") {
		t.Errorf("stderr = %q; want one line of dlock's own saying connection refused", got)
	}
}
