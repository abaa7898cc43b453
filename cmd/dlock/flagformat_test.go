//go:build unix

package main

import (
	"strings"
	"testing"
)

// TestTTLFormatExplained: --ttl 3 (no unit) says what a duration looks
// like, as --wait does, instead of flag's "parse error".
func TestTTLFormatExplained(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--url", "mem://", "--key", "k", "--ttl", "3", "--", "true"},
		{"elect", "--url", "mem://", "--key", "k", "--ttl", "3", "--", "true"},
		{"demo", "--ttl", "3"},
	} {
		code, _, stderr := runInProcess(args...)
		if code != exitUsage || !strings.Contains(stderr, "want a duration with a unit, such as 3s") || strings.Contains(stderr, "parse error") {
			t.Errorf("dlock %s --ttl 3 = %d, %q; want %d explaining the format", args[0], code, stderr, exitUsage)
		}
	}
	if code, _, stderr := runInProcess("run", "--url", "mem://", "--key", "k", "--ttl", "soon", "--", "true"); code != exitUsage || !strings.Contains(stderr, "want a duration such as 15s") {
		t.Errorf("dlock run --ttl soon = %d, %q; want %d explaining the format", code, stderr, exitUsage)
	}
}
