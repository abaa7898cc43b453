// Command dlock runs a program on exactly one machine at a time, using a
// distributed lock from package [github.com/dlock-go/dlock].
//
//	dlock run    --key K [flags] -- CMD [ARG...]   run CMD while holding K
//	dlock elect  --key K [flags] -- CMD [ARG...]   hot standby: one machine runs CMD
//	dlock status [flags] K                         show who holds K
//	dlock demo   [--url URL] [--workers N]         watch a crash and a takeover
//	dlock version                                  show the version and build
//
// Start with the demo: it needs no setup, runs in about three seconds on an
// in-memory backend, and shows workers electing a runner, the runner
// crashing (it stops renewing and never releases, as a killed process
// would), and another taking over with a larger fence once the TTL runs out:
//
//	go run github.com/dlock-go/dlock/cmd/dlock demo
//
// A cron job that must not run twice at once, on every machine:
//
//	*/5 * * * * DLOCK_URL=redis://lock.internal:6379 dlock run --key reports -- /usr/local/bin/build-reports
//
// One machine runs it; the others exit with status 75 and say who holds the
// lock (with -q they say nothing, and --busy-exit 0 makes skipping a
// success). The command gets DLOCK_KEY, DLOCK_FENCE and DLOCK_TOKEN in its
// environment; DLOCK_FENCE grows with every grant of the key, for resources
// that reject writes from stale holders. DLOCK_TOKEN is the lease's secret
// (it releases the key), and the environment of the whole job tree: every
// process the job starts inherits it, so unset it before running what
// should not see it.
//
// # URLs
//
// The backend is the URL of --url, or else of $DLOCK_URL: mem://NAME (in
// this process only, for the demo), redis://, rediss://, redis+cluster://,
// redis+sentinel://, redlock:// and redlocks:// (see package dlock), and
// etcd:// and etcds:// (see package
// [github.com/dlock-go/dlock/etcddriver]). dlock prints URLs only with
// their password hidden.
//
// # Processes and signals
//
// dlock run and dlock elect start the command, through a guardian process
// (dlock itself, re-executed), in a process group of its own. The job never
// outlives the lease: the guardian keeps the lease's local deadline, which
// comes before the backend's expiry and which each confirmed renewal moves
// later. While renewal is not confirmed, the group gets SIGTERM once the
// time left is no more than --grace, and every process the command started
// gets SIGKILL shortly before the deadline itself, even if dlock is stopped
// or dead by then. A --grace longer than the TTL allows is cut down (to
// about TTL/3 with the default renewal interval). If the backend says the
// key is held by someone else, the group gets SIGTERM at once and SIGKILL
// --grace later, or at the deadline if that comes first. After the command
// exits, processes it left are terminated the same way before the lock is
// released.
//
// SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGCONT received
// by dlock are forwarded to the command's group; the command decides what
// they mean, and its exit status becomes dlock's. Before the command
// starts, the first of them ends dlock with status 128+N. SIGTSTP, SIGTTIN
// and SIGTTOU do not stop dlock, which must keep renewing; SIGPIPE is
// ignored, so that a closed stderr never skips the clean-up and release.
//
// On Linux the guardian is a child subreaper: a process the command starts
// stays its descendant even after a double fork or setsid, and when dlock
// dies, however (SIGKILL, the OOM killer), the guardian kills every one of
// them at once. What escapes: work handed to another service (systemd-run,
// at, a container runtime), processes that change user so that they may
// not be signalled, and, if the guardian and dlock are both killed with
// SIGKILL, the command's descendants (the command dies with the guardian;
// if the guardian alone is killed, dlock, a subreaper too, kills its
// descendants before it releases the key). Other Unix
// systems contain only the command's process group, while the guardian
// lives; Windows is not supported by run and elect.
//
// Because the command is not in the terminal's foreground process group,
// a program that reads from the terminal is stopped (SIGTTIN): dlock is for
// jobs and services, not interactive programs.
//
// # Exit status
//
//	N       the command's own status (128+N if signal N killed it)
//	0 / 1   status: the key is held / free
//	64      usage or configuration error: flags, arguments, URL (EX_USAGE)
//	69      the backend is unreachable or refused the request, e.g. a wrong
//	        password (EX_UNAVAILABLE)
//	75      the key is busy: held by someone else, with --wait 0 or after the
//	        wait ran out (EX_TEMPFAIL: try again later); --busy-exit N of
//	        dlock run chooses another status
//	76      the lease was lost while the command ran, and the command was
//	        terminated
//	126     the command could not be executed
//	127     the command was not found
//	128+N   dlock was interrupted by signal N before the command started
//
// dlock's own statuses come from sysexits(3) where a meaning fits, away from
// the 0–2 and 126–255 that commands and shells use most. A command can
// still exit with one of them; scripts that must tell the two apart should
// not let the command use 64–76.
//
// # Why the flag package
//
// The standard flag package, with one FlagSet per command, covers four
// commands with a handful of flags each, accepts -flag and --flag, and
// stops at "--" before the command's own arguments. A framework such as
// spf13/cobra would add dependencies, to build and to keep up to date,
// for completion scripts and nested commands that dlock does not need.
//
// # Module
//
// dlock is a module of its own, github.com/dlock-go/dlock/cmd/dlock: it
// imports every driver, etcd's among them, whose client (gRPC, protobuf,
// zap) must not reach the go.sum of applications that use the library
// alone. The repository's go.work lets commands run from its root, such
// as go run ./cmd/dlock demo, build it.
package main
