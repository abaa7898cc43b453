package main

import (
	"context"
	"os"

	"github.com/redis/go-redis/v9"
)

func main() {
	// go-redis logs dial failures on its own; dlock reports every error
	// that matters once, in its own words.
	redis.SetLogger(quiet{})
	if len(os.Args) > 1 && (os.Args[1] == "run" || os.Args[1] == "elect") {
		adoptOrphans()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
