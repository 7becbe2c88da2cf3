package api

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// metrics counts requests and their latencies by route and status, and
// writes them in the Prometheus text exposition format.
type metrics struct {
	mu       sync.Mutex
	requests map[[2]string]uint64 // route, status → count
	latency  map[string]*histogram
	gauges   []func(w io.Writer)
}

var latencyBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type histogram struct {
	counts []uint64
	sum    float64
	n      uint64
}

func newMetrics() *metrics {
	return &metrics{requests: map[[2]string]uint64{}, latency: map[string]*histogram{}}
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[[2]string{route, fmt.Sprint(status)}]++
	h := m.latency[route]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets))}
		m.latency[route] = h
	}
	s := d.Seconds()
	for i, b := range latencyBuckets {
		if s <= b {
			h.counts[i]++
		}
	}
	h.sum += s
	h.n++
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func (m *metrics) write(w io.Writer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintln(w, "# HELP coffer_http_requests_total HTTP requests by route and status.")
	fmt.Fprintln(w, "# TYPE coffer_http_requests_total counter")
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	for _, k := range keys {
		fmt.Fprintf(w, "coffer_http_requests_total{route=\"%s\",status=\"%s\"} %d\n", escapeLabel(k[0]), k[1], m.requests[k])
	}
	fmt.Fprintln(w, "# HELP coffer_http_request_duration_seconds HTTP request latency by route.")
	fmt.Fprintln(w, "# TYPE coffer_http_request_duration_seconds histogram")
	routes := make([]string, 0, len(m.latency))
	for r := range m.latency {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	for _, r := range routes {
		h := m.latency[r]
		for i, b := range latencyBuckets {
			fmt.Fprintf(w, "coffer_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %d\n", escapeLabel(r), b, h.counts[i])
		}
		fmt.Fprintf(w, "coffer_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %d\n", escapeLabel(r), h.n)
		fmt.Fprintf(w, "coffer_http_request_duration_seconds_sum{route=\"%s\"} %g\n", escapeLabel(r), h.sum)
		fmt.Fprintf(w, "coffer_http_request_duration_seconds_count{route=\"%s\"} %d\n", escapeLabel(r), h.n)
	}
	for _, g := range m.gauges {
		g(w)
	}
}

// AddMetrics registers a writer of extra metrics (other subsystems' gauges).
func (s *Server) AddMetrics(f func(w io.Writer)) {
	s.metrics.mu.Lock()
	defer s.metrics.mu.Unlock()
	s.metrics.gauges = append(s.metrics.gauges, f)
}

// WriteMetrics writes all metrics in Prometheus text format.
func (s *Server) WriteMetrics(w io.Writer) { s.metrics.write(w) }
