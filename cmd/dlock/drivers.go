package main

// The backends dlock can open by URL.
import (
	_ "github.com/dlock-go/dlock/memdriver"
)
