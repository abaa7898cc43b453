//go:build unix

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"sync"
	"syscall"
)

// forwardedSignals are the signals dlock passes on to the command's process
// group while it runs. Without a command, the first of them ends dlock.
// SIGQUIT, SIGUSR1 and SIGUSR2 are included because their default action
// would kill dlock and, through the guardian, the command.
var forwardedSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP,
	syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2,
}

// stopSignals are the forwarded signals that also ask dlock elect to end.
var stopSignals = []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// jobControlSignals would stop dlock, and with it the renewals, while the
// command, in a process group of its own, ran on: dlock catches them and
// keeps running (and renewing). SIGCONT is forwarded to the command's
// group, in case someone stopped it.
var jobControlSignals = []os.Signal{syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU}

// otherSignals are caught so that their default action cannot end dlock
// halfway: SIGPIPE (a closed stderr makes writes fail with EPIPE instead,
// and dlock goes on to clear the command's tree and release the lock),
// and SIGCONT (forwarded).
var otherSignals = []os.Signal{syscall.SIGPIPE, syscall.SIGCONT}

// A signalRouter receives dlock's signals: it forwards them to the running
// child, if there is one, and otherwise cancels the command's context with
// a *signalError. Starting a child and receiving a signal are serialized,
// so a signal is never lost between the two.
type signalRouter struct {
	// chs has a channel of its own for each signal caught: os/signal
	// drops a signal whose channel is full, and while dlock is stuck
	// passing one signal on, a storm of others must not crowd out a
	// SIGTERM. A signal that comes again before it was handled is
	// merged, as the kernel merges it.
	chs    []chan os.Signal
	quit   chan struct{}
	done   chan struct{}
	cancel context.CancelCauseFunc
	logf   func(string, ...any)

	mu      sync.Mutex
	child   *child
	sig     *signalError // the signal that cancelled, if any
	stopSig *signalError // the first stop signal forwarded to a child, if any
	jobCtrl bool         // a job-control signal was reported
}

func newSignalRouter(cancel context.CancelCauseFunc, logf func(string, ...any)) *signalRouter {
	r := &signalRouter{
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		cancel: cancel,
		logf:   logf,
	}
	// A signal ignored when dlock started (nohup, a background job of a
	// non-interactive shell) stays ignored, by dlock and by the command:
	// catching it would reset it to its default action in the command.
	for _, set := range [][]os.Signal{forwardedSignals, jobControlSignals, otherSignals} {
		for _, sig := range set {
			if !signal.Ignored(sig) {
				ch := make(chan os.Signal, 1)
				signal.Notify(ch, sig)
				r.chs = append(r.chs, ch)
			}
		}
	}
	go r.loop()
	return r
}

func (r *signalRouter) loop() {
	defer close(r.done)
	cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(r.quit)}}
	for _, ch := range r.chs {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
	}
	for {
		i, v, _ := reflect.Select(cases)
		if i == 0 {
			return
		}
		r.handle(v.Interface().(syscall.Signal))
	}
}

func (r *signalRouter) handle(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch sig {
	case syscall.SIGPIPE:
		return
	case syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
		if !r.jobCtrl {
			r.jobCtrl = true
			r.logf("ignoring %v: dlock keeps running and renewing the lease while the command runs; end it with SIGINT or SIGTERM", signalName(sig))
		}
		return
	case syscall.SIGCONT:
		if r.child != nil {
			r.child.forward(sig)
		}
		return
	}
	switch {
	case r.child != nil:
		r.child.forward(sig)
		if r.stopSig == nil && slices.Contains(stopSignals, sig) {
			r.stopSig = &signalError{sig}
		}
		r.logf("forwarded %v to the command", signalName(sig))
	case r.sig == nil:
		r.sig = &signalError{sig}
		r.cancel(r.sig)
	}
}

// stopRequested returns the first stop signal forwarded to a child, or nil.
func (r *signalRouter) stopRequested() *signalError {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopSig
}

// stop restores the default signal handling and ends the router.
func (r *signalRouter) stop() {
	for _, ch := range r.chs {
		signal.Stop(ch)
	}
	close(r.quit)
	<-r.done
}

// start runs start, unless a signal has interrupted dlock already, and
// forwards signals to the child it returns until detach.
func (r *signalRouter) start(start func() (*child, error)) (*child, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sig != nil {
		return nil, r.sig
	}
	c, err := start()
	r.child = c
	return c, err
}

// detach stops forwarding signals to the child.
func (r *signalRouter) detach() {
	r.mu.Lock()
	r.child = nil
	r.mu.Unlock()
}

// interrupted returns the signal that cancelled dlock, or nil.
func (r *signalRouter) interrupted() *signalError {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sig
}

// signalName returns the conventional name of sig, such as "SIGTERM".
func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	case syscall.SIGUSR1:
		return "SIGUSR1"
	case syscall.SIGUSR2:
		return "SIGUSR2"
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTSTP:
		return "SIGTSTP"
	case syscall.SIGTTIN:
		return "SIGTTIN"
	case syscall.SIGTTOU:
		return "SIGTTOU"
	case syscall.SIGCONT:
		return "SIGCONT"
	case syscall.SIGPIPE:
		return "SIGPIPE"
	}
	return fmt.Sprintf("signal %d", int(sig))
}
