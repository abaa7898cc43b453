package main

// The backends dlock can open by URL.
import (
	_ "github.com/dlock-go/dlock/etcddriver"
	_ "github.com/dlock-go/dlock/memdriver"
	_ "github.com/dlock-go/dlock/redisdriver"
	_ "github.com/dlock-go/dlock/redlock"
)
