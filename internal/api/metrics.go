package api

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"coffer/internal/prom"
)

// metrics counts requests and their latencies by route and status, and
// writes them in the Prometheus text exposition format (package prom).
type metrics struct {
	mu       sync.Mutex
	requests map[[2]string]uint64 // route, status → count
	latency  map[string]*prom.Hist
	gauges   []func(w io.Writer)
	scoped   []ScopedMetrics
}

// ScopedMetrics writes metrics about resources (labelled with their
// names) for an authenticated scrape: allowed reports whether the scraping
// principal may read the resource at a scope, and only those are written.
// An anonymous scrape gets none of them.
type ScopedMetrics func(ctx context.Context, w io.Writer, allowed func(action, scope string) bool)

func newMetrics() *metrics {
	return &metrics{requests: map[[2]string]uint64{}, latency: map[string]*prom.Hist{}}
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	m.mu.Lock()
	m.requests[[2]string{route, fmt.Sprint(status)}]++
	h := m.latency[route]
	if h == nil {
		h = prom.NewHist(prom.LatencyBuckets)
		m.latency[route] = h
	}
	m.mu.Unlock()
	h.ObserveDuration(d)
}

func (m *metrics) write(w io.Writer) {
	m.mu.Lock()
	prom.Header(w, "coffer_http_requests_total", prom.Counter, "HTTP requests by route and status.")
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	for _, k := range keys {
		prom.Sample(w, "coffer_http_requests_total", float64(m.requests[k]), "route", k[0], "status", k[1])
	}
	prom.Header(w, "coffer_http_request_duration_seconds", prom.Histogram, "HTTP request latency by route.")
	routes := make([]string, 0, len(m.latency))
	for r := range m.latency {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	for _, r := range routes {
		m.latency[r].Write(w, "coffer_http_request_duration_seconds", "route", r)
	}
	gauges := append([]func(io.Writer){}, m.gauges...)
	m.mu.Unlock()
	for _, g := range gauges {
		g(w)
	}
}

// AddMetrics registers a writer of extra metrics (other subsystems' gauges).
func (s *Server) AddMetrics(f func(w io.Writer)) {
	s.metrics.mu.Lock()
	defer s.metrics.mu.Unlock()
	s.metrics.gauges = append(s.metrics.gauges, f)
}

// AddScopedMetrics registers a writer of per-resource metrics, written
// only for an authenticated scrape and only for the resources its
// principal may read.
func (s *Server) AddScopedMetrics(f ScopedMetrics) {
	s.metrics.mu.Lock()
	defer s.metrics.mu.Unlock()
	s.metrics.scoped = append(s.metrics.scoped, f)
}

// WriteMetrics writes all metrics in Prometheus text format.
func (s *Server) WriteMetrics(w io.Writer) { s.metrics.write(w) }

// writeScopedMetrics writes the per-resource metrics that allowed lets
// through.
func (s *Server) writeScopedMetrics(ctx context.Context, w io.Writer, allowed func(action, scope string) bool) {
	s.metrics.mu.Lock()
	scoped := append([]ScopedMetrics{}, s.metrics.scoped...)
	s.metrics.mu.Unlock()
	for _, f := range scoped {
		f(ctx, w, allowed)
	}
}
