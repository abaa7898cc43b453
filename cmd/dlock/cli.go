package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dlock-go/dlock"
	"github.com/dlock-go/dlock/driver"
)

// Exit statuses of dlock itself. A command's own status is passed through,
// so these are chosen away from the usual ones (0, 1, 2, 126, 127, 128+N),
// following sysexits(3) where a meaning fits.
const (
	exitFree        = 1   // status: the key is free
	exitUsage       = 64  // EX_USAGE: bad flags, arguments, URL or configuration
	exitUnavailable = 69  // EX_UNAVAILABLE: the backend cannot be reached or refused
	exitOSError     = 71  // EX_OSERR: dlock itself could not start the command (no descriptors, no processes)
	exitBusy        = 75  // EX_TEMPFAIL: the key is held by someone else; try later
	exitLeaseLost   = 76  // the lease was lost while the command ran; it was terminated
	exitCannotExec  = 126 // the command could not be executed
	exitNotFound    = 127 // the command was not found
)

const exitCodesHelp = `Exit status:
  N       the command's own exit status (128+N if it was killed by signal N)
  1       status: the key is free
  64      usage or configuration error (flags, arguments, URL)
  69      backend unavailable, or it refused the request (e.g. wrong password)
  71      dlock itself could not start the command (out of file descriptors,
          processes or memory): the command was not tried
  75      the key is busy: held by someone else (--wait 0, or the wait ran out);
          dlock run --busy-exit N chooses another status
  76      the lease was lost while the command ran, and the command was
          terminated: another holder may have started
  126     the command could not be executed
  127     the command was not found
  128+N   dlock was interrupted by signal N before the command started
`

const mainHelp = `dlock runs a command on exactly one machine at a time, using a
distributed lock.

Usage:
  dlock run    --key K [flags] -- CMD [ARG...]   run CMD while holding K
  dlock elect  --key K [flags] -- CMD [ARG...]   hot standby: exactly one
                                                machine runs CMD at a time
  dlock status [flags] K                         show who holds K
  dlock demo   [--url URL] [--workers N]         watch a crash and a takeover
  dlock version                                  show dlock's version and build
  dlock help   [COMMAND]

The backend is the URL given with --url, or else $DLOCK_URL:
  mem://NAME                           in this process only: dlock demo (run and elect refuse it)
  redis://[user:pass@]host:6379/0      one Redis server; rediss:// for TLS
  redis+cluster://h1:6379,h2:6379      Redis Cluster
  redis+sentinel://h1:26379,h2:26379/MASTER
  redlock://h1:6379,h2:6379,h3:6379    a quorum of independent Redis servers
  etcd://h1:2379,h2:2379/PREFIX        an etcd cluster, keys under PREFIX/; etcds:// for TLS
The query parameters ttl, renew, drift, owner and fencing (fencing=false:
no fencing tokens, DLOCK_FENCE is 0) apply to every backend.
Passwords in URLs are never printed.

Try it, with no setup:
  dlock demo

Run 'dlock COMMAND --help' for a command's flags and examples.

` + exitCodesHelp

