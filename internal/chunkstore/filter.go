package chunkstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"coffer/internal/chunk"
)

// The known-ID filter lets Put skip the index lookup for a chunk that is
// certainly not indexed (docs/design.md, "Known-ID filter"). It is a Bloom
// filter over every ID ever added to the index through this Store or found
// in the index when the filter was built, so it is a superset of the index:
// a negative answer means "not indexed", a positive one means "ask the
// index". Deletions (GC) and Clear (RebuildIndex) leave their bits set,
// which only costs lookups.
//
// Memory: filterBitsPerID bits (1.25 bytes) per chunk; the filter is sized
// for the index at build time (at least filterMinIDs) and, when more IDs
// are added than it was sized for, a new filter twice as large is chained
// (a scalable Bloom filter), so the bound stays ~1.25 bytes per chunk
// (≤ 2.5 bytes transiently) and the false-positive rate stays near 1%.

const (
	filterBitsPerID = 10
	filterHashes    = 7
	filterMinIDs    = 1 << 16
)

// bloom is one fixed-size Bloom filter, safe for concurrent use.
type bloom struct {
	bits  []atomic.Uint64
	mask  uint64 // len(bits)*64 - 1; the size is a power of two
	cap   int64  // IDs it was sized for
	count atomic.Int64
}

func newBloom(ids int64) *bloom {
	ids = max(ids, filterMinIDs)
	nbits := uint64(64)
	for nbits < uint64(ids)*filterBitsPerID {
		nbits <<= 1
	}
	return &bloom{bits: make([]atomic.Uint64, nbits/64), mask: nbits - 1, cap: ids}
}

// probes derives the bit positions from the ID itself: it is already a
// cryptographic hash (double hashing, Kirsch–Mitzenmacher).
func probes(id chunk.ID) (h1, h2 uint64) {
	return binary.LittleEndian.Uint64(id[0:8]), binary.LittleEndian.Uint64(id[8:16]) | 1
}

func (b *bloom) add(id chunk.ID) {
	h1, h2 := probes(id)
	for i := range uint64(filterHashes) {
		bit := (h1 + i*h2) & b.mask
		w := &b.bits[bit/64]
		if m := uint64(1) << (bit % 64); w.Load()&m == 0 {
			w.Or(m)
		}
	}
	b.count.Add(1)
}

func (b *bloom) has(id chunk.ID) bool {
	h1, h2 := probes(id)
	for i := range uint64(filterHashes) {
		bit := (h1 + i*h2) & b.mask
		if b.bits[bit/64].Load()&(uint64(1)<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}

// idFilter is the Store's known-ID filter: a chain of Bloom filters and
// whether it covers the index yet.
type idFilter struct {
	mu     sync.RWMutex
	chain  []*bloom
	ready  bool // built from the index: negative answers can be trusted
	failed error
}

// add records ids; it must be called before they are added to the index.
func (f *idFilter) add(ids ...chunk.ID) {
	f.mu.RLock()
	last := f.chain[len(f.chain)-1]
	f.mu.RUnlock()
	if last.count.Load()+int64(len(ids)) > last.cap {
		f.mu.Lock()
		if l := f.chain[len(f.chain)-1]; l.count.Load()+int64(len(ids)) > l.cap {
			f.chain = append(f.chain, newBloom(2*l.cap+int64(len(ids))))
		}
		last = f.chain[len(f.chain)-1]
		f.mu.Unlock()
	}
	for _, id := range ids {
		last.add(id)
	}
}

// mayHave reports false only for an ID that is certainly not in the index;
// until the filter is built it reports true.
func (f *idFilter) mayHave(id chunk.ID) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if !f.ready {
		return true
	}
	for _, b := range f.chain {
		if b.has(id) {
			return true
		}
	}
	return false
}

// IDLister is implemented by indexes that can list every indexed ID
// cheaply; the known-ID filter is built with it (otherwise with Packs and
// PackEntries).
type IDLister interface {
	// ForEachID calls fn for every indexed ID (live or condemned).
	ForEachID(ctx context.Context, fn func(chunk.ID)) error
}

// IDRows is the row set of a query selecting one column of chunk IDs, as
// database/sql's *sql.Rows and pgx's Rows both are.
type IDRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// ScanIDs calls fn for the ID in each row of rows, for the ForEachID of a
// SQL index: a row whose ID is not chunk.Size bytes is an error. The caller
// closes rows.
func ScanIDs(rows IDRows, fn func(chunk.ID)) error {
	var id []byte
	for rows.Next() {
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("list chunk IDs: %w", err)
		}
		if len(id) != chunk.Size {
			return fmt.Errorf("list chunk IDs: row with a %d-byte ID", len(id))
		}
		fn(chunk.ID(id))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list chunk IDs: %w", err)
	}
	return nil
}

