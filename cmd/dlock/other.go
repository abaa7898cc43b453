//go:build !unix

package main

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"syscall"
)

// dlock run and dlock elect supervise a process group, which needs Unix.

func cmdRun(args []string, stdout, stderr io.Writer) int   { return unsupported("run", stderr) }
func cmdElect(args []string, stdout, stderr io.Writer) int { return unsupported("elect", stderr) }

const guardianCmd = "__guardian"

func adoptOrphans() {}

func guardianMain([]string) int { return exitUsage }

func unsupported(cmd string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "dlock %s: not supported on %s\n", cmd, runtime.GOOS)
	return exitUsage
}

func signalName(sig syscall.Signal) string { return "signal " + strconv.Itoa(int(sig)) }
