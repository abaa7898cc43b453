package redistest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

var proxySeq atomic.Int64

// Proxy is an in-process TCP proxy (toxiproxy) in front of a server, for
// fault injection: a client that connects through [Proxy.Addr] can be cut
// off or slowed down while others, connected directly, are not.
//
// A Proxy is safe for concurrent use.
type Proxy struct {
	mu          sync.Mutex
	srv         *toxiproxy.ApiServer
	upstream    string
	p           *toxiproxy.Proxy
	partitioned bool
}

// NewProxy starts a proxy on a free loopback port that forwards to
// upstream (host:port). It stops when t ends.
func NewProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	px := &Proxy{
		srv:      toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()),
		upstream: upstream,
	}
	if err := px.start("127.0.0.1:0"); err != nil {
		t.Fatalf("redistest: start proxy to %s: %v", upstream, err)
	}
	t.Cleanup(func() {
		px.mu.Lock()
		defer px.mu.Unlock()
		// Stop without removing toxics: closing the connections lets
		// every link drain through its toxics and end.
		px.p.Stop()
	})
	return px
}

// start runs a new toxiproxy proxy listening on listen. px.mu must be held
// or px not yet shared.
func (px *Proxy) start(listen string) error {
	name := fmt.Sprintf("redistest-%d", proxySeq.Add(1))
	p := toxiproxy.NewProxy(px.srv, name, listen, px.upstream)
	if err := p.Start(); err != nil {
		return err
	}
	px.p = p
	return nil
}

// Addr returns the address clients connect to.
func (px *Proxy) Addr() string {
	px.mu.Lock()
	defer px.mu.Unlock()
	return px.p.Listen
}

// Partition makes the network silent in both directions: connections stay
// open, but nothing gets through (requests and replies are dropped), and new
// connections are accepted and equally silent. Clients see timeouts, as in
// a real partition.
func (px *Proxy) Partition() {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.partitioned = true
	px.addToxic("partition_up", "timeout", "upstream", `{"timeout":0}`)
	px.addToxic("partition_down", "timeout", "downstream", `{"timeout":0}`)
}

// Disconnect closes every connection and refuses new ones, like a server
// whose host is up but whose port is closed.
func (px *Proxy) Disconnect() {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.p.Stop()
}

// Latency delays every reply by d.
func (px *Proxy) Latency(d time.Duration) {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.addToxic("latency", "latency", "downstream", fmt.Sprintf(`{"latency":%d}`, d.Milliseconds()))
}

// Heal removes every fault: latency is removed, a disconnected proxy
// listens again on the same address, and a partition ends. Connections that
// were partitioned are closed (clients reconnect), as after a real
// partition long enough for TCP to give up: removing toxiproxy's timeout
// toxic from a live connection would strand one of its goroutines.
func (px *Proxy) Heal() {
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.partitioned {
		px.p.Stop()
		if err := px.start(px.p.Listen); err != nil {
			panic("redistest: restart proxy: " + err.Error())
		}
		px.partitioned = false
		return
	}
	px.p.Toxics.ResetToxics(context.Background())
	if !px.p.Enabled {
		if err := px.p.Start(); err != nil {
			panic("redistest: restart proxy: " + err.Error())
		}
	}
}

// addToxic adds a toxic unless it is there already. px.mu must be held.
func (px *Proxy) addToxic(name, typ, stream, attrs string) {
	if px.p.Toxics.GetToxic(name) != nil {
		return
	}
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attrs)
	if _, err := px.p.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
		panic("redistest: add toxic " + name + ": " + err.Error())
	}
}
