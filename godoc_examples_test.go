package dlock_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestExamplesImportTheirDrivers: every file of examples that opens a URL
// imports the driver package that registers its scheme, so that an
// example copied from go doc (which shows the file's imports) runs; a
// copied example failed with "unknown URL scheme".
func TestExamplesImportTheirDrivers(t *testing.T) {
	files, err := filepath.Glob("example*_test.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example files: %v", err)
	}
	drivers := map[string]string{
		`"mem://`:   "github.com/dlock-go/dlock/memdriver",
		`"redis://`: "github.com/dlock-go/dlock/redisdriver",
	}
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		imported := map[string]bool{}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			imported[p] = true
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for scheme, pkg := range drivers {
			if strings.Contains(string(src), scheme) && !imported[pkg] {
				t.Errorf("%s opens %s URLs without importing %s", name, strings.Trim(scheme, `"`), pkg)
			}
		}
	}
}
