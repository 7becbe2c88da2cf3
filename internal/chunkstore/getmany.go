package chunkstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"coffer/internal/blobstore"
	"coffer/internal/chunk"
	"coffer/internal/directio"
)

// Batched reads (docs/design.md, "Batched reads").
const (
	// readGap is the largest gap between two chunks of one pack that a
	// batched read spans (reading the gap is cheaper than another call).
	readGap = 64 << 10
	// maxRead bounds one ranged read of a batch (and the memory it holds).
	maxRead = 8 << 20
)

// readBufs recycles the buffers of batched reads in size classes of
// minRead << i bytes (up to maxRead), each with the slack of an aligned
// direct read (blobstore.RangeReader). Most runs are far shorter than
// maxRead, so a class per size keeps a run from holding (and touching) a
// maxRead buffer.
var readBufs [readClasses]sync.Pool

const (
	minRead     = 1 << 20
	readClasses = 4 // minRead << (readClasses-1) == maxRead
)

// readBuf returns a pooled buffer for a run of n bytes and its class.
func readBuf(n int64) (*[]byte, int) {
	c := 0
	for c < readClasses-1 && n > minRead<<c {
		c++
	}
	if b, ok := readBufs[c].Get().(*[]byte); ok {
		return b, c
	}
	b := directio.Buffer(minRead<<c + 2*directio.Align)
	return &b, c
}

// readRange reads n bytes at off of pack p, into buf's memory when the
// blob store can.
func (s *Store) readRange(ctx context.Context, p string, off, n int64, buf []byte) ([]byte, error) {
	if rr, ok := s.blobs.(blobstore.RangeReader); ok {
		return rr.ReadRange(ctx, p, off, n, buf)
	}
	return s.blobs.GetRange(ctx, p, off, n)
}

// GetMany reads the chunks ids (duplicates allowed) with one index lookup
// for the whole batch and one ranged read per run of nearby chunks in a
// pack, and calls fn(i, data) for every index i of ids, with data checked
// against ids[i]. Calls come from the calling goroutine, in pack order, not
// in the order of ids; data is valid only until fn returns. The first error
// (a missing or corrupt chunk, or fn's) ends the call. Its ranged reads
// use pooled buffers; GetManyInto takes the caller's.
func (s *Store) GetMany(ctx context.Context, ids []chunk.ID, fn func(i int, data []byte) error) error {
	return s.GetManyInto(ctx, ids, nil, 0, nil, fn)
}

// MinReadBuf is the smallest read buffer GetManyInto takes.
const MinReadBuf = 256<<10 + 2*directio.Align

// GetManyInto is GetMany with the caller's memory, for callers that bound
// what a batch holds (a restore) or that want chunks decompressed where
// they go:
//
//   - rbuf, when not nil, is the memory of every ranged read of the batch
//     instead of pooled buffers: at least MinReadBuf bytes, aligned for
//     direct I/O (directio.Map or directio.Buffer). A read is then at most
//     len(rbuf) - 2*directio.Align bytes; a chunk larger than that is
//     read on its own into a pooled buffer. When rbuf holds two halves of
//     at least MinReadBuf each, reads are cut to fit a half, and up to
//     ahead runs are read into the rest of rbuf while fn handles the
//     chunks of an earlier one (readRuns): 1 keeps the disk busy while
//     the caller decompresses; more keep it busy when runs are short
//     and a read's time is mostly its latency. No read is left in
//     progress when GetManyInto returns.
//   - dst, when not nil, gives memory for chunk i (the first index of a
//     duplicated ID): a compressed chunk whose raw length fits it is
//     decompressed there, and fn(i, data) then gets data in dst(i)'s
//     memory. Stored-raw chunks are passed from the read buffer as ever.
func (s *Store) GetManyInto(ctx context.Context, ids []chunk.ID, rbuf []byte, ahead int, dst func(i int) []byte, fn func(i int, data []byte) error) error {
	return s.getMany(ctx, ids, nil, rbuf, ahead, dst, fn)
}

