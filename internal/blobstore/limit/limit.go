// Package limit is a blobstore.Store decorator that bounds the calls in
// flight to the store it wraps and adapts the bound to how the backend
// copes, as TCP adapts its window (additive increase, multiplicative
// decrease):
//
//   - a call that fails with blobstore.ErrThrottled (S3's 503 SlowDown,
//     HTTP 429) halves the bound, down to Min — once per round: a call
//     started before the last decrease does not decrease it again, so a
//     burst of throttled answers to calls sent together counts as one
//     signal;
//   - after as many successful calls in a row as the bound allows (calls
//     started since the last change; a missing object counts as an
//     answer), the bound grows by one, up to Max. Growing from 1 back to
//     32 therefore takes about 500 answered calls.
//
// Calls beyond the bound wait their turn in order, or until their context
// ends. List holds a slot while it lists, not while the caller's function
// runs: it collects the listing, frees the slot, then calls the function,
// so a function that calls the store cannot deadlock it.
package limit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/metrics"
)

// Defaults of Options.
const (
	DefaultMax = 32
	DefaultMin = 1
)

// Options configure a Store.
type Options struct {
	// Max is the largest bound, and the first; default DefaultMax.
	Max int
	// Min is the smallest bound; default DefaultMin.
	Min int
}

// Store is a concurrency-limiting blob store.
type Store struct {
	inner    blobstore.Store
	min, max int

	mu        sync.Mutex
	limit     int
	inFlight  int
	epoch     uint64 // counts decreases
	good      int    // answered calls of this epoch since the last change
	waiters   []chan struct{}
	throttled uint64
	decreases uint64
	increases uint64
}

var (
	_ blobstore.Store       = (*Store)(nil)
	_ blobstore.RangeReader = (*Store)(nil)
)

// New wraps inner.
func New(inner blobstore.Store, opts Options) *Store {
	s := &Store{inner: inner, min: opts.Min, max: opts.Max}
	if s.max <= 0 {
		s.max = DefaultMax
	}
	if s.min <= 0 {
		s.min = DefaultMin
	}
	s.min = min(s.min, s.max)
	s.limit = s.max
	return s
}

// Limit returns the current bound.
func (s *Store) Limit() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit
}

// InFlight returns how many calls hold a slot.
func (s *Store) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// Stats reports the throttled calls seen and the bound's decreases and
// increases so far.
func (s *Store) Stats() (throttled, decreases, increases uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttled, s.decreases, s.increases
}

// WriteMetrics writes the bound, the calls in flight and the throttling
// counters in Prometheus text format.
func (s *Store) WriteMetrics(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range []struct {
		name, typ, help string
		v               uint64
	}{
		{"coffer_blob_concurrency_limit", "gauge", "Blob store calls allowed in flight (adaptive).", uint64(s.limit)},
		{"coffer_blob_in_flight", "gauge", "Blob store calls in flight.", uint64(s.inFlight)},
		{"coffer_blob_throttled_total", "counter", "Blob store calls the backend throttled (503 SlowDown, 429).", s.throttled},
		{"coffer_blob_concurrency_decreases_total", "counter", "Times throttling halved the blob store concurrency.", s.decreases},
	} {
		metrics.Header(w, m.name, m.typ, m.help)
		fmt.Fprintf(w, "%s %d\n", m.name, m.v)
	}
}

// acquire waits for a slot and returns the epoch the call starts in.
func (s *Store) acquire(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	if s.inFlight < s.limit && len(s.waiters) == 0 {
		s.inFlight++
		e := s.epoch
		s.mu.Unlock()
		return e, nil
	}
	ch := make(chan struct{}, 1)
	s.waiters = append(s.waiters, ch)
	s.mu.Unlock()
	select {
	case <-ch:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.epoch, nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, w := range s.waiters {
			if w == ch {
				s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
				return 0, ctx.Err()
			}
		}
		// The slot was handed over as the context ended: pass it on.
		s.inFlight--
		s.wake()
		return 0, ctx.Err()
	}
}

// wake hands free slots to waiters in order; s.mu is held.
func (s *Store) wake() {
	for s.inFlight < s.limit && len(s.waiters) > 0 {
		ch := s.waiters[0]
		s.waiters = s.waiters[1:]
		s.inFlight++
		ch <- struct{}{}
	}
}

// release frees the slot of a call started in epoch that ended with err,
// and adapts the bound.
func (s *Store) release(epoch uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
	switch {
	case errors.Is(err, blobstore.ErrThrottled):
		s.throttled++
		if epoch == s.epoch {
			s.epoch++
			s.good = 0
			if s.limit > s.min {
				s.limit = max(s.min, s.limit/2)
				s.decreases++
			}
		}
	case (err == nil || errors.Is(err, blobstore.ErrNotFound)) && epoch == s.epoch:
		s.good++
		if s.good >= s.limit && s.limit < s.max {
			s.limit++
			s.good = 0
			s.increases++
		}
	}
	s.wake()
}

// call runs f in a slot.
func (s *Store) call(ctx context.Context, op metrics.Op, name string, f func() error) error {
	epoch, err := s.acquire(ctx)
	if err != nil {
		return fmt.Errorf("%s %s: waiting for a blob store slot: %w", op, name, err)
	}
	err = f()
	s.release(epoch, err)
	return err
}

// Put stores data.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	return s.call(ctx, metrics.OpPut, name, func() error { return s.inner.Put(ctx, name, data) })
}

// Get reads the object.
func (s *Store) Get(ctx context.Context, name string) (b []byte, err error) {
	err = s.call(ctx, metrics.OpGet, name, func() error {
		b, err = s.inner.Get(ctx, name)
		return err
	})
	return b, err
}

// GetRange reads n bytes at off.
func (s *Store) GetRange(ctx context.Context, name string, off, n int64) (b []byte, err error) {
	err = s.call(ctx, metrics.OpGetRange, name, func() error {
		b, err = s.inner.GetRange(ctx, name, off, n)
		return err
	})
	return b, err
}

// ReadRange reads n bytes at off through the inner store's RangeReader, if
// it has one.
func (s *Store) ReadRange(ctx context.Context, name string, off, n int64, buf []byte) (b []byte, err error) {
	err = s.call(ctx, metrics.OpGetRange, name, func() error {
		b, err = blobstore.ReadRange(ctx, s.inner, name, off, n, buf)
		return err
	})
	return b, err
}

// Stat returns the object's size.
func (s *Store) Stat(ctx context.Context, name string) (in blobstore.Info, err error) {
	err = s.call(ctx, metrics.OpStat, name, func() error {
		in, err = s.inner.Stat(ctx, name)
		return err
	})
	return in, err
}

// List collects the listing in a slot, then calls fn for each object
// outside it.
func (s *Store) List(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	var infos []blobstore.Info
	err := s.call(ctx, metrics.OpList, fmt.Sprintf("%q", prefix), func() error {
		return s.inner.List(ctx, prefix, func(in blobstore.Info) error {
			infos = append(infos, in)
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, in := range infos {
		if err := fn(in); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the object.
func (s *Store) Delete(ctx context.Context, name string) error {
	return s.call(ctx, metrics.OpDelete, name, func() error { return s.inner.Delete(ctx, name) })
}
