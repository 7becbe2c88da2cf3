package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/chunk"
	"coffer/internal/clock"
	"coffer/internal/directio"
)

var (
	// ErrNotFound is returned (wrapped) by Get for a chunk that is not stored.
	ErrNotFound = errors.New("chunk not found")
	// ErrCorrupt is returned (wrapped) when stored data does not match its
	// chunk ID or a pack cannot be decoded. The message names pack and chunk.
	ErrCorrupt = errors.New("chunk store corrupt")
	// ErrTooLarge is returned by Put for chunks over MaxChunkSize.
	ErrTooLarge = errors.New("chunk too large")
)

// Level selects how hard Put tries to compress.
type Level int

// Compression levels.
const (
	LevelFastest Level = iota // zstd "fastest" (the default)
	LevelDefault              // zstd "default"
	LevelNone                 // store every chunk uncompressed
)

// Options configure a Store. The zero value gives the defaults.
type Options struct {
	// PackSize is the size at which an open pack is sealed and written.
	// Default DefaultPackSize.
	PackSize int
	// Clock stamps pack names and GC runs. Default clock.Real.
	Clock clock.Clock
	// Level is the compression level. Default LevelFastest.
	Level Level
	// MaxUnwritten bounds the sealed packs held in memory while they are
	// written; a Put that would seal one more waits. Default 2.
	MaxUnwritten int
	// NoFilter disables the in-memory known-ID filter, so that Put asks
	// the index about every chunk (docs/design.md, "Known-ID filter").
	NoFilter bool
}

// DefaultPackSize is the default target pack size.
const DefaultPackSize = 32 << 20

// Store is a deduplicating, compressing chunk store. Its methods are safe
// for concurrent use.
type Store struct {
	blobs        blobstore.Store
	index        Index
	clock        clock.Clock
	packSize     int
	maxUnwritten int
	level        Level
	codec        *codec

	gcMu sync.Mutex // one GC or RebuildIndex at a time

	filter      *idFilter  // nil with Options.NoFilter
	filterBuild sync.Mutex // one build of the filter at a time

	mu   sync.Mutex
	cond *sync.Cond // signalled when a sealed pack's write ends
	// def is the stream of Store.Put; streams are every stream with an
	// open pack, def included (see Stream).
	def     *Stream
	streams map[*Stream]struct{}
	sealed  []*pack
	pending map[chunk.ID]pendingLoc
	free    []*packMem // buffers of written packs, for reuse until Flush
	// unindexed are the packs written but not yet in the index, oldest
	// first, and nUnindexed their entries (see indexWritten).
	unindexed  []*pack
	nUnindexed int
	lost       error // packs found gone before they were indexed; for the next Flush

	indexMu sync.Mutex // one indexWritten at a time

	added addedCounters // what Put committed (counters.go)
}

// pack is an open or sealed pack that is not yet committed. Once written
// (done) it keeps its name and entries, not its buffer, until its entries
// are in the index: its chunks are then read from the blob.
type pack struct {
	buf     []byte   // header and records; the trailer is added when written
	mem     *packMem // buf's memory, unless grow moved buf to the heap
	owner   *Stream  // the stream whose Puts fill it
	entries []trailerEntry
	writing bool
	done    bool
	err     error // of the last failed write

	name    string    // blob name, once written
	written time.Time // when it was written
}

type pendingLoc struct {
	p *pack
	i int
}

