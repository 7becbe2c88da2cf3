package s3test

import (
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// Fault is what the proxy does to one request.
type Fault int

// Faults.
const (
	// Pass forwards the request and its answer unchanged.
	Pass Fault = iota
	// SlowDown answers 503 with S3's SlowDown error body, as a throttling
	// S3 does, without forwarding the request.
	SlowDown
	// Drop closes the connection in the middle of a body: of the request
	// while it is being sent if it has one (an upload), else of the
	// answer (a download), else before answering at all.
	Drop
)

func (f Fault) String() string { return [...]string{"pass", "slowdown", "drop"}[f] }

// Decider picks the fault for a request. It is called from many
// goroutines at once.
type Decider func(r *http.Request) Fault

// Proxy is a fault-injecting reverse proxy in front of an S3 server.
// SigV4 signs the Host header, so the proxy passes the client's Host on.
type Proxy struct {
	// URL is the proxy's base URL, to use as the S3 endpoint.
	URL string

	mu      sync.Mutex
	decide  Decider
	headers []Request

	faults   [3]atomic.Int64
	bytesOut atomic.Int64
}

// Request records a request the proxy received.
type Request struct {
	Method, Path string
	Header       http.Header
}

// NewProxy starts a proxy to target (a server's Endpoint) that passes
// everything until SetFaults says otherwise; it stops when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		ModifyResponse: func(resp *http.Response) error {
			drop := resp.Request.Context().Value(dropKey{}) != nil
			resp.Body = &countingBody{ReadCloser: resp.Body, n: &p.bytesOut, cut: drop, half: resp.ContentLength / 2}
			return nil
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.serve(w, r, rp)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

type dropKey struct{}

// SetFaults sets the decider (nil: pass everything).
func (p *Proxy) SetFaults(d Decider) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.decide = d
}

// Requests returns the requests received so far.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.headers...)
}

// Count returns how many requests got fault f (Pass: were forwarded
// unharmed).
func (p *Proxy) Count(f Fault) int64 { return p.faults[f].Load() }

// BytesOut returns how many bytes of answer bodies the proxy has passed
// from the server to clients.
func (p *Proxy) BytesOut() int64 { return p.bytesOut.Load() }

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy) {
	p.mu.Lock()
	p.headers = append(p.headers, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()})
	decide := p.decide
	p.mu.Unlock()
	f := Pass
	if decide != nil {
		f = decide(r)
	}
	p.faults[f].Add(1)
	switch {
	case f == SlowDown:
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		if r.Method != http.MethodHead {
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>`+
				`<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>`+
				`<RequestId>FAULTPROXY</RequestId></Error>`)
		}
		return
	case f == Drop && r.ContentLength > 0:
		io.CopyN(io.Discard, r.Body, r.ContentLength/2)
		panic(http.ErrAbortHandler) // closes the connection mid-upload
	case f == Drop && (r.Method == http.MethodGet):
		r = r.WithContext(context.WithValue(r.Context(), dropKey{}, true))
	case f == Drop:
		panic(http.ErrAbortHandler)
	}
	rp.ServeHTTP(w, r)
}

// countingBody counts the bytes of an answer and, when cut is set, fails
// after half of them; the reverse proxy then aborts the connection.
type countingBody struct {
	io.ReadCloser
	n    *atomic.Int64
	cut  bool
	half int64
	read int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.cut {
		if b.read >= b.half {
			return 0, fmt.Errorf("fault proxy: connection dropped after %d bytes", b.read)
		}
		p = p[:min(int64(len(p)), b.half-b.read)]
	}
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	b.n.Add(int64(n))
	return n, err
}

// Random returns a decider that answers SlowDown to a share slowDown of
// requests and drops a share drop of them, from a seeded generator.
func Random(seed uint64, slowDown, drop float64) Decider {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed))
	return func(*http.Request) Fault {
		mu.Lock()
		x := r.Float64()
		mu.Unlock()
		switch {
		case x < slowDown:
			return SlowDown
		case x < slowDown+drop:
			return Drop
		}
		return Pass
	}
}

// FirstN returns a decider that gives the next n requests fault f and
// passes the rest.
func FirstN(n int, f Fault) Decider {
	var left atomic.Int64
	left.Store(int64(n))
	return func(*http.Request) Fault {
		if left.Add(-1) >= 0 {
			return f
		}
		return Pass
	}
}