// indexAdd adds entries to the index, recording their IDs in the filter
// first so that the filter stays a superset of the index.
func (s *Store) indexAdd(ctx context.Context, entries []Entry) error {
	if s.filter != nil {
		ids := make([]chunk.ID, len(entries))
		for i, e := range entries {
			ids[i] = e.ID
		}
		s.filter.add(ids...)
	}
	return s.index.Add(ctx, entries)
}

// mayBeIndexed reports whether id may be in the index. The first call
// starts building the filter in the background; until it is built (or if
// building fails, until a later call builds it) every answer is "maybe",
// so Put asks the index as it would without a filter: a large index is
// never scanned in a Put's path.
func (s *Store) mayBeIndexed(ctx context.Context, id chunk.ID) bool {
	if s.filter == nil {
		return true
	}
	if !s.filter.isReady() {
		if s.filterBuild.TryLock() {
			go func() {
				defer s.filterBuild.Unlock()
				s.buildFilterLocked(context.WithoutCancel(ctx))
			}()
		}
		return true
	}
	return s.filter.mayHave(id)
}

// BuildFilter builds the known-ID filter from the index now, waiting for a
// build already running, and returns why it failed. Put and Has start the
// build in the background on their own; this is for callers that want the
// filter ready (tests, or a server at start-up).
func (s *Store) BuildFilter(ctx context.Context) error {
	if s.filter == nil {
		return nil
	}
	s.filterBuild.Lock()
	defer s.filterBuild.Unlock()
	s.buildFilterLocked(ctx)
	return s.FilterStats().Err
}

func (f *idFilter) isReady() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.ready
}

// reserve chains a filter sized for n more IDs unless the last one has room.
func (f *idFilter) reserve(n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l := f.chain[len(f.chain)-1]; l.count.Load()+n > l.cap {
		f.chain = append(f.chain, newBloom(n+n/4))
	}
}

// buildFilterLocked fills the (already installed, already recording) filter
// from the index and marks it ready. IDs added concurrently are recorded by
// indexAdd before they reach the index, and everything committed before the
// scan is seen by it. s.filterBuild is held: one build at a time.
func (s *Store) buildFilterLocked(ctx context.Context) {
	if s.filter.isReady() {
		return
	}
	err := func() error {
		if st, err := s.index.Stats(ctx); err == nil {
			s.filter.reserve(st.Chunks)
		}
		// ForEachID may report errors.ErrUnsupported (a wrapper whose
		// index cannot list): then the packs are listed instead.
		if l, ok := s.index.(IDLister); ok {
			var ids []chunk.ID
			err := l.ForEachID(ctx, func(id chunk.ID) {
				if ids = append(ids, id); len(ids) == 4096 {
					s.filter.add(ids...)
					ids = ids[:0]
				}
			})
			s.filter.add(ids...)
			if !errors.Is(err, errors.ErrUnsupported) {
				return err
			}
		}
		packs, err := s.index.Packs(ctx)
		if err != nil {
			return err
		}
		for _, p := range packs {
			es, err := s.index.PackEntries(ctx, p)
			if err != nil {
				return err
			}
			ids := make([]chunk.ID, len(es))
			for i, e := range es {
				ids[i] = e.ID
			}
			s.filter.add(ids...)
		}
		return nil
	}()
	s.filter.mu.Lock()
	defer s.filter.mu.Unlock()
	if err != nil {
		// Stay not ready (every answer positive): Put asks the index.
		s.filter.failed = fmt.Errorf("build known-ID filter: %w", err)
		return
	}
	s.filter.ready, s.filter.failed = true, nil
}

// FilterStats describes the known-ID filter, for tests and reporting.
type FilterStats struct {
	Enabled bool
	Ready   bool  // built from the index
	IDs     int64 // IDs recorded (with repeats)
	Bytes   int64 // memory of the bit arrays
	Err     error // why the last build failed
}

// FilterStats reports on the known-ID filter.
func (s *Store) FilterStats() FilterStats {
	if s.filter == nil {
		return FilterStats{}
	}
	f := s.filter
	f.mu.RLock()
	defer f.mu.RUnlock()
	st := FilterStats{Enabled: true, Ready: f.ready, Err: f.failed}
	for _, b := range f.chain {
		st.IDs += b.count.Load()
		st.Bytes += int64(len(b.bits)) * 8
	}
	return st
}