// Locate returns the index entries of those of ids that are committed
// (in the index and not in a pack of this Store still to be indexed), for
// a reader that reads them later with GetLocatedInto and so looks each up
// once however often, or however many at a time, it reads them.
func (s *Store) Locate(ctx context.Context, ids []chunk.ID) (map[chunk.ID]Entry, error) {
	ask := make([]chunk.ID, 0, len(ids))
	s.mu.Lock()
	for _, id := range ids {
		if _, ok := s.pending[id]; !ok {
			ask = append(ask, id)
		}
	}
	s.mu.Unlock()
	if len(ask) == 0 {
		return map[chunk.ID]Entry{}, nil
	}
	found, err := s.index.Lookup(ctx, ask)
	if err != nil {
		return nil, fmt.Errorf("locate %d chunks: look up index: %w", len(ask), err)
	}
	return found, nil
}

// GetLocatedInto is GetManyInto for chunks whose entries the caller has
// from Locate: es[i] is where chunk i (es[i].ID) lies, and fn(i, data)
// gets it, checked against es[i].ID, with no index lookup. An entry whose
// pack is gone (a garbage collector moved the chunk since Locate) is
// looked up again, as GetManyInto does; every chunk is verified against
// its ID whatever entry it was read by.
func (s *Store) GetLocatedInto(ctx context.Context, es []Entry, rbuf []byte, ahead int, dst func(i int) []byte, fn func(i int, data []byte) error) error {
	ids := make([]chunk.ID, len(es))
	for i := range es {
		ids[i] = es[i].ID
	}
	return s.getMany(ctx, ids, es, rbuf, ahead, dst, fn)
}

// PrefetchLocated tells the blob store, when it takes hints
// (blobstore.Prefetcher), that the chunks es (entries from Locate) will be
// read soon, with one hint per run of them that a batched read would read
// at once (chunks of a pack at most readGap apart). It returns how many
// hints it gave. A reader about to read many of them one at a time (the
// reads of a hydrating volume, each of one block) then finds them read
// ahead in few large reads instead of one disk read each. Hints change
// nothing that is read: every chunk is still read and verified against
// its ID by GetLocatedInto or Get. The blob store may wait for its reads
// (the local store does), hint by hint: call it off a waiting read's path.
func (s *Store) PrefetchLocated(ctx context.Context, es []Entry) int {
	pf, ok := s.blobs.(blobstore.Prefetcher)
	if !ok || len(es) == 0 {
		return 0
	}
	byPack := make(map[string][]Entry)
	for _, e := range es {
		byPack[e.Pack] = append(byPack[e.Pack], e)
	}
	n := 0
	for _, r := range packRuns(byPack, maxRead) {
		if pf.Prefetch(ctx, r.pack, r.start, r.end-r.start) == nil {
			n++
		}
	}
	return n
}

