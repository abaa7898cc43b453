package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// noCgroupEnv, set to 1, keeps the guardian from putting the job in a
// cgroup of its own, so that it contains the job by scanning /proc (the
// fallback where dlock may not create cgroups).
const noCgroupEnv = "DLOCK_NO_CGROUP"

// cgroupPrefix starts the name of every job's cgroup:
// dlock-job-PIDNS-PID-START, where PID and START (its start time, in clock
// ticks after boot) name the guardian that created it in pid namespace
// PIDNS, so that a later guardian in the same namespace can tell a cgroup
// whose guardian is dead (see sweepStaleCgroups).
const cgroupPrefix = "dlock-job-"

// A jobCgroup is the cgroup v2 the guardian creates for the job, beside
// its own, and removes when the job's tree is gone. Its cgroup.kill kills
// every process in it at once, with no race against forks and no scan of
// /proc; its cgroup.procs lists them.
type jobCgroup struct {
	path string
	dir  *os.File // for clone3's CLONE_INTO_CGROUP
}

// newJobCgroup creates the job's cgroup, if the machine has cgroup v2 with
// cgroup.kill (Linux 5.14) and dlock may create one beside its own cgroup
// (root, or a delegated subtree). The error says why not.
func newJobCgroup() (*jobCgroup, error) {
	if os.Getenv(noCgroupEnv) == "1" {
		return nil, errors.New(noCgroupEnv + "=1")
	}
	parent, err := ownCgroupDir()
	if err != nil {
		return nil, err
	}
	sweepStaleCgroups(parent)
	start, err := startTime(os.Getpid())
	if err != nil {
		return nil, err
	}
	path := filepath.Join(parent, fmt.Sprintf("%s%s-%d-%d", cgroupPrefix, pidNamespace(), os.Getpid(), start))
	if err := os.Mkdir(path, 0o755); err != nil {
		return nil, err
	}
	cg := &jobCgroup{path: path}
	if _, err := os.Stat(filepath.Join(path, "cgroup.kill")); err != nil {
		cg.remove()
		return nil, fmt.Errorf("no cgroup.kill (Linux 5.14 or later has it): %w", err)
	}
	if cg.dir, err = os.Open(path); err != nil {
		cg.remove()
		return nil, err
	}
	return cg, nil
}

// ownCgroupDir returns the directory of the calling process's cgroup v2,
// found through /proc/self/mountinfo (cgroup2 may be mounted anywhere,
// beside v1 controllers) and /proc/self/cgroup.
func ownCgroupDir() (string, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	var mount string
	for _, line := range strings.Split(string(mi), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) >= 5 && len(g) >= 1 && g[0] == "cgroup2" && f[3] == "/" {
			mount = unescapeMount(f[4])
			break
		}
	}
	if mount == "" {
		return "", errors.New("no cgroup2 file system is mounted")
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(cg), "\n") {
		if rel, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(mount, rel), nil
		}
	}
	return "", errors.New("the process is in no cgroup v2")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// startTime returns the start time of process pid, in clock ticks after
// boot: with the pid, it names one process.
func startTime(pid int) (uint64, error) {
	p, ok := readProc(pid)
	if !ok {
		return 0, fmt.Errorf("no process %d", pid)
	}
	return p.start, nil
}

// sweepStaleCgroups kills what is left in, and removes, the job cgroups in
// dir whose guardian is dead: those of a guardian that was killed together
// with its dlock (SIGKILL to both), whose job escaped containment then.
func sweepStaleCgroups(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), cgroupPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		ns, rest, _ := strings.Cut(rest, "-")
		if ns != pidNamespace() {
			continue // its guardian's pid means nothing here
		}
		pidText, startText, _ := strings.Cut(rest, "-")
		pid, err1 := strconv.Atoi(pidText)
		start, err2 := strconv.ParseUint(startText, 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if p, ok := readProc(pid); ok && p.start == start && !p.zombie {
			continue // its guardian runs
		}
		cg := &jobCgroup{path: filepath.Join(dir, e.Name())}
		cg.kill()
		cg.removeWhenEmpty(time.Second)
	}
}

// pidNamespace identifies the pid namespace of the calling process: the
// inode of /proc/self/ns/pid ("pid:[4026531836]"), or "0" if unknown.
func pidNamespace() string {
	link, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return "0"
	}
	return strings.TrimSuffix(strings.TrimPrefix(link, "pid:["), "]")
}

// kill sends SIGKILL to every process in the cgroup and its descendants.
func (cg *jobCgroup) kill() error {
	return os.WriteFile(filepath.Join(cg.path, "cgroup.kill"), []byte("1"), 0)
}

// populated reports whether a process is left in the cgroup or below it.
// Exited processes do not count, reaped or not.
func (cg *jobCgroup) populated() bool {
	f, err := os.Open(filepath.Join(cg.path, "cgroup.events"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "populated "); ok {
			return v != "0"
		}
	}
	return false
}

// pids lists the processes in the cgroup and the cgroups below it.
func (cg *jobCgroup) pids() []int {
	var pids []int
	filepath.WalkDir(cg.path, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(path)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// remove removes the cgroup and those below it, which must be empty.
func (cg *jobCgroup) remove() error {
	if cg.dir != nil {
		cg.dir.Close()
	}
	var dirs []string
	filepath.WalkDir(cg.path, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	var err error
	for i := len(dirs) - 1; i >= 0; i-- { // the deepest first
		if e := syscall.Rmdir(dirs[i]); e != nil && !errors.Is(e, syscall.ENOENT) {
			err = e
		}
	}
	return err
}

// removeWhenEmpty removes the cgroup once no process is left in it,
// waiting up to timeout for the killed ones to exit.
func (cg *jobCgroup) removeWhenEmpty(timeout time.Duration) error {
	for end := time.Now().Add(timeout); cg.populated() && time.Now().Before(end); {
		time.Sleep(time.Millisecond) // cgroup.events changes have no event without inotify
	}
	return cg.remove()
}
