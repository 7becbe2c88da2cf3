// Package retry is a blobstore.Store decorator that retries calls failing
// with an error another attempt may cure — one the backend marked
// transient or throttled (blobstore.Retryable): HTTP 5xx, 429 and 503
// SlowDown, dropped connections, timeouts. It waits between attempts with
// exponential backoff and jitter, until a time budget is spent. A missing
// object, a permanent or unmarked error, and the end of the caller's
// context are returned at once.
//
// A retried List does not repeat itself to its caller: names are listed in
// lexical order, so a retry skips the names already delivered. An error
// from the caller's function ends the listing and is never retried.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/metrics"
	"coffer/internal/clock"
)

// Defaults of Options.
const (
	DefaultBase   = 100 * time.Millisecond
	DefaultMax    = 30 * time.Second
	DefaultBudget = 15 * time.Minute
)

// Options configure a Store.
type Options struct {
	// Clock times the waits; default clock.Real.
	Clock clock.Clock
	// Base is the longest first wait; the bound doubles with every attempt
	// up to Max, and each wait is drawn between half the bound and the
	// bound. Defaults DefaultBase and DefaultMax.
	Base, Max time.Duration
	// Budget is how long after its first failure a call may still start
	// another attempt; default DefaultBudget. Long enough to outlast a storm of
	// 503 SlowDown while blobstore/limit lowers the concurrency.
	Budget time.Duration
}

// Store retries the calls of the store it wraps.
type Store struct {
	inner blobstore.Store
	clk   clock.Clock
	base  time.Duration
	max   time.Duration
	limit time.Duration

	retries [metrics.NumOps]atomic.Uint64
}

var (
	_ blobstore.Store       = (*Store)(nil)
	_ blobstore.RangeReader = (*Store)(nil)
)

// New wraps inner.
func New(inner blobstore.Store, opts Options) *Store {
	s := &Store{inner: inner, clk: opts.Clock, base: opts.Base, max: opts.Max, limit: opts.Budget}
	if s.clk == nil {
		s.clk = clock.Real{}
	}
	if s.base <= 0 {
		s.base = DefaultBase
	}
	if s.max <= 0 {
		s.max = DefaultMax
	}
	if s.limit <= 0 {
		s.limit = DefaultBudget
	}
	return s
}

// Retries returns how many times calls of op have been retried.
func (s *Store) Retries(op metrics.Op) uint64 { return s.retries[op].Load() }

// WriteMetrics writes the retry counters in Prometheus text format.
func (s *Store) WriteMetrics(w io.Writer) {
	metrics.WritePerOp(w, "coffer_blob_retries_total", "counter",
		"Blob store calls retried after a transient error, by operation.",
		func(op metrics.Op) uint64 { return s.retries[op].Load() })
}

// final marks an error that ends the retries whatever it wraps (the
// caller's own error from a List function).
type final struct{ err error }

func (f final) Error() string { return f.err.Error() }

// wait returns the wait before retry number attempt (1-based): a random
// duration between half and all of min(Max, Base·2^(attempt-1)).
func (s *Store) wait(attempt int) time.Duration {
	bound := min(s.base, s.max)
	for i := 1; i < attempt && bound < s.max; i++ {
		if bound > s.max/2 {
			bound = s.max
			break
		}
		bound *= 2
	}
	return bound/2 + rand.N(bound/2+1)
}

// do calls f until it succeeds, fails for good, or the budget or the
// context ends.
func (s *Store) do(ctx context.Context, op metrics.Op, f func() error) error {
	var start time.Time // of the first failure: successes do not read the clock
	for attempt := 1; ; attempt++ {
		err := f()
		var fin final
		if errors.As(err, &fin) {
			return fin.err
		}
		if err == nil || !blobstore.Retryable(err) || ctx.Err() != nil {
			return err
		}
		if attempt == 1 {
			start = s.clk.Now()
		}
		d := s.wait(attempt)
		if elapsed := s.clk.Now().Sub(start); elapsed+d > s.limit {
			return fmt.Errorf("%w (gave up after %d attempts in %v)", err, attempt, elapsed.Round(time.Millisecond))
		}
		s.retries[op].Add(1)
		t := s.clk.NewTimer(d)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (while waiting to retry after %d attempts; the last failed: %w)", ctx.Err(), attempt, err)
		}
	}
}

// Put stores data, retrying transient failures (a Put replaces, so a
// repeated one is harmless).
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	return s.do(ctx, metrics.OpPut, func() error { return s.inner.Put(ctx, name, data) })
}

// Get reads the object.
func (s *Store) Get(ctx context.Context, name string) (b []byte, err error) {
	err = s.do(ctx, metrics.OpGet, func() error {
		b, err = s.inner.Get(ctx, name)
		return err
	})
	return b, err
}

// GetRange reads n bytes at off.
func (s *Store) GetRange(ctx context.Context, name string, off, n int64) (b []byte, err error) {
	err = s.do(ctx, metrics.OpGetRange, func() error {
		b, err = s.inner.GetRange(ctx, name, off, n)
		return err
	})
	return b, err
}

// ReadRange reads n bytes at off through the inner store's RangeReader, if
// it has one.
func (s *Store) ReadRange(ctx context.Context, name string, off, n int64, buf []byte) (b []byte, err error) {
	err = s.do(ctx, metrics.OpGetRange, func() error {
		b, err = blobstore.ReadRange(ctx, s.inner, name, off, n, buf)
		return err
	})
	return b, err
}

// Stat returns the object's size.
func (s *Store) Stat(ctx context.Context, name string) (in blobstore.Info, err error) {
	err = s.do(ctx, metrics.OpStat, func() error {
		in, err = s.inner.Stat(ctx, name)
		return err
	})
	return in, err
}

// List lists the objects under prefix; a retry resumes after the last
// name delivered.
func (s *Store) List(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	var last string
	delivered := false
	return s.do(ctx, metrics.OpList, func() error {
		return s.inner.List(ctx, prefix, func(in blobstore.Info) error {
			if delivered && in.Name <= last {
				return nil
			}
			if err := fn(in); err != nil {
				return final{err}
			}
			last, delivered = in.Name, true
			return nil
		})
	})
}

// Delete removes the object. If an attempt fails after the object is
// gone (the answer was lost), the retry reports ErrNotFound.
func (s *Store) Delete(ctx context.Context, name string) error {
	return s.do(ctx, metrics.OpDelete, func() error { return s.inner.Delete(ctx, name) })
}