// getMany is GetManyInto, with located, when not nil, the entries of ids
// (located[i] for ids[i]): those are neither looked up nor searched for
// among the pending chunks.
func (s *Store) getMany(ctx context.Context, ids []chunk.ID, located []Entry, rbuf []byte, ahead int, dst func(i int) []byte, fn func(i int, data []byte) error) error {
	if rbuf != nil && (len(rbuf) < MinReadBuf || !directio.Aligned(rbuf[:0], 0)) {
		return fmt.Errorf("get %d chunks: read buffer of %d bytes: not aligned or under %d bytes", len(ids), len(rbuf), MinReadBuf)
	}
	runMax := int64(maxRead)
	if rbuf != nil {
		runMax = int64(len(readHalves(rbuf)[0]) - 2*directio.Align)
	}
	at := make(map[chunk.ID][]int, len(ids))
	for i, id := range ids {
		at[id] = append(at[id], i)
	}
	deliver := func(id chunk.ID, data []byte) error {
		for _, i := range at[id] {
			if err := fn(i, data); err != nil {
				return err
			}
		}
		return nil
	}
	var scratch []byte // decompression buffer, reused: fn does not keep data
	decode := func(e trailerEntry, stored []byte, packName string) ([]byte, error) {
		if dst != nil && e.Compression == CompressionZstd {
			if d := dst(at[e.ID][0]); int64(len(d)) >= int64(e.RawLength) {
				return s.decodeInto(e, stored, packName, d[:0:e.RawLength])
			}
		}
		data, err := s.decodeInto(e, stored, packName, scratch)
		if err == nil && e.Compression == CompressionZstd {
			scratch = data // grown, or as it was
		}
		return data, err
	}

	byPack := make(map[string][]Entry)
	var ask []chunk.ID
	if located != nil {
		for _, is := range at {
			e := located[is[0]]
			byPack[e.Pack] = append(byPack[e.Pack], e)
		}
	} else {
		// Chunks in packs not written yet are served from memory.
		type memChunk struct {
			e      trailerEntry
			stored []byte
		}
		var inMem []memChunk
		ask = make([]chunk.ID, 0, len(at))
		s.mu.Lock()
		for id := range at {
			l, ok := s.pending[id]
			switch {
			case !ok:
				ask = append(ask, id)
			case l.p.done: // in a pack written but not indexed yet
				e := l.p.entries[l.i]
				byPack[l.p.name] = append(byPack[l.p.name], Entry{ID: e.ID, Pack: l.p.name, Offset: e.Offset, Length: e.Length, RawLength: e.RawLength, Compression: e.Compression})
			default:
				e := l.p.entries[l.i]
				inMem = append(inMem, memChunk{e, append([]byte(nil), l.p.buf[e.Offset:e.Offset+int64(e.Length)]...)})
			}
		}
		s.mu.Unlock()
		for _, m := range inMem {
			data, err := decode(m.e, m.stored, "(unwritten pack)")
			if err != nil {
				return err
			}
			if err := deliver(m.e.ID, data); err != nil {
				return err
			}
		}
	}
	// Chunks the index does not know (stored again concurrently, or
	// missing) take the single-chunk path, which reports them properly.
	var single []chunk.ID
	if len(ask) > 0 {
		found, err := s.index.Lookup(ctx, ask)
		if err != nil {
			return fmt.Errorf("get %d chunks: look up index: %w", len(ask), err)
		}
		for _, id := range ask {
			if e, ok := found[id]; ok {
				byPack[e.Pack] = append(byPack[e.Pack], e)
			} else {
				single = append(single, id)
			}
		}
	}
	if len(byPack) == 0 && len(single) == 0 {
		return nil
	}
	runs := packRuns(byPack, runMax)
	err := s.readRuns(ctx, runs, rbuf, ahead, func(r readRun, buf []byte) error {
		if buf == nil {
			// Moved by a concurrent GC: Get looks each up again.
			for _, e := range r.es {
				single = append(single, e.ID)
			}
			return nil
		}
		for _, e := range r.es {
			data, err := decode(e.trailer(), buf[e.Offset-r.start:e.Offset-r.start+int64(e.Length)], r.pack)
			if err != nil {
				return err
			}
			if err := deliver(e.ID, data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range single {
		data, err := s.Get(ctx, id)
		if err != nil {
			return err
		}
		if err := deliver(id, data); err != nil {
			return err
		}
	}
	return nil
}

// readRun is one ranged read of a batch: the chunks es, which lie in
// [start, end) of pack.
type readRun struct {
	pack       string
	es         []Entry
	start, end int64
}

// packRuns cuts the entries of byPack (by pack name; each list is sorted
// in place) into the runs a batch reads: chunks of a pack at most readGap
// apart, at most runMax bytes a run; in order of pack and offset.
func packRuns(byPack map[string][]Entry, runMax int64) []readRun {
	var runs []readRun
	for _, p := range slices.Sorted(maps.Keys(byPack)) {
		es := byPack[p]
		slices.SortFunc(es, func(a, b Entry) int { return cmp.Compare(a.Offset, b.Offset) })
		for len(es) > 0 {
			n, end := 1, es[0].Offset+int64(es[0].Length)
			for n < len(es) {
				e := es[n]
				if e.Offset-end > readGap || e.Offset+int64(e.Length)-es[0].Offset > runMax {
					break
				}
				end = max(end, e.Offset+int64(e.Length))
				n++
			}
			runs = append(runs, readRun{pack: p, es: es[:n], start: es[0].Offset, end: end})
			es = es[n:]
		}
	}
	return runs
}

// readHalves cuts a read buffer in two aligned halves when each can hold
// a read of at least MinReadBuf, for reading runs while others are
// decoded; else it returns the buffer whole.
func readHalves(rbuf []byte) [][]byte {
	half := len(rbuf) / 2 &^ (directio.Align - 1)
	if half < MinReadBuf {
		return [][]byte{rbuf}
	}
	return [][]byte{rbuf[:half:half], rbuf[half : 2*half : 2*half]}
}

// readRuns reads runs and calls fn with each one's bytes, in order (valid
// until fn returns; nil for a run whose pack is gone, which a concurrent
// GC rewrote). Each run is read into a part of rbuf that holds it, or a
// pooled buffer (rbuf nil, or a run larger than the part). When rbuf has
// two halves (readHalves), there are several runs and ahead is at least
// 1, up to ahead runs are read, each into its part of rbuf (readRing),
// while fn handles an earlier one, so that the disk has work while the
// caller decompresses; every read has ended when readRuns returns.
func (s *Store) readRuns(ctx context.Context, runs []readRun, rbuf []byte, ahead int, fn func(r readRun, buf []byte) error) error {
	halves := readHalves(rbuf)
	if rbuf == nil || len(halves) == 1 || len(runs) == 1 || ahead < 1 {
		for _, r := range runs {
			buf, release, err := s.readRunInto(ctx, r, rbuf)
			if err != nil {
				return err
			}
			err = fn(r, buf)
			release()
			if err != nil {
				return err
			}
		}
		return nil
	}
	type read struct {
		buf     []byte
		release func()
		err     error
		done    chan struct{}
		part    bool // holds a part of the ring
	}
	rctx, cancel := context.WithCancel(ctx)
	ring := readRing{size: len(rbuf) &^ (directio.Align - 1)}
	var reads []*read // started and not yet handled, in the order of runs
	defer func() {
		cancel()
		for _, rd := range reads {
			<-rd.done
			rd.release()
		}
	}()
	next := 0 // the next run to start reading
	for _, r := range runs {
		for next < len(runs) && len(reads) <= ahead { // the run fn handles next, and ahead more
			into, ok := ring.take(rbuf, runs[next], len(halves[0]))
			if !ok {
				break // the ring is full until the oldest run is handled
			}
			rd := &read{done: make(chan struct{}), part: into != nil}
			go func(r readRun) {
				defer close(rd.done)
				rd.buf, rd.release, rd.err = s.readRunInto(rctx, r, into)
			}(runs[next])
			reads = append(reads, rd)
			next++
		}
		rd := reads[0]
		<-rd.done
		if rd.err != nil {
			return rd.err
		}
		err := fn(r, rd.buf)
		rd.release()
		reads = reads[1:]
		if rd.part {
			ring.free()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readRing hands out parts of a read buffer to a batch's runs in their
// order and takes them back in the same order, as a ring: the part of
// the oldest run is freed first. Each part is aligned and holds its run
// with the slack of a direct read (blobstore.RangeReader).
type readRing struct {
	size  int      // usable bytes of the buffer, a multiple of directio.Align
	parts [][2]int // [lo, hi) of the parts handed out, oldest first; none empty
}

// take returns the part of rbuf for run r, or false when no part of that
// size is free until the oldest one is freed. A run whose part would be
// larger than most bytes gets no part (nil, true: readRunInto then reads
// it into a pooled buffer), and nothing to free.
func (g *readRing) take(rbuf []byte, r readRun, most int) ([]byte, bool) {
	n := int(r.end-r.start) + 2*directio.Align
	n = (n + directio.Align - 1) &^ (directio.Align - 1)
	if n > most || n > g.size {
		return nil, true
	}
	lo := 0
	if k := len(g.parts); k > 0 {
		first, last := g.parts[0][0], g.parts[k-1]
		wrapped := last[0] < first // parts are never empty, so never equal
		switch {
		case !wrapped && last[1]+n <= g.size: // after the last part
			lo = last[1]
		case !wrapped && n <= first: // wrap around, before the first part
		case wrapped && last[1]+n <= first: // between the last and the first
			lo = last[1]
		default:
			return nil, false
		}
	}
	g.parts = append(g.parts, [2]int{lo, lo + n})
	return rbuf[lo : lo+n : lo+n], true
}

// free takes back the oldest part.
func (g *readRing) free() { g.parts = g.parts[1:] }

// readRunInto reads run r with one ranged read into into when the run and
// its alignment slack fit it, or else into a pooled buffer, and returns
// the run's bytes and the function that gives the buffer back. A pack
// that is gone (a concurrent GC rewrote it) reads as nil bytes.
func (s *Store) readRunInto(ctx context.Context, r readRun, into []byte) (buf []byte, release func(), err error) {
	release = func() {}
	if r.end-r.start+2*directio.Align > int64(len(into)) {
		rbuf, class := readBuf(r.end - r.start)
		release = func() { readBufs[class].Put(rbuf) }
		into = *rbuf
	}
	buf, err = s.readRange(ctx, r.pack, r.start, r.end-r.start, into)
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil, release, nil
	}
	if err != nil {
		release()
		return nil, func() {}, fmt.Errorf("get %d chunks from pack %s: %w", len(r.es), r.pack, err)
	}
	return buf, release, nil
}
