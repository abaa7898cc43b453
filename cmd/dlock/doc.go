// Command dlock runs a program on exactly one machine at a time, using a
// distributed lock from package [github.com/dlock-go/dlock].
//
//	dlock run    --key K [flags] -- CMD [ARG...]   run CMD while holding K
//	dlock elect  --key K [flags] -- CMD [ARG...]   hot standby: one machine runs CMD
//	dlock status [flags] K                         show who holds K
//	dlock demo   [--url URL] [--workers N]         watch a crash and a takeover
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
// lock. The command gets DLOCK_KEY, DLOCK_FENCE and DLOCK_TOKEN in its
// environment; DLOCK_FENCE grows with every grant of the key, for resources
// that reject writes from stale holders.
//
// # URLs
//
// The backend is the URL of --url, or else of $DLOCK_URL: mem://NAME (in
// this process only, for the demo), redis://, rediss://, redis+cluster://,
// redis+sentinel://, redlock:// and redlocks://; see package dlock. dlock
// prints URLs only with their password hidden.
//
// # Processes and signals
//
// dlock run and dlock elect start the command in a process group of its
// own. When the lease is lost — renewal could not be confirmed before the
// lease's local deadline, which comes before the backend's expiry, or the
// backend says the key is held by someone else — dlock sends SIGTERM to the
// group, and SIGKILL --grace later (default 10s). Once the lease is gone,
// another machine may start the command, so keep the grace short; only
// fences keep the two apart. After the command exits, processes it left in
// its group are terminated the same way before the lock is released.
//
// SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 received by dlock
// are forwarded to the command's group; the command decides what they mean,
// and its exit status becomes dlock's. Before the command starts, the first
// of them ends dlock with status 128+N.
//
// On Linux the command is started with a parent-death signal
// (SysProcAttr.Pdeathsig = SIGKILL): if dlock dies, even by SIGKILL or the
// OOM killer, the kernel kills the command, so that it does not run on
// unsupervised while the lock expires and another machine starts it.
// Processes the command started are not covered: in a wrapper script, start
// the real program with exec. Other Unix systems have no such signal, and
// Windows is not supported by run and elect.
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
//	        wait ran out (EX_TEMPFAIL: try again later)
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
// spf13/cobra would add dependencies to the module's go.mod, which every
// user of the library downloads, for completion scripts and nested
// commands that dlock does not need.
package main
