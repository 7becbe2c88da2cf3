package prom

import (
	"io"
	"math"
	"sync/atomic"
	"time"
)

// Bucket bounds, in seconds.
var (
	// LatencyBuckets suit request latencies: 1 ms to 60 s.
	LatencyBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	// JobBuckets suit whole jobs: 1 s to 1 day.
	JobBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400}
)

// Hist is a Prometheus histogram. Observe is lock-free and safe for
// concurrent use; the zero value is not usable (use NewHist).
type Hist struct {
	bounds []float64
	counts []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum    atomic.Uint64   // float64 bits
	n      atomic.Uint64
}

// NewHist returns a histogram with the given upper bounds (ascending).
func NewHist(bounds []float64) *Hist {
	return &Hist{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe records one value.
func (h *Hist) Observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
	h.n.Add(1)
}

// ObserveDuration records d in seconds.
func (h *Hist) ObserveDuration(d time.Duration) { h.Observe(d.Seconds()) }

// Count returns how many values were observed.
func (h *Hist) Count() uint64 { return h.n.Load() }

// Sum returns the sum of the observed values.
func (h *Hist) Sum() float64 { return math.Float64frombits(h.sum.Load()) }

// Write writes the histogram's samples (name_bucket with cumulative counts
// and le, name_sum, name_count) with the given label pairs; the family
// header is the caller's, once per family. A concurrent Observe may land
// between the lines; each line is consistent on its own, and _count is
// read first so that it never exceeds the +Inf bucket.
func (h *Hist) Write(w io.Writer, name string, labels ...string) {
	n := h.n.Load()
	sum := h.Sum()
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		io.WriteString(w, name+"_bucket")
		writeLabels(w, labels, "le", FormatValue(b))
		io.WriteString(w, " "+FormatValue(float64(min(cum, n)))+"\n")
	}
	io.WriteString(w, name+"_bucket")
	writeLabels(w, labels, "le", "+Inf")
	io.WriteString(w, " "+FormatValue(float64(n))+"\n")
	Sample(w, name+"_sum", sum, labels...)
	Sample(w, name+"_count", float64(n), labels...)
}
