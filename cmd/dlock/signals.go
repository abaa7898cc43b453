//go:build unix

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// forwardedSignals are the signals dlock passes on to the command's process
// group while it runs. Without a command, the first of them ends dlock.
// SIGQUIT, SIGUSR1 and SIGUSR2 are included because their default action
// would kill dlock and, through the parent-death signal, the command.
var forwardedSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP,
	syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2,
}

// A signalRouter receives dlock's signals: it forwards them to the running
// child, if there is one, and otherwise cancels the command's context with
// a *signalError. Starting a child and receiving a signal are serialized,
// so a signal is never lost between the two.
type signalRouter struct {
	ch     chan os.Signal
	quit   chan struct{}
	done   chan struct{}
	cancel context.CancelCauseFunc
	logf   func(string, ...any)

	mu    sync.Mutex
	child *child
	sig   *signalError // the signal that cancelled, if any
}

func newSignalRouter(cancel context.CancelCauseFunc, logf func(string, ...any)) *signalRouter {
	r := &signalRouter{
		ch:     make(chan os.Signal, 8),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		cancel: cancel,
		logf:   logf,
	}
	signal.Notify(r.ch, forwardedSignals...)
	go r.loop()
	return r
}

func (r *signalRouter) loop() {
	defer close(r.done)
	for {
		select {
		case <-r.quit:
			return
		case s := <-r.ch:
			sig := s.(syscall.Signal)
			r.mu.Lock()
			switch {
			case r.child != nil:
				r.child.forward(sig)
				r.logf("forwarded %v to the command", signalName(sig))
			case r.sig == nil:
				r.sig = &signalError{sig}
				r.cancel(r.sig)
			}
			r.mu.Unlock()
		}
	}
}

// stop restores the default signal handling and ends the router.
func (r *signalRouter) stop() {
	signal.Stop(r.ch)
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
	}
	return fmt.Sprintf("signal %d", int(sig))
}