// versionText describes this build of dlock from its build information:
// the module version (a tag with go install …@version, "(devel)" from a
// checkout), the VCS revision and time when go build stamped them, and the
// Go version.
func versionText() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return fmt.Sprintf("dlock (no build information) %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	var b strings.Builder
	fmt.Fprintf(&b, "dlock %s (module %s)\n", bi.Main.Version, bi.Main.Path)
	if rev := settings["vcs.revision"]; rev != "" {
		fmt.Fprintf(&b, "revision %s", rev)
		if at := settings["vcs.time"]; at != "" {
			fmt.Fprintf(&b, " of %s", at)
		}
		if settings["vcs.modified"] == "true" {
			b.WriteString(", with uncommitted changes")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "built with %s for %s/%s\n", bi.GoVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}

// signalError is the cancellation cause when a signal interrupts dlock.
type signalError struct{ sig syscall.Signal }

func (e *signalError) Error() string { return "interrupted by " + signalName(e.sig) }

// exitCode is the status a shell reports for death by the signal.
func (e *signalError) exitCode() int { return 128 + int(e.sig) }

// run is dlock's main: it runs the command line args (without the program
// name) and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainHelp)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		return cmdRun(rest, stdout, stderr)
	case "elect":
		return cmdElect(rest, stdout, stderr)
	case "status":
		return cmdStatus(rest, stdout, stderr)
	case "demo":
		return cmdDemo(rest, stdout, stderr)
	case guardianCmd:
		return guardianMain(rest)
	case "version", "--version", "-version":
		fmt.Fprint(stdout, versionText())
		return 0
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && rest[0] != "help" {
			return run([]string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, mainHelp)
		return 0
	default:
		fmt.Fprintf(stderr, "dlock: unknown command %q\nRun 'dlock help' for usage.\n", cmd)
		return exitUsage
	}
}

// command is one subcommand's flag set and help.
type command struct {
	name  string // "run"
	usage string // synopsis and description, before the flags
	tail  string // examples, after the flags
	fs    *flag.FlagSet
	// check, if set, checks the command's own flags once they are parsed,
	// before any backend is opened, and returns exitUsage or 0.
	check func() int
	// json, if set, reports whether --log-format json was given: usage
	// errors are then one JSON object too.
	json func() bool

	stdout, stderr io.Writer
}

func newCommand(name, usage, tail string, stdout, stderr io.Writer) *command {
	fs := flag.NewFlagSet("dlock "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // help goes to stdout, errors to stderr: see parse
	return &command{name: name, usage: usage, tail: tail, fs: fs, stdout: stdout, stderr: stderr}
}

// parse parses args. If it returns false, dlock exits with code: help was
// asked for (0) or the flags are wrong (exitUsage).
func (c *command) parse(args []string) (ok bool, code int) {
	c.fs.SetOutput(io.Discard) // errors are printed below, with dlock's prefix
	err := c.fs.Parse(args)
	c.fs.SetOutput(c.stderr)
	if errors.Is(err, flag.ErrHelp) {
		c.help()
		return false, 0
	}
	if err != nil {
		return false, c.usageError("%s", flagError(err))
	}
	return true, 0
}

// parseInterspersed is parse for commands whose positional arguments may
// come before flags ("dlock status KEY --url …"); it returns them.
func (c *command) parseInterspersed(args []string) (pos []string, ok bool, code int) {
	for {
		if ok, code := c.parse(args); !ok {
			return nil, false, code
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			return pos, true, 0
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), true, 0
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (c *command) help() {
	fmt.Fprint(c.stdout, c.usage)
	fmt.Fprintln(c.stdout, "\nFlags:")
	var defaults strings.Builder
	c.fs.SetOutput(&defaults)
	c.fs.PrintDefaults()
	c.fs.SetOutput(c.stderr)
	// The flag package shows -name; the usage and the examples say --name.
	fmt.Fprint(c.stdout, longFlagRE.ReplaceAllString(defaults.String(), "  --$1"))
	fmt.Fprint(c.stdout, c.tail)
}

// longFlagRE finds the flag names of multi-letter flags in PrintDefaults.
var longFlagRE = regexp.MustCompile(`(?m)^  -(\w\w)`)

// flagError rewords the flag package's error for dlock's --name style.
func flagError(err error) string {
	msg := err.Error()
	msg = strings.Replace(msg, "flag provided but not defined: -", "unknown flag --", 1)
	msg = strings.Replace(msg, " for flag -", " for flag --", 1)
	msg = strings.Replace(msg, "flag needs an argument: -", "flag needs an argument: --", 1)
	return msg
}

// cliText makes a message read well on dlock's stderr: errors of the
// library start with "dlock: ", which the command's prefix already says
// (and drivers put a URL before one);
// the "(forgotten import?)" hint is for programmers, and dlock imports
// every backend; a message stays on one line; and control characters
// and bytes that are not UTF-8, which a backend's error may carry, are
// escaped: they must not reach a terminal (escape sequences) or a log
// reader.
func cliText(msg string) string {
	msg = strings.TrimPrefix(msg, "dlock: ")
	msg = strings.ReplaceAll(msg, ": dlock: ", ": ")
	msg = strings.ReplaceAll(msg, " (forgotten import?)", "")
	return escapeControls(strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", "; ")), " "))
}

// escapeControls writes control characters (C0, DEL, C1) as Go escapes
// (\x1b, \u009b) and bytes that are not UTF-8 as \xNN.
func escapeControls(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsControl(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// usageError reports a bad command line and returns exitUsage.
func (c *command) usageError(format string, args ...any) int {
	if c.json != nil && c.json() {
		slog.New(slog.NewJSONHandler(c.stderr, nil)).LogAttrs(context.Background(), slog.LevelError,
			cliText(fmt.Sprintf(format, args...)), slog.String("cmd", "dlock "+c.name), slog.Int("status", exitUsage),
			slog.String("help", "dlock "+c.name+" --help"))
		return exitUsage
	}
	fmt.Fprintf(c.stderr, "dlock %s: %s\nRun 'dlock %s --help' for usage.\n", c.name, cliText(fmt.Sprintf(format, args...)), c.name)
	return exitUsage
}

// errorf prints an error of the command and returns code.
func (c *command) errorf(code int, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "dlock %s: %s\n", c.name, cliText(fmt.Sprintf(format, args...)))
	return code
}

// backendFlags are the flags every command that talks to a backend has.
type backendFlags struct {
	url       string
	key       string
	ttl       time.Duration
	owner     string
	logFormat string
	verbose   bool
}

func (b *backendFlags) register(fs *flag.FlagSet, withKey, withTTL bool) {
	fs.StringVar(&b.url, "url", "", "backend `URL`; default $DLOCK_URL")
	if withKey {
		fs.StringVar(&b.key, "key", "", "the lock's `name` (required)")
	}
	if withTTL {
		fs.Var((*durationFlag)(&b.ttl), "ttl", "lease time to live, a `duration` such as 15s or 1m: how long others wait if this machine dies\n(default 15s, or the URL's ttl parameter)")
		fs.StringVar(&b.owner, "owner", "", "name recorded as the holder (default host:pid)")
		fs.StringVar(&b.logFormat, "log-format", "text", "how dlock's messages on stderr look: `text` (timestamped lines) or json (one object per line:\ntime, level, msg, cmd and fields such as key, owner (this dlock), holder (another client), fence, status, error;\ndurations in milliseconds, in fields named *_ms)")
		fs.BoolVar(&b.verbose, "verbose", false, "also log every lock event: attempts, grants, renewals, releases,\nand how the job's processes are contained (cgroup or /proc scan)")
		fs.BoolVar(&b.verbose, "v", false, "short for --verbose")
	}
}

// durationFlag is a time.Duration flag whose error explains the format:
// flag.Duration answers "3" with "parse error".
type durationFlag time.Duration

func (d *durationFlag) String() string { return time.Duration(*d).String() }

func (d *durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return fmt.Errorf("want a duration with a unit, such as %ss, %sms or %sm", s, s, s)
		}
		return errors.New("want a duration such as 15s, 500ms or 1m30s")
	}
	*d = durationFlag(v)
	return nil
}

// logger returns the log of command name, as the flags say.
func (b *backendFlags) logger(name string, stderr io.Writer) *cliLog {
	return newCLILog(name, b.logFormat, b.verbose, stderr)
}

// check validates the flags and returns the backend URL.
func (b *backendFlags) check(c *command) (rawURL string, code int) {
	if b.key == "" && c.fs.Lookup("key") != nil {
		if flagSet(c.fs, "key") {
			return "", c.usageError("--key must not be empty")
		}
		return "", c.usageError("missing --key")
	}
	if b.logFormat != "text" && b.logFormat != "json" && c.fs.Lookup("log-format") != nil {
		return "", c.usageError("--log-format %q: want text or json", b.logFormat)
	}
	if flagSet(c.fs, "ttl") && b.ttl < (50*time.Millisecond) {
		return "", c.usageError("--ttl %v: must be at least %v", b.ttl, 50*time.Millisecond)
	}
	rawURL = b.url
	if rawURL == "" {
		rawURL = os.Getenv("DLOCK_URL")
	}
	if rawURL == "" {
		return "", c.usageError("no backend: pass --url or set DLOCK_URL (for example redis://127.0.0.1:6379)")
	}
	if (c.name == "run" || c.name == "elect") && inProcessURL(rawURL) && os.Getenv(envAllowMem) != "1" {
		return "", c.usageError("%s: mem:// lives inside this one dlock process, so it locks nothing against other processes or machines (two dlock %s processes would both run the command); use a shared backend such as redis://HOST:6379 (mem:// is for dlock demo)",
			redact(rawURL), c.name)
	}
	return rawURL, 0
}

// envAllowMem, set to 1, lets run and elect use mem://: for tests of the
// dlock command itself, which need no shared backend.
const envAllowMem = "DLOCK_ALLOW_MEM"

// inProcessURL reports whether rawURL names memdriver's in-process
// backend, which no other process shares.
func inProcessURL(rawURL string) bool {
	scheme, _, ok := strings.Cut(rawURL, ":")
	return ok && strings.EqualFold(scheme, "mem")
}

// lockerOptions are the Locker's settings of run and elect: --ttl and
// --owner, when given, override the URL's parameters. They are passed to
// dlock.Open, never folded into the URL, which the library alone parses
// (strictly): re-encoding it would drop what it must refuse. Renewals are
// reported on lg (failures, recoveries, and with --verbose every event),
// and each confirmed one is signalled on renewed.
func (b *backendFlags) lockerOptions(lg *cliLog, renewed chan struct{}) *dlock.Options {
	return &dlock.Options{
		LeaseOptions: dlock.LeaseOptions{TTL: b.ttl, Owner: b.owner},
		Observer:     (&renewalLogger{lg: lg, renewed: renewed}).Observe,
	}
}

// renewalLogger reports failing renewals: they come before a loss, and say
// why it will happen. It reports the 1st, 2nd, 4th, 8th… failure in a row,
// so that a backend that stays away does not flood the log.
type renewalLogger struct {
	lg *cliLog
	// renewed gets a value, if it has room, after each confirmed renewal:
	// the lease's deadline moved, and the guardian must know.
	renewed chan struct{}

	mu       sync.Mutex
	failures int
}

func (r *renewalLogger) Observe(ctx context.Context, e dlock.Event) {
	attrs := []slog.Attr{slog.String("key", e.Key), slog.String("owner", e.Owner), slog.Uint64("fence", e.Fence)}
	if r.lg.debug {
		ev := append([]slog.Attr{slog.String("event", e.Kind.String())}, attrs...)
		ev = append(ev, slog.Duration("duration", e.Duration))
		if e.Err != nil {
			ev = append(ev, errAttr(e.Err))
		}
		r.lg.log(slog.LevelDebug, "lock event", ev...)
	}
	switch e.Kind {
	case dlock.EventRefreshed, dlock.EventRefreshFailed:
	default:
		return
	}
	if e.Kind == dlock.EventRefreshed {
		select {
		case r.renewed <- struct{}{}:
		default:
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Kind == dlock.EventRefreshed {
		if r.failures > 0 {
			r.lg.log(slog.LevelInfo, fmt.Sprintf("renewal of %q works again, after %s", e.Key, count(r.failures, "failure")),
				append(attrs, slog.Int("failures", r.failures))...)
		}
		r.failures = 0
		return
	}
	r.failures++
	if n := r.failures; n&(n-1) == 0 {
		r.lg.log(slog.LevelWarn, fmt.Sprintf("renewal of %q failed (%d in a row): %v", e.Key, n, e.Err),
			append(attrs, slog.Int("failures", n), errAttr(e.Err))...)
	}
}

// open opens the backend with opts (nil: the URL's settings), printing
// why it failed.
func open(ctx context.Context, c *command, rawURL string, opts *dlock.Options) (*dlock.Locker, int) {
	l, err := dlock.Open(ctx, rawURL, opts)
	if err != nil {
		return nil, c.errorf(errorCode(err), "%v", err)
	}
	return l, 0
}

// errorCode maps a dlock error to an exit status.
func errorCode(err error) int {
	var sig *signalError
	switch {
	case errors.As(err, &sig):
		return sig.exitCode()
	case errors.Is(err, dlock.ErrInvalid):
		return exitUsage
	case errors.Is(err, dlock.ErrLeaseLost):
		return exitLeaseLost
	case busy(err):
		return exitBusy
	}
	return exitUnavailable
}

// busy reports whether err says that the key is held by someone else:
// dlock's errors say so with ErrNotAcquired alone, never for a backend
// that failed (ErrUnavailable) or misuse (ErrInvalid, ErrLimitMismatch).
func busy(err error) bool { return errors.Is(err, dlock.ErrNotAcquired) }

// redact returns rawURL with its password and other secrets hidden.
func redact(rawURL string) string {
	return driver.RedactURL(rawURL)
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// describeHolder says who holds key, as far as the backend can tell, in
// words and as log fields.
func describeHolder(ctx context.Context, l *dlock.Locker, key string) (string, []slog.Attr) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	hs, err := l.Holders(ctx, key)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return "held by someone else (this backend cannot say who)", nil
	case err != nil:
		return fmt.Sprintf("held by someone else (looking up the holder failed: %v)", cliText(err.Error())), []slog.Attr{errAttr(err)}
	case len(hs) == 0:
		return "held by someone else, who has released it since", nil
	}
	return "held by " + holderString(hs[0]), holderAttrs(hs[0])
}

// holderAttrs are the log fields of another client that holds a key. Its
// name is "holder": "owner" is this dlock's own, in every other record.
func holderAttrs(h dlock.Holder) []slog.Attr {
	attrs := []slog.Attr{slog.String("holder", h.Owner), slog.Uint64("fence", h.Fence), slog.Duration("expires_in", h.TTL)}
	if !h.Since.IsZero() {
		attrs = append(attrs, slog.Time("held_since", h.Since))
	}
	return attrs
}

func holderString(h dlock.Holder) string {
	since := ""
	if !h.Since.IsZero() {
		since = fmt.Sprintf("held since %s for %v, ", h.Since.Format(clockFormat), roundDur(time.Since(h.Since)))
	}
	return fmt.Sprintf("%s (fence %d, %sexpires in %v unless renewed)", safeText(h.Owner), h.Fence, since, roundDur(h.TTL))
}

// clockFormat shows a time of day with its zone, like the log's
// timestamps ("Z" for UTC).
const clockFormat = "15:04:05.000Z07:00"

// safeText returns s as it is if it is plain (printable, no spaces,
// quotes or backslashes), and quoted with Go escapes otherwise: owner
// names come from other clients, and must not be able to forge log lines
// or send terminal escapes.
func safeText(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' || r == '\\' {
			return strconv.Quote(s)
		}
	}
	return s
}

// roundDur rounds d for people: milliseconds.
func roundDur(d time.Duration) time.Duration {
	return d.Round(time.Millisecond)
}

// leaseEnv is the environment a command gets under a lease.
func leaseEnv(le *dlock.Lease) []string {
	return []string{
		"DLOCK_KEY=" + le.Key(),
		"DLOCK_FENCE=" + strconv.FormatUint(le.Fence(), 10),
		"DLOCK_TOKEN=" + le.Token(),
	}
}

// commandString shows argv for messages.
func commandString(argv []string) string {
	s := strings.Join(argv, " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return strconv.Quote(s)
}

// releaseTimeout bounds the final release: the key expires on its own if
// the backend does not answer.
const releaseTimeout = 5 * time.Second

// count is n and noun, in the plural unless n is 1: "1 failure", "2 failures".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
