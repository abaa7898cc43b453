package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// logTimeFormat is the timestamp of text log lines: RFC 3339 with
// milliseconds and the zone ("Z" for UTC), in the machine's zone.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// A cliLog prints dlock's messages on stderr. As text (the default) each
// is one line: timestamp, command, message. With --log-format json each is
// one JSON object per line with time, level (DEBUG, INFO, WARN, ERROR),
// msg, cmd ("dlock run") and fields of the event: key, owner, fence,
// command, status, error, signal…; durations are numbers of milliseconds,
// in fields whose names end in _ms. Text from other clients (owner names)
// is escaped in text and carried as a field in JSON. A cliLog is safe for
// concurrent use; write errors (a closed stderr) are ignored.
type cliLog struct {
	cmd   string       // "dlock run"
	json  *slog.Logger // nil for text
	debug bool         // --verbose

	mu sync.Mutex
	w  io.Writer
}

func newCLILog(name, format string, verbose bool, w io.Writer) *cliLog {
	l := &cliLog{cmd: "dlock " + name, debug: verbose, w: w}
	if format == "json" {
		level := slog.LevelInfo
		if verbose {
			level = slog.LevelDebug
		}
		h := slog.NewJSONHandler(lockedWriter{&l.mu, w}, &slog.HandlerOptions{Level: level, ReplaceAttr: msDurations})
		l.json = slog.New(h).With("cmd", l.cmd)
	}
	return l
}

// msDurations turns every duration into a number of milliseconds, in a
// field named with an _ms suffix: one unit for people and machines alike.
func msDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.Float64(a.Key+"_ms", float64(a.Value.Duration().Microseconds())/1000)
	}
	return a
}

// log prints one message. In text, attributes are shown only for debug
// events (--verbose): the message says the rest.
func (l *cliLog) log(level slog.Level, msg string, attrs ...slog.Attr) {
	if level < slog.LevelInfo && !l.debug {
		return
	}
	msg = cliText(msg)
	if l.json != nil {
		l.json.LogAttrs(context.Background(), level, msg, attrs...)
		return
	}
	var b strings.Builder
	b.WriteString(time.Now().Format(logTimeFormat))
	b.WriteString(" ")
	b.WriteString(l.cmd)
	b.WriteString(": ")
	b.WriteString(msg)
	if level < slog.LevelInfo {
		for _, a := range attrs {
			a = msDurations(nil, a)
			fmt.Fprintf(&b, " %s=%s", a.Key, safeText(a.Value.String()))
		}
	}
	b.WriteString("\n")
	l.mu.Lock()
	defer l.mu.Unlock()
	io.WriteString(l.w, b.String())
}

func (l *cliLog) infof(format string, args ...any) {
	l.log(slog.LevelInfo, fmt.Sprintf(format, args...))
}

// errAttr carries err on one line, without the library's "dlock: " prefix.
func errAttr(err error) slog.Attr { return slog.String("error", cliText(err.Error())) }

// lockedWriter serializes writes, so log lines from several goroutines do
// not interleave.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