// New returns a Store over blobs and index.
func New(blobs blobstore.Store, index Index, opts Options) (*Store, error) {
	if opts.PackSize <= 0 {
		opts.PackSize = DefaultPackSize
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.MaxUnwritten <= 0 {
		opts.MaxUnwritten = 2
	}
	cd, err := newCodec(opts.Level)
	if err != nil {
		return nil, fmt.Errorf("new chunk store: %w", err)
	}
	s := &Store{
		blobs:        blobs,
		index:        index,
		clock:        opts.Clock,
		packSize:     opts.PackSize,
		maxUnwritten: opts.MaxUnwritten,
		level:        opts.Level,
		codec:        cd,
		pending:      make(map[chunk.ID]pendingLoc),
		streams:      make(map[*Stream]struct{}),
	}
	s.def = &Stream{s: s}
	if !opts.NoFilter {
		s.filter = &idFilter{chain: []*bloom{newBloom(filterMinIDs)}}
	}
	s.cond = sync.NewCond(&s.mu)
	return s, nil
}

// isPending reports whether id is in an uncommitted pack of this Store.
func (s *Store) isPending(id chunk.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[id]
	return ok
}

// pendingFor is isPending for a Put of st, which then depends on the
// chunk's pack (dependLocked).
func (s *Store) pendingFor(st *Stream, id chunk.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.pending[id]
	if ok {
		st.dependLocked(l)
	}
	return ok
}

// Put stores data and returns its ID. Hashing and compression run in the
// calling goroutine, so callers get parallelism by calling Put from several
// goroutines. A chunk that is already stored, or pending in an open pack, is
// not stored again. The chunk is committed once a Flush that starts after Put
// returns has returned nil; it is readable with Get at once.
//
// Put packs its chunks with those of every other Put of the Store; a writer
// whose chunks are read back together (one disk's snapshot) uses a Stream.
func (s *Store) Put(ctx context.Context, data []byte) (chunk.ID, error) {
	return s.def.Put(ctx, data)
}

// A Stream is a sequence of Puts whose new chunks go into packs of their
// own, apart from other streams' chunks, so that what one writer stores
// (one disk's snapshot) is read back in long ranges rather than
// interleaved with every writer that ran at the same time (docs/design.md,
// "Streams: one disk's chunks together"). Each stream holds its own open
// pack; while several streams hold one, a pack is sealed at
// Options.PackSize divided among them (at least minStreamPack), so that
// the memory of open packs stays about one pack's. A Stream is safe for
// concurrent use; Flush commits its chunks like any Put's. Close it when
// done.
type Stream struct {
	s    *Store
	open *pack // guarded by s.mu
	// deps are the unwritten packs of other streams that hold chunks
	// this stream's Puts found pending there (so did not store again):
	// Stream.Flush commits them too. Guarded by s.mu.
	deps map[*pack]struct{}
}

// dependLocked notes that a Put of st found its chunk pending at l. s.mu
// is held.
func (st *Stream) dependLocked(l pendingLoc) {
	if l.p.owner == st || l.p.done {
		return // committed by st's own Flush, or only waits to be indexed
	}
	if st.deps == nil {
		st.deps = make(map[*pack]struct{})
	}
	st.deps[l.p] = struct{}{}
}

// streamTargetLocked is the size at which a stream's open pack is sealed:
// PackSize shared among the streams holding open packs, at least
// minStreamPack. s.mu is held.
func (s *Store) streamTargetLocked() int {
	return max(s.packSize/max(len(s.streams), 1), min(s.packSize, minStreamPack))
}

// minStreamPack is the smallest pack target of a stream among many (see
// Stream); a smaller Options.PackSize is kept as it is.
const minStreamPack = 8 << 20

// NewStream returns a new stream of s.
func (s *Store) NewStream() *Stream { return &Stream{s: s} }

// Close seals the stream's open pack and starts writing it; a later Flush
// waits for that write and commits it. The stream must not be used after.
func (st *Stream) Close() {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.open == nil {
		return
	}
	// Past MaxUnwritten the pack waits sealed, unwritten, for the next
	// Put or Flush to write it, as a pack whose write failed does.
	if len(s.sealed) < s.maxUnwritten {
		s.sealLocked(context.Background(), st)
		return
	}
	s.sealed = append(s.sealed, st.open)
	st.dropLocked()
}

// dropLocked forgets the stream's open pack, sealed by the caller. s.mu
// is held.
func (st *Stream) dropLocked() {
	st.open = nil
	delete(st.s.streams, st)
}

// Put is Store.Put into the stream's packs.
func (st *Stream) Put(ctx context.Context, data []byte) (chunk.ID, error) {
	s := st.s
	if len(data) > MaxChunkSize {
		return chunk.ID{}, fmt.Errorf("put chunk of %d bytes: %w", len(data), ErrTooLarge)
	}
	id := chunk.Hash(data)
	if s.pendingFor(st, id) {
		return id, nil
	}
	// The filter answers "certainly not indexed" for new chunks without a
	// query; anything else is looked up.
	if s.mayBeIndexed(ctx, id) {
		found, err := s.index.Lookup(ctx, []chunk.ID{id})
		if err != nil {
			return id, fmt.Errorf("put chunk %s: look up index: %w", id.Short(), err)
		}
		if e, ok := found[id]; ok && e.DeletedAt == 0 {
			return id, nil
		}
	}
	stored, comp, cbuf := s.compress(data)
	defer release(cbuf) // stored is copied into the open pack below

	s.mu.Lock()
	for {
		if l, ok := s.pending[id]; ok {
			st.dependLocked(l)
			s.mu.Unlock()
			return id, nil
		}
		if st.open == nil || len(st.open.entries) == 0 ||
			(len(st.open.buf) < s.streamTargetLocked() && st.open.fits(len(stored), s.packSize)) {
			break
		}
		// The open pack is full or the chunk does not fit its buffer: seal
		// it, unless MaxUnwritten sealed packs already wait to be written;
		// then retry one whose write failed, or wait.
		if len(s.sealed) < s.maxUnwritten {
			s.sealLocked(ctx, st)
			continue
		}
		if q := s.claimFailed(); q != nil {
			s.mu.Unlock()
			if err := s.writePack(ctx, q); err != nil {
				// The backend keeps failing: keep this chunk pending anyway
				// (past the open pack's target size), so that a Put that
				// returns an error always leaves its chunk readable and
				// committed by a later successful Flush, whichever path
				// reported the error.
				s.mu.Lock()
				if l, ok := s.pending[id]; ok {
					st.dependLocked(l)
				} else {
					s.appendLocked(st, id, data, stored, comp)
				}
				s.mu.Unlock()
				return id, fmt.Errorf("put chunk %s: retry earlier pack: %w", id.Short(), err)
			}
			s.mu.Lock()
			continue
		}
		s.cond.Wait()
	}
	p := s.appendLocked(st, id, data, stored, comp)
	if len(p.buf) >= s.streamTargetLocked() && len(s.sealed) < s.maxUnwritten {
		s.sealLocked(ctx, st)
	}
	// A pack whose background write failed is retried at once, so that
	// the failure reaches the caller (this chunk stays pending either way).
	q := s.claimFailed()
	s.mu.Unlock()
	if q != nil {
		if err := s.writePack(ctx, q); err != nil {
			return id, fmt.Errorf("put chunk %s: retry earlier pack: %w", id.Short(), err)
		}
	}
	return id, nil
}

// Encode does to data the work Put does for a chunk that is not stored
// yet, hashing it and compressing it as it would be stored, and stores
// nothing. It returns the chunk's ID and the length of its stored record.
// The benchmark measures the compute limit of a snapshot with it.
func (s *Store) Encode(data []byte) (chunk.ID, int) {
	id := chunk.Hash(data)
	stored, _, buf := s.compress(data)
	n := len(stored)
	release(buf)
	return id, n
}

// appendLocked appends a chunk to the stream's open pack (opening one if
// needed) and records it as pending. s.mu is held.
func (s *Store) appendLocked(st *Stream, id chunk.ID, data, stored []byte, comp Compression) *pack {
	if st.open == nil {
		st.open = s.newPackLocked()
		st.open.owner = st
		s.streams[st] = struct{}{}
	}
	p := st.open
	p.grow(len(stored), s.packSize) // only for chunks larger than the slack
	p.entries = append(p.entries, trailerEntry{
		ID:          id,
		Offset:      int64(len(p.buf)),
		Length:      uint32(len(stored)),
		RawLength:   uint32(len(data)),
		Compression: comp,
	})
	p.buf = append(p.buf, stored...)
	s.pending[id] = pendingLoc{p: p, i: len(p.entries) - 1}
	return p
}

// sealLocked seals the stream's open pack and starts writing it in the
// background.
// It joins s.sealed at once, so that Flush waits for it and Puts count it
// against MaxUnwritten. The write outlives a cancellation of ctx (the chunks
// are already accepted); its error stays with the pack, and the next Put or
// Flush retries it and returns the error if it fails again. s.mu is held.
func (s *Store) sealLocked(ctx context.Context, st *Stream) {
	p := st.open
	st.dropLocked()
	p.writing = true
	s.sealed = append(s.sealed, p)
	wctx := context.WithoutCancel(ctx)
	go func() {
		_ = s.writePack(wctx, p) // recorded in p.err
	}()
}

// packCap is the capacity of a pack buffer: the target size plus slack for
// the last chunk and the trailer.
func (s *Store) packCap() int { return s.packSize + packSlack(s.packSize) }

// newPackLocked returns an empty open pack whose buffer has its final
// capacity, reusing the buffer of a written pack when there is one (so
// that a pack is neither grown, copied nor zeroed). s.mu is held.
func (s *Store) newPackLocked() *pack {
	var m *packMem
	if n := len(s.free); n > 0 {
		m, s.free = s.free[n-1], s.free[:n-1]
	} else {
		m = newPackMem(s.packCap())
	}
	return &pack{buf: append(m.b[:0], packHeader()...), mem: m}
}

// packMem is the memory of a pack buffer: outside the Go heap where the
// system allows (directio.Map), so that the few packs a Store holds at a
// time neither count towards the garbage collector's growth target (which
// would let twice their size of garbage pile up in the heap) nor stay
// resident while the Store is idle (Flush gives them back). A packMem
// that becomes unreachable without free is unmapped by a cleanup.
type packMem struct {
	b       []byte
	cleanup runtime.Cleanup
	mapped  bool
}

func newPackMem(n int) *packMem {
	b, err := directio.MapHuge(n)
	if err != nil {
		return &packMem{b: make([]byte, n)}
	}
	m := &packMem{b: b, mapped: true}
	m.cleanup = runtime.AddCleanup(m, func(b []byte) { _ = directio.Unmap(b) }, b)
	return m
}

// free releases the memory; nothing may use it afterwards.
func (m *packMem) free() {
	if m.mapped {
		m.cleanup.Stop()
		_ = directio.Unmap(m.b) // fails only for memory not from Map
	}
	m.b = nil
}

// packSlack is room reserved beyond the target size of a pack for the last
// chunk and the trailer, so that neither copies the pack.
func packSlack(packSize int) int { return max(packSize/64, 64<<10) }

// fits reports whether n more bytes fit the open pack without reallocating
// it beyond its final capacity.
func (p *pack) fits(n, packSize int) bool {
	return len(p.buf)+n <= max(cap(p.buf), packSize+packSlack(packSize))
}

// grow makes room for n more bytes. Pack buffers are allocated at their
// final capacity, so this only reallocates for a chunk larger than the
// slack, which then gets a pack of its own.
// Readers copy from p.buf under s.mu, which is held, so the old buffer
// is released at once.
func (p *pack) grow(n, packSize int) {
	need := len(p.buf) + n
	if need <= cap(p.buf) {
		return
	}
	b := make([]byte, len(p.buf), max(need+packSlack(packSize), packSize+packSlack(packSize)))
	copy(b, p.buf)
	p.buf = b
	if p.mem != nil {
		p.mem.free()
		p.mem = nil
	}
}

// claimFailed returns a sealed pack that nobody is writing and that is not
// written (its write failed, or a closed Stream left it waiting), marked
// as being written by the caller. s.mu must be held.
func (s *Store) claimFailed() *pack {
	for _, q := range s.sealed {
		if !q.writing && !q.done {
			q.writing = true
			return q
		}
	}
	return nil
}

// writePack writes a sealed pack claimed by the caller (p.writing set). On
// failure the pack stays sealed in memory so that a later Flush retries it
// under a new name. Its entries reach the index later, with those of other
// packs (indexWritten).
func (s *Store) writePack(ctx context.Context, p *pack) error {
	// p.entries and the records of p.buf no longer change once sealed.
	now := s.clock.Now()
	name := newPackName(now)
	// The trailer goes into the spare capacity of p.buf when it fits:
	// concurrent Gets read only below len(p.buf), and on a retry it is
	// written again, identically placed.
	data := appendTrailer(p.buf, now.UnixNano(), p.entries)
	err := s.blobs.Put(ctx, name, data)
	s.mu.Lock()
	p.writing = false
	if err != nil {
		// Returned from a local: once s.mu is released, a retry by
		// another writer may set p.err again.
		err = fmt.Errorf("write pack %s: %w", name, err)
		p.err = err
		s.cond.Broadcast()
		s.mu.Unlock()
		return err
	}
	p.done, p.err = true, nil
	p.name, p.written = name, now
	for i, q := range s.sealed {
		if q == p {
			s.sealed = append(s.sealed[:i], s.sealed[i+1:]...)
			break
		}
	}
	s.unindexed = append(s.unindexed, p)
	s.nUnindexed += len(p.entries)
	// Nobody reads the buffer any more: chunks of a written pack are read
	// from its blob. It is kept for the next pack while streams write,
	// one for each and the sealed ones (a new buffer's pages are zeroed
	// again by the kernel as they are touched).
	if m := p.mem; m != nil {
		if len(s.free) <= s.maxUnwritten+len(s.streams) {
			s.free = append(s.free, m)
		} else {
			m.free()
		}
	}
	p.buf, p.mem = nil, nil
	s.cond.Broadcast()
	due := s.nUnindexed >= indexBatch || now.Sub(s.unindexed[0].written) >= indexDelay
	s.mu.Unlock()
	if due && s.indexMu.TryLock() {
		// An error leaves the entries for the next attempt; Flush
		// reports it if that fails too.
		_ = s.indexWrittenLocked(ctx)
		s.indexMu.Unlock()
	}
	return nil
}

// Index adds of written packs are gathered (docs/design.md, "Write path
// and durability"): one Add, its entries sorted by ID, per indexBatch
// entries or per Flush, instead of one per pack. Each Add of a pack's few
// hundred random IDs touched most pages of the index's B-tree, so a 4 GiB
// snapshot rewrote its index about 40 times over (SQLite's WAL: 1.05 of
// the snapshot's 8.8 CPU-s). indexDelay bounds how long a written pack may
// wait while packs keep being written; Flush indexes whatever waits.
const (
	indexBatch = 16 << 10
	indexDelay = time.Minute
	// staleUnindexed is the age past which a pack waiting for its index
	// entries is checked to still exist before they are added: garbage
	// collection deletes packs without entries once they are older than
	// its safety margin (hours), which only a Store left without Flush
	// that long would reach.
	staleUnindexed = time.Hour
)

// indexWritten adds the entries of every written pack to the index.
func (s *Store) indexWritten(ctx context.Context) error {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	return s.indexWrittenLocked(ctx)
}

// indexWrittenLocked is indexWritten with s.indexMu held, so that the
// packs it takes stay first in s.unindexed until it removes them. A pack
// found gone is dropped with its chunks (no longer pending: a writer
// stores them again) and reported by the next Flush (s.lost).
func (s *Store) indexWrittenLocked(ctx context.Context) error {
	s.mu.Lock()
	packs := slices.Clone(s.unindexed)
	s.mu.Unlock()
	if len(packs) == 0 {
		return nil
	}
	var (
		lost    []*pack
		lostErr error
	)
	n := 0
	for _, p := range packs {
		n += len(p.entries)
	}
	entries := make([]Entry, 0, n)
	now := s.clock.Now()
	for _, p := range packs {
		if now.Sub(p.written) >= staleUnindexed {
			if _, err := s.blobs.Stat(ctx, p.name); errors.Is(err, blobstore.ErrNotFound) {
				lost = append(lost, p)
				lostErr = errors.Join(lostErr, fmt.Errorf("pack %s, written %s ago, is gone before its chunks were indexed: %w", p.name, now.Sub(p.written).Round(time.Second), ErrCorrupt))
				continue
			} else if err != nil {
				return fmt.Errorf("index written packs: %w", err)
			}
		}
		for _, e := range p.entries {
			entries = append(entries, Entry{ID: e.ID, Pack: p.name, Offset: e.Offset, Length: e.Length, RawLength: e.RawLength, Compression: e.Compression})
		}
	}
	// Sorted, the inserts walk the index's B-tree in order. A chunk is
	// pending in one pack at most, so IDs do not repeat; should one, a
	// single Add must not name it twice (PostgreSQL refuses that).
	slices.SortFunc(entries, func(a, b Entry) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	entries = slices.CompactFunc(entries, func(a, b Entry) bool { return a.ID == b.ID })
	if len(entries) > 0 {
		if err := s.indexAdd(ctx, entries); err != nil {
			return fmt.Errorf("index %d chunks of %d packs: %w", len(entries), len(packs)-len(lost), err)
		}
	}
	s.mu.Lock()
	for _, p := range packs {
		if !slices.Contains(lost, p) {
			s.added.count(p.entries)
		}
		for _, e := range p.entries {
			if l, ok := s.pending[e.ID]; ok && l.p == p {
				delete(s.pending, e.ID)
			}
		}
		s.nUnindexed -= len(p.entries)
	}
	s.unindexed = slices.Delete(s.unindexed, 0, len(packs))
	s.lost = errors.Join(s.lost, lostErr)
	s.mu.Unlock()
	return nil
}

// unindexedPacks returns the names of the packs written but not indexed.
func (s *Store) unindexedPacks() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make(map[string]bool, len(s.unindexed))
	for _, p := range s.unindexed {
		names[p.name] = true
	}
	return names
}

// Flush seals every stream's open pack and writes every sealed pack; when
// it returns nil every chunk Put before the call is committed, through the
// Store or any of its streams.
func (s *Store) Flush(ctx context.Context) error {
	s.mu.Lock()
	for st := range s.streams {
		s.sealed = append(s.sealed, st.open) // an open pack has entries
		st.dropLocked()
	}
	return s.flushLocked(ctx, slices.Clone(s.sealed), nil)
}

// Flush commits what the stream stored: it seals the stream's open pack and
// writes it, the stream's sealed packs, and the packs of other streams
// holding chunks its Puts found pending there; when it returns nil every
// chunk Put through the stream before the call is committed. Unlike
// Store.Flush it leaves other streams' open packs open, so that disks
// backed up together each fill their own packs until their own snapshot
// ends.
func (st *Stream) Flush(ctx context.Context) error {
	return st.FlushAlso(ctx, nil)
}

// FlushAlso is Flush that also runs also (when not nil) on a goroutine of
// its own, once every pack holding a chunk Put through the stream before
// the call is written and durable, alongside the index add of those
// chunks; it returns when both have ended, with both errors. also never
// runs if a pack could not be written, and it may run while the chunks are
// not yet indexed: what it writes must not make them reachable (a commit
// point that refers to them belongs after FlushAlso returns nil). It lets
// a caller write and sync what its commit will point to (a catalogue
// entry) while the index transaction runs, instead of after it.
func (st *Stream) FlushAlso(ctx context.Context, also func(context.Context) error) error {
	s := st.s
	s.mu.Lock()
	for p := range st.deps {
		if o := p.owner; o.open == p {
			s.sealed = append(s.sealed, p)
			o.dropLocked()
		}
	}
	if st.open != nil {
		s.sealed = append(s.sealed, st.open)
		st.dropLocked()
	}
	var targets []*pack
	for _, p := range s.sealed {
		if _, dep := st.deps[p]; dep || p.owner == st {
			targets = append(targets, p)
		}
	}
	st.deps = nil
	return s.flushLocked(ctx, targets, also)
}

// flushLocked writes the sealed packs targets, waits for those being
// written, and indexes every written pack, running also (if not nil)
// alongside the index add once every target is written (Stream.FlushAlso).
// s.mu is held; flushLocked releases it.
func (s *Store) flushLocked(ctx context.Context, targets []*pack, also func(context.Context) error) error {
	for {
		var next *pack
		busy := false
		for _, p := range targets {
			if p.done {
				continue
			}
			if p.writing {
				busy = true
				continue
			}
			next = p
			break
		}
		if next == nil && !busy {
			break
		}
		if next == nil {
			s.cond.Wait()
			continue
		}
		next.writing = true
		s.mu.Unlock()
		if err := s.writePack(ctx, next); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
		s.mu.Lock()
	}
	// A pack written by another goroutine may have failed; report it.
	var err error
	for _, p := range targets {
		if !p.done {
			err = errors.Join(err, p.err)
		}
	}
	if err == nil {
		s.mu.Unlock()
		var alsoErr chan error
		if also != nil {
			alsoErr = make(chan error, 1)
			go func() { alsoErr <- also(ctx) }()
		}
		err = s.indexWritten(ctx)
		if alsoErr != nil {
			err = errors.Join(err, <-alsoErr)
		}
		s.mu.Lock()
		// Chunks of a pack lost before it was indexed were Put before
		// this Flush and are not committed: say so once.
		err, s.lost = errors.Join(err, s.lost), nil
	}
	// An idle Store holds no pack buffers: a snapshot ends with a Flush.
	if len(s.streams) == 0 && len(s.sealed) == 0 {
		for _, m := range s.free {
			m.free()
		}
		s.free = nil
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// Has reports for each of ids whether the chunk is stored (committed or
// pending). Chunks that garbage collection has condemned count as absent, so
// that a writer stores them again.
func (s *Store) Has(ctx context.Context, ids []chunk.ID) ([]bool, error) {
	out := make([]bool, len(ids))
	var ask []chunk.ID
	s.mu.Lock()
	for i, id := range ids {
		if _, ok := s.pending[id]; ok {
			out[i] = true
		} else {
			ask = append(ask, id)
		}
	}
	s.mu.Unlock()
	ask = slices.DeleteFunc(ask, func(id chunk.ID) bool { return !s.mayBeIndexed(ctx, id) })
	if len(ask) == 0 {
		return out, nil
	}
	found, err := s.index.Lookup(ctx, ask)
	if err != nil {
		return nil, fmt.Errorf("has %d chunks: %w", len(ids), err)
	}
	for i, id := range ids {
		if e, ok := found[id]; ok && e.DeletedAt == 0 {
			out[i] = true
		}
	}
	return out, nil
}

// Get returns the contents of the chunk id, checked against id.
func (s *Store) Get(ctx context.Context, id chunk.ID) ([]byte, error) {
	s.mu.Lock()
	if l, ok := s.pending[id]; ok {
		e := l.p.entries[l.i]
		if l.p.done { // written, not indexed yet
			name := l.p.name
			s.mu.Unlock()
			stored, err := s.blobs.GetRange(ctx, name, e.Offset, int64(e.Length))
			if err != nil {
				return nil, fmt.Errorf("get chunk %s: %w", id, err)
			}
			return s.decode(e, stored, name)
		}
		stored := append([]byte(nil), l.p.buf[e.Offset:e.Offset+int64(e.Length)]...)
		s.mu.Unlock()
		return s.decode(e, stored, "(unwritten pack)")
	}
	s.mu.Unlock()
	for attempt := 0; ; attempt++ {
		found, err := s.index.Lookup(ctx, []chunk.ID{id})
		if err != nil {
			return nil, fmt.Errorf("get chunk %s: look up index: %w", id.Short(), err)
		}
		e, ok := found[id]
		if !ok {
			if attempt == 0 && s.isPending(id) {
				return s.Get(ctx, id) // re-stored concurrently
			}
			return nil, fmt.Errorf("get chunk %s: %w", id, ErrNotFound)
		}
		stored, err := s.blobs.GetRange(ctx, e.Pack, e.Offset, int64(e.Length))
		if errors.Is(err, blobstore.ErrNotFound) && attempt == 0 {
			continue // moved by a concurrent GC: look it up again
		}
		if errors.Is(err, blobstore.ErrNotFound) {
			return nil, fmt.Errorf("get chunk %s: pack %s missing: %w: %w", id, e.Pack, ErrCorrupt, err)
		}
		if err != nil {
			return nil, fmt.Errorf("get chunk %s: %w", id, err)
		}
		return s.decode(e.trailer(), stored, e.Pack)
	}
}

func (e Entry) trailer() trailerEntry {
	return trailerEntry{ID: e.ID, Offset: e.Offset, Length: e.Length, RawLength: e.RawLength, Compression: e.Compression}
}

// decode decompresses stored bytes and checks them against the chunk ID.
func (s *Store) decode(e trailerEntry, stored []byte, packName string) ([]byte, error) {
	return s.decodeInto(e, stored, packName, nil)
}

// decodeInto is decode that decompresses into buf's storage (a new buffer
// when its capacity is too small); the result is valid until buf is used
// again.
func (s *Store) decodeInto(e trailerEntry, stored []byte, packName string, buf []byte) ([]byte, error) {
	var data []byte
	switch e.Compression {
	case CompressionNone:
		data = stored
	case CompressionZstd:
		var err error
		data, err = s.codec.decode(buf, stored, int(e.RawLength))
		if err != nil {
			return nil, fmt.Errorf("chunk %s in pack %s: decompress: %w: %v", e.ID, packName, ErrCorrupt, err)
		}
	default:
		return nil, fmt.Errorf("chunk %s in pack %s: compression %d: %w", e.ID, packName, e.Compression, ErrCorrupt)
	}
	if len(data) != int(e.RawLength) {
		return nil, fmt.Errorf("chunk %s in pack %s: %d bytes, index says %d: %w", e.ID, packName, len(data), e.RawLength, ErrCorrupt)
	}
	if chunk.Hash(data) != e.ID {
		return nil, fmt.Errorf("chunk %s in pack %s: contents do not match the ID: %w", e.ID, packName, ErrCorrupt)
	}
	return data, nil
}

// Stats describes the contents of a Store.
type Stats struct {
	Chunks      int64 // committed chunks in the index
	Packs       int64 // packs referenced by the index
	StoredBytes int64 // bytes of chunk records in packs (after compression)
	RawBytes    int64 // bytes of the chunks before compression
	Condemned   int64 // chunks GC found unreferenced, not yet deleted

	PendingChunks int64 // Put but not yet committed
	PendingBytes  int64 // stored bytes of pending chunks
}

// Stats returns counts for reporting.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	is, err := s.index.Stats(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("chunk store stats: %w", err)
	}
	st := Stats{Chunks: is.Chunks, Packs: is.Packs, StoredBytes: is.StoredBytes, RawBytes: is.RawBytes, Condemned: is.Deleted}
	s.mu.Lock()
	for _, l := range s.pending {
		st.PendingChunks++
		st.PendingBytes += int64(l.p.entries[l.i].Length)
	}
	s.mu.Unlock()
	return st, nil
}
