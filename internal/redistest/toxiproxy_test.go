package redistest

import (
	"debug/buildinfo"
	"os"
	"runtime/debug"
	"testing"
)

// TestToxiproxyPinned checks that the proxy server the tests run is
// toxiproxy v2.12.0, as the pinning module says, read from the binary's
// build information.
func TestToxiproxyPinned(t *testing.T) {
	if os.Getenv(EnvToxiproxy) != "" {
		t.Skipf("%s names a binary of its own", EnvToxiproxy)
	}
	bin, err := toxiproxyBinary()
	if err != nil {
		fail(t, err)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("build info of %s: %v", bin, err)
	}
	// go build of a command in a dependency records that dependency as
	// the main module.
	for _, m := range append([]*debug.Module{&info.Main}, info.Deps...) {
		if m.Path == "github.com/Shopify/toxiproxy/v2" {
			if m.Version != "v2.12.0" {
				t.Errorf("%s is toxiproxy %s, want v2.12.0", bin, m.Version)
			}
			return
		}
	}
	t.Errorf("%s was not built from github.com/Shopify/toxiproxy/v2 (main module %s)", bin, info.Main.Path)
}
