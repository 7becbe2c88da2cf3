// Package metrics is a blobstore.Store decorator that counts the calls of
// the store it wraps — operations, failures by error class, bytes moved —
// and their latency, and writes them in the Prometheus text exposition
// format, the way internal/api writes its own (no client library). It
// also holds the operation names and the small writers that the other
// decorators (retry, limit) use for their metrics.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/clock"
)

// Op is a blob store operation, as metrics label it.
type Op int

// Operations. OpGetRange covers GetRange and ReadRange.
const (
	OpPut Op = iota
	OpGet
	OpGetRange
	OpStat
	OpList
	OpDelete
	NumOps
)

var opNames = [NumOps]string{"put", "get", "get_range", "stat", "list", "delete"}

func (o Op) String() string { return opNames[o] }

// Class is the class of a failed call.
type Class int

// Error classes.
const (
	ClassNotFound Class = iota
	ClassThrottled
	ClassTransient
	ClassCanceled
	ClassOther
	numClasses
)

var classNames = [numClasses]string{"not_found", "throttled", "transient", "canceled", "other"}

func (c Class) String() string { return classNames[c] }

// Classify returns the class of a non-nil error.
func Classify(err error) Class {
	switch {
	case errors.Is(err, blobstore.ErrNotFound):
		return ClassNotFound
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return ClassCanceled
	case errors.Is(err, blobstore.ErrThrottled):
		return ClassThrottled
	case errors.Is(err, blobstore.ErrTransient):
		return ClassTransient
	}
	return ClassOther
}

// buckets are the upper bounds, in seconds, of the latency histogram.
var buckets = [...]float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// histogram is a Prometheus histogram; counts are per bucket, not
// cumulative.
type histogram struct {
	counts [len(buckets) + 1]uint64 // the last is +Inf
	sum    float64
	n      uint64
}

func (h *histogram) observe(s float64) {
	i := 0
	for i < len(buckets) && s > buckets[i] {
		i++
	}
	h.counts[i]++
	h.sum += s
	h.n++
}

// Store measures the calls of the store it wraps.
type Store struct {
	inner blobstore.Store
	clk   clock.Clock

	mu      sync.Mutex
	calls   [NumOps]uint64
	errs    [NumOps][numClasses]uint64
	latency [NumOps]histogram

	read, written atomic.Uint64
}

var (
	_ blobstore.Store       = (*Store)(nil)
	_ blobstore.RangeReader = (*Store)(nil)
)

// New wraps inner; clk (default clock.Real) times the calls.
func New(inner blobstore.Store, clk clock.Clock) *Store {
	if clk == nil {
		clk = clock.Real{}
	}
	return &Store{inner: inner, clk: clk}
}

// Calls returns how many calls of op have been made.
func (s *Store) Calls(op Op) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Errors returns how many calls of op failed with an error of class c.
func (s *Store) Errors(op Op, c Class) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errs[op][c]
}

// Bytes returns the bytes read (Get, GetRange, ReadRange) and written
// (Put) by successful calls.
func (s *Store) Bytes() (read, written uint64) { return s.read.Load(), s.written.Load() }

func (s *Store) done(op Op, start time.Time, err error) {
	d := s.clk.Now().Sub(start).Seconds()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	s.latency[op].observe(d)
	if err != nil {
		s.errs[op][Classify(err)]++
	}
}

// Put stores data.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	start := s.clk.Now()
	err := s.inner.Put(ctx, name, data)
	if err == nil {
		s.written.Add(uint64(len(data)))
	}
	s.done(OpPut, start, err)
	return err
}

// Get reads the object.
func (s *Store) Get(ctx context.Context, name string) ([]byte, error) {
	start := s.clk.Now()
	b, err := s.inner.Get(ctx, name)
	s.read.Add(uint64(len(b)))
	s.done(OpGet, start, err)
	return b, err
}

// GetRange reads n bytes at off.
func (s *Store) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	start := s.clk.Now()
	b, err := s.inner.GetRange(ctx, name, off, n)
	s.read.Add(uint64(len(b)))
	s.done(OpGetRange, start, err)
	return b, err
}

// ReadRange reads n bytes at off through the inner store's RangeReader, if
// it has one.
func (s *Store) ReadRange(ctx context.Context, name string, off, n int64, buf []byte) ([]byte, error) {
	start := s.clk.Now()
	b, err := blobstore.ReadRange(ctx, s.inner, name, off, n, buf)
	s.read.Add(uint64(len(b)))
	s.done(OpGetRange, start, err)
	return b, err
}

// Stat returns the object's size.
func (s *Store) Stat(ctx context.Context, name string) (blobstore.Info, error) {
	start := s.clk.Now()
	in, err := s.inner.Stat(ctx, name)
	s.done(OpStat, start, err)
	return in, err
}

// List lists the objects under prefix; its latency includes the time
// spent in fn.
func (s *Store) List(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	start := s.clk.Now()
	err := s.inner.List(ctx, prefix, fn)
	s.done(OpList, start, err)
	return err
}

// Delete removes the object.
func (s *Store) Delete(ctx context.Context, name string) error {
	start := s.clk.Now()
	err := s.inner.Delete(ctx, name)
	s.done(OpDelete, start, err)
	return err
}

// WriteMetrics writes the counters and histograms in Prometheus text
// format.
func (s *Store) WriteMetrics(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	WritePerOp(w, "coffer_blob_operations_total", "counter", "Blob store calls by operation.",
		func(op Op) uint64 { return s.calls[op] })
	Header(w, "coffer_blob_errors_total", "counter", "Failed blob store calls by operation and error class.")
	for op := range NumOps {
		for c := range numClasses {
			if n := s.errs[op][c]; n > 0 {
				fmt.Fprintf(w, "coffer_blob_errors_total{op=%q,class=%q} %d\n", op, c, n)
			}
		}
	}
	Header(w, "coffer_blob_read_bytes_total", "counter", "Bytes read from the blob store.")
	fmt.Fprintf(w, "coffer_blob_read_bytes_total %d\n", s.read.Load())
	Header(w, "coffer_blob_written_bytes_total", "counter", "Bytes written to the blob store.")
	fmt.Fprintf(w, "coffer_blob_written_bytes_total %d\n", s.written.Load())
	const lat = "coffer_blob_operation_duration_seconds"
	Header(w, lat, "histogram", "Blob store call latency by operation, retries included.")
	for op := range NumOps {
		h := &s.latency[op]
		if h.n == 0 {
			continue
		}
		var cum uint64
		for i, b := range buckets {
			cum += h.counts[i]
			fmt.Fprintf(w, "%s_bucket{op=%q,le=\"%g\"} %d\n", lat, op, b, cum)
		}
		fmt.Fprintf(w, "%s_bucket{op=%q,le=\"+Inf\"} %d\n", lat, op, h.n)
		fmt.Fprintf(w, "%s_sum{op=%q} %g\n", lat, op, h.sum)
		fmt.Fprintf(w, "%s_count{op=%q} %d\n", lat, op, h.n)
	}
}

// Header writes the HELP and TYPE lines of a metric family.
func Header(w io.Writer, name, typ, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// WritePerOp writes a metric family with one sample per operation.
func WritePerOp(w io.Writer, name, typ, help string, value func(Op) uint64) {
	Header(w, name, typ, help)
	for op := range NumOps {
		fmt.Fprintf(w, "%s{op=%q} %d\n", name, op, value(op))
	}
}
