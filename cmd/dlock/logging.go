package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
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
// msg, cmd ("dlock run") and fields of the event: key, owner (this
// dlock's), holder (another client holding the key), fence, command,
// status, error, signal…; durations are numbers of milliseconds, in
// fields whose names end in _ms. Text from other clients (owner names)
// is escaped in text and carried as a field in JSON. A cliLog is safe for
// concurrent use; write errors (a closed stderr) are ignored.
//
// Lines are written by a goroutine of the cliLog's own (see logQueue): a
// stderr that nobody reads must not block the goroutines that log, which
// pass renewed deadlines to the guardian, forward signals and read its
// reports. close writes what is left.
type cliLog struct {
	cmd   string       // "dlock run"
	json  *slog.Logger // nil for text
	debug bool         // --verbose

	q *logQueue
}

func newCLILog(name, format string, verbose bool, w io.Writer) *cliLog {
	l := &cliLog{cmd: "dlock " + name, debug: verbose, q: newLogQueue(w)}
	if format == "json" {
		level := slog.LevelInfo
		if verbose {
			level = slog.LevelDebug
		}
		h := slog.NewJSONHandler(l.q, &slog.HandlerOptions{Level: level, ReplaceAttr: msDurations})
		l.json = slog.New(h).With("cmd", l.cmd)
	}
	return l
}

// close writes the lines still queued, waiting up to logFlushTimeout for
// a stderr that is slow to read, and stops the writer. Later lines are
// dropped.
func (l *cliLog) close() { l.q.close(logFlushTimeout) }

// logFlushTimeout bounds how long dlock, done with its lease and its
// command, waits at exit for its last messages to be read.
const logFlushTimeout = 10 * time.Second

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
	l.q.Write([]byte(b.String()))
}

func (l *cliLog) infof(format string, args ...any) {
	l.log(slog.LevelInfo, fmt.Sprintf(format, args...))
}

// errAttr carries err on one line, without the library's "dlock: " prefix.
func errAttr(err error) slog.Attr { return slog.String("error", cliText(err.Error())) }

// logQueue is an io.Writer that queues whole lines (each Write is one
// line, as cliLog and slog's handler make them) for a goroutine that
// writes them to w in order. Write never blocks on w: if maxQueuedLines
// wait, further lines are dropped until the writer catches up.
type logQueue struct {
	w    io.Writer
	wmu  *sync.Mutex // held while writing to w
	ch   chan []byte
	done chan struct{} // closed when the writer has written everything

	mu     sync.Mutex
	closed bool
}

// maxQueuedLines bounds the memory of a stderr that nobody reads.
const maxQueuedLines = 4096

func newLogQueue(w io.Writer) *logQueue {
	q := &logQueue{w: w, wmu: new(sync.Mutex), ch: make(chan []byte, maxQueuedLines), done: make(chan struct{})}
	go func() {
		defer close(q.done)
		for line := range q.ch {
			q.wmu.Lock()
			q.w.Write(line) // a closed stderr: nothing to be done
			q.wmu.Unlock()
		}
	}()
	return q
}

func (q *logQueue) Write(p []byte) (int, error) {
	line := append([]byte(nil), p...)
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		select {
		case q.ch <- line:
		default:
		}
	}
	return len(p), nil
}

// shared returns what the command's output to w should go to: w itself
// if it is a file, which the command inherits; otherwise (tests) w with
// its writes serialized with the queue's.
func (q *logQueue) shared() io.Writer {
	if f, ok := q.w.(*os.File); ok {
		return f
	}
	return lockedWriter{q.wmu, q.w}
}

// close stops the queue and waits up to timeout for the writer.
func (q *logQueue) close(timeout time.Duration) {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
	q.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-q.done:
	case <-t.C:
	}
}

// lockedWriter serializes writes to w with the log's own.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
