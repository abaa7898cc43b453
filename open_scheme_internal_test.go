package dlock

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// TestUnknownSchemeNamesPackage: a scheme of this module that no import
// registered is reported with the package to import, not only with
// "(forgotten import?)".
func TestUnknownSchemeNamesPackage(t *testing.T) {
	for scheme, pkg := range map[string]string{
		"mem": "memdriver", "rediss+sentinel": "redisdriver", "redlock": "redlock",
	} {
		err := unknownScheme(&url.URL{Scheme: scheme, Host: "h"})
		if want := `import _ "github.com/dlock-go/dlock/` + pkg + `"`; !strings.Contains(err.Error(), want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("unknown scheme %s = %v; want ErrInvalid saying %s", scheme, err, want)
		}
	}
	if err := unknownScheme(&url.URL{Scheme: "nosuch", Host: "h"}); !strings.Contains(err.Error(), "(forgotten import?)") {
		t.Errorf("unknown scheme nosuch = %v; want the forgotten-import hint", err)
	}
}
