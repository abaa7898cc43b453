//go:build unix && !linux

package main

import (
	"errors"
	"time"
)

const noCgroupEnv = "DLOCK_NO_CGROUP"

// jobCgroup is Linux only: elsewhere the guardian contains the job's
// process group.
type jobCgroup struct {
	path string
	dir  interface{ Fd() uintptr }
}

func newJobCgroup() (*jobCgroup, error)                   { return nil, errors.New("cgroups are Linux only") }
func (cg *jobCgroup) kill() error                         { return nil }
func (cg *jobCgroup) populated() bool                     { return false }
func (cg *jobCgroup) pids() []int                         { return nil }
func (cg *jobCgroup) remove() error                       { return nil }
func (cg *jobCgroup) removeWhenEmpty(time.Duration) error { return nil }
