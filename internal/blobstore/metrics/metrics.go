// Package metrics is a blobstore.Store decorator that counts the calls of
// the store it wraps — operations, failures by error class, bytes moved —
// and their latency, and writes them in the Prometheus text exposition
// format through package prom, as every subsystem does. It
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
	"coffer/internal/prom"
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

// Store measures the calls of the store it wraps.
type Store struct {
	inner blobstore.Store
	clk   clock.Clock

	mu      sync.Mutex
	calls   [NumOps]uint64
	errs    [NumOps][numClasses]uint64
	latency [NumOps]*prom.Hist

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
	s := &Store{inner: inner, clk: clk}
	for op := range NumOps {
		s.latency[op] = prom.NewHist(prom.LatencyBuckets)
	}
	return s
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
	s.latency[op].Observe(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
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
		if h := s.latency[op]; h.Count() > 0 {
			h.Write(w, lat, "op", op.String())
		}
	}
}

// Header writes the HELP and TYPE lines of a metric family.
func Header(w io.Writer, name, typ, help string) { prom.Header(w, name, typ, help) }

// WritePerOp writes a metric family with one sample per operation.
func WritePerOp(w io.Writer, name, typ, help string, value func(Op) uint64) {
	Header(w, name, typ, help)
	for op := range NumOps {
		fmt.Fprintf(w, "%s{op=%q} %d\n", name, op, value(op))
	}
}
