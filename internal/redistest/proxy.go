package redistest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var proxySeq atomic.Int64

// Proxy is a TCP proxy in front of a server, for fault injection: a client
// that connects through [Proxy.Addr] can be cut off or slowed down while
// others, connected directly, are not.
//
// Proxies are run by one toxiproxy server process per test binary (see
// [Toxiproxy]), driven over its HTTP API, so that neither this module nor
// its users require toxiproxy. A method that cannot reach that server
// panics: fault injection that silently did nothing would pass tests it
// should fail.
//
// A Proxy is safe for concurrent use.
type Proxy struct {
	mu          sync.Mutex
	srv         *toxiproxyServer
	name        string
	listen      string // the proxy's address, fixed at creation
	partitioned bool
}

// NewProxy starts a proxy on a free loopback port that forwards to
// upstream (host:port). It stops when t ends.
func NewProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	srv := sharedToxiproxy.get(t, startToxiproxy)
	px := &Proxy{srv: srv, name: fmt.Sprintf("redistest-%d", proxySeq.Add(1))}
	var created proxyState
	err := srv.call(http.MethodPost, "/proxies", proxyState{
		Name: px.name, Listen: "127.0.0.1:0", Upstream: upstream, Enabled: true,
	}, &created)
	if err != nil {
		t.Fatalf("redistest: start proxy to %s: %v", upstream, err)
	}
	px.listen = created.Listen
	t.Cleanup(func() {
		px.mu.Lock()
		defer px.mu.Unlock()
		// Deleting a proxy closes its connections and its listener.
		if err := srv.call(http.MethodDelete, "/proxies/"+px.name, nil, nil); err != nil {
			t.Errorf("redistest: remove proxy %s: %v", px.listen, err)
		}
	})
	return px
}

// proxyState is toxiproxy's JSON form of a proxy.
type proxyState struct {
	Name     string `json:"name,omitempty"`
	Listen   string `json:"listen,omitempty"`
	Upstream string `json:"upstream,omitempty"`
	Enabled  bool   `json:"enabled"`
	Toxics   []struct {
		Name string `json:"name"`
	} `json:"toxics,omitempty"`
}

// toxic is toxiproxy's JSON form of a toxic.
type toxic struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Toxicity   float32        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

// Addr returns the address clients connect to.
func (px *Proxy) Addr() string { return px.listen }

// Partition makes the network silent in both directions: connections stay
// open, but nothing gets through (requests and replies are dropped), and new
// connections are accepted and equally silent. Clients see timeouts, as in
// a real partition.
func (px *Proxy) Partition() {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.partitioned = true
	px.addToxic(toxic{Name: "partition_up", Type: "timeout", Stream: "upstream", Attributes: map[string]any{"timeout": 0}})
	px.addToxic(toxic{Name: "partition_down", Type: "timeout", Stream: "downstream", Attributes: map[string]any{"timeout": 0}})
}

// Disconnect closes every connection and refuses new ones, like a server
// whose host is up but whose port is closed.
func (px *Proxy) Disconnect() {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.setEnabled(false)
}

// Latency delays every reply by d.
func (px *Proxy) Latency(d time.Duration) {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.addToxic(toxic{Name: "latency", Type: "latency", Stream: "downstream", Attributes: map[string]any{"latency": d.Milliseconds()}})
}

// Heal removes every fault: latency is removed, a disconnected proxy
// listens again on the same address, and a partition ends. Connections that
// were partitioned are closed (clients reconnect), as after a real
// partition long enough for TCP to give up.
func (px *Proxy) Heal() {
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.partitioned {
		px.setEnabled(false)
		px.partitioned = false
	}
	var st proxyState
	if err := px.srv.call(http.MethodGet, "/proxies/"+px.name, nil, &st); err != nil {
		panic("redistest: heal proxy " + px.listen + ": " + err.Error())
	}
	for _, tx := range st.Toxics {
		if err := px.srv.call(http.MethodDelete, "/proxies/"+px.name+"/toxics/"+tx.Name, nil, nil); err != nil {
			panic("redistest: heal proxy " + px.listen + ": " + err.Error())
		}
	}
	if !st.Enabled || st.Listen != px.listen {
		px.setEnabled(true)
	}
}

// setEnabled starts or stops the proxy's listener; stopping closes every
// connection. Re-enabling listens on the same address. px.mu must be held.
func (px *Proxy) setEnabled(on bool) {
	var st proxyState
	if err := px.srv.call(http.MethodPatch, "/proxies/"+px.name, map[string]any{"enabled": on}, &st); err != nil {
		panic(fmt.Sprintf("redistest: set proxy %s enabled=%v: %v", px.listen, on, err))
	}
	if on && st.Listen != px.listen {
		panic(fmt.Sprintf("redistest: proxy %s came back on %s", px.listen, st.Listen))
	}
}

// addToxic adds a toxic unless it is there already. px.mu must be held.
func (px *Proxy) addToxic(tx toxic) {
	tx.Toxicity = 1
	var st proxyState
	if err := px.srv.call(http.MethodGet, "/proxies/"+px.name, nil, &st); err != nil {
		panic("redistest: add toxic " + tx.Name + ": " + err.Error())
	}
	for _, have := range st.Toxics {
		if have.Name == tx.Name {
			return
		}
	}
	if err := px.srv.call(http.MethodPost, "/proxies/"+px.name+"/toxics", tx, nil); err != nil {
		panic("redistest: add toxic " + tx.Name + ": " + err.Error())
	}
}

// call sends one request to the toxiproxy API: in is sent as JSON, and the
// JSON reply is decoded into out unless out is nil.
func (s *toxiproxyServer) call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+s.addr+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("toxiproxy API: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("toxiproxy API: %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("toxiproxy API: %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("toxiproxy API: %s %s: %w", method, path, err)
		}
	}
	return nil
}
