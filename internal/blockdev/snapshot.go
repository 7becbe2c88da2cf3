package blockdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"coffer/internal/chunk"
	"coffer/internal/lowprio"
)

// snapState is the copy-before-write state of a running snapshot, guarded by
// Volume.mu (the side file's contents by the block's stripe).
//
// Invariant: for every block in pending, either the volume file (or, for a
// block not hydrated yet, the source snapshot) still holds the contents it
// had at the swap, or mem/spill holds them. Writers copy before they write
// (under the block's stripe); the snapshot reads a pending block under the
// same stripe and clears its pending bit.
type snapState struct {
	size     int64
	taken    *bitset           // the dirty set swapped out; merged back on failure
	pending  *bitset           // taken and not read by the snapshot yet
	mem      map[int64]*[]byte // from Engine.getBlock
	memBytes int64
	spill    map[int64]int64 // block → offset in side
	side     *os.File
	sideNext int64
	cbw      atomic.Int64
	total    int64        // blocks taken
	read     atomic.Int64 // of them, blocks the snapshot has read
}

// SnapshotProgress is how far a volume's running snapshot has got.
type SnapshotProgress struct {
	Running bool // false: no snapshot runs (the rest is zero)
	// BlocksRead of BlocksTotal, the blocks the snapshot takes (those
	// changed since the volume's last snapshot).
	BlocksRead, BlocksTotal int64
	// CBWBlocks is how many of them the user's writes copied before write
	// so far.
	CBWBlocks int64
}

// SnapshotProgress reports the progress of the volume's running snapshot.
func (v *Volume) SnapshotProgress() SnapshotProgress {
	v.mu.Lock()
	s := v.snap
	v.mu.Unlock()
	if s == nil {
		return SnapshotProgress{}
	}
	return SnapshotProgress{Running: true, BlocksRead: s.read.Load(), BlocksTotal: s.total, CBWBlocks: s.cbw.Load()}
}

func (s *snapState) holds(b int64) bool {
	if _, ok := s.mem[b]; ok {
		return true
	}
	_, ok := s.spill[b]
	return ok
}

// cbwKeep stores the pre-write contents of block b for snapshot s. The
// caller holds b's stripe.
func (v *Volume) cbwKeep(s *snapState, b int64, data []byte) error {
	s.cbw.Add(1)
	v.mu.Lock()
	if s.memBytes+v.bs <= v.e.opts.CBWMemory {
		s.memBytes += v.bs
		v.mu.Unlock()
		kept := v.e.getBlock()
		copy(*kept, data[:v.bs])
		v.mu.Lock()
		s.mem[b] = kept
		v.mu.Unlock()
		return nil
	}
	if s.side == nil {
		f, err := os.CreateTemp(v.dir, "cbw-*")
		if err != nil {
			v.mu.Unlock()
			return fmt.Errorf("copy-before-write: %w", err)
		}
		_ = os.Remove(f.Name()) // unlinked: vanishes with the process
		s.side = f
	}
	off := s.sideNext
	s.sideNext += v.bs
	side := s.side
	v.mu.Unlock()
	if _, err := side.WriteAt(data[:v.bs], off); err != nil {
		return fmt.Errorf("copy-before-write to side file: %w", err)
	}
	v.mu.Lock()
	s.spill[b] = off
	v.mu.Unlock()
	return nil
}

// snapRead reads pending block b as of the swap into buf and clears its
// pending bit.
func (v *Volume) snapRead(ctx context.Context, s *snapState, b int64, buf []byte) error {
	l := v.stripe(b)
	l.Lock()
	defer l.Unlock()
	v.mu.Lock()
	data, inMem := s.mem[b]
	off, spilled := s.spill[b]
	delete(s.mem, b)
	delete(s.spill, b)
	if inMem {
		s.memBytes -= v.bs
	}
	s.pending.clear(b)
	side := s.side
	v.mu.Unlock()
	s.read.Add(1)
	switch {
	case inMem:
		copy(buf, *data)
		v.e.putBlock(data)
		return nil
	case spilled:
		if _, err := side.ReadAt(buf[:v.bs], off); err != nil {
			return fmt.Errorf("read copy-before-write side file: %w", err)
		}
		return nil
	default:
		return v.readBlockRaw(ctx, b, buf)
	}
}

// prefetch asks the kernel to start reading the taken blocks of page p
// from the volume file into the page cache (POSIX_FADV_WILLNEED), a page
// ahead of the workers, whose own 64 KiB reads of an uncached file get a
// fraction of the disk's speed; cached blocks cost nothing. It gives way
// to the volume's user (foregroundWindow): read-ahead requests queued on
// the disk delayed the user's writes, which may first read the old block
// (copy before write). Since a user who starts writing as the snapshot
// starts would only be seen after read-ahead was queued, it starts only
// after the snapshot has run for foregroundWindow (from). Measured on the
// development VM, 4 GiB bench image dropped from the page cache: full
// snapshot median 4.3 s -> 3.6 s (docs/volumes.md, "Read-ahead");
// read-ahead that did not give way raised p99 write latency during a
// snapshot from 1.4-2.0 to 8-17 ms. It is only a hint: errors are ignored.
func (v *Volume) prefetch(s *snapState, p, nb int64, from time.Time) {
	if now := v.e.opts.Clock.Now(); now.Before(from) || v.fg.recent(now) {
		return
	}
	lo, hi := p*EntriesPerPage, min((p+1)*EntriesPerPage, nb)
	fd := int(v.f.Fd())
	for b := lo; b < hi; {
		if !s.taken.has(b) {
			b++
			continue
		}
		end := b + 1
		for end < hi && s.taken.has(end) {
			end++
		}
		if hk := v.e.hooks.prefetch; hk != nil {
			hk(v.id, b, end)
		}
		_ = unix.Fadvise(fd, b*v.bs, (end-b)*v.bs, unix.FADV_WILLNEED)
		b = end
	}
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// Snapshot takes a point-in-time, crash-consistent snapshot of an open
// volume while writes continue, and commits it under snapshotID ("" picks a
// random ID). Only the blocks changed since the volume's previous snapshot
// are read; unchanged index pages are reused by ID.
//
// Commit order: every block and page chunk and then the record chunk is
// Put into the snapshot's chunk stream, whose Flush commits them all (with
// any pack of another stream holding a chunk the snapshot found pending
// there), then the catalogue entry
// snapshots/<id> is written, then its row in the catalogue index (the
// commit point), then
// volumes/<volume> moves its base to the new record. If Snapshot fails, the blocks it took are merged back into the
// dirty set.
func (e *Engine) Snapshot(ctx context.Context, volumeID, snapshotID string) (SnapshotInfo, error) {
	if snapshotID == "" {
		snapshotID = newID()
	}
	if err := validID(snapshotID); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot: %w", err)
	}
	e.mu.Lock()
	v := e.vols[volumeID]
	e.mu.Unlock()
	if v == nil {
		var err error
		if v, err = e.OpenVolume(ctx, volumeID); err != nil {
			return SnapshotInfo{}, fmt.Errorf("snapshot: %w", err)
		}
	}
	si, err := v.snapshot(ctx, snapshotID)
	if err != nil {
		return si, fmt.Errorf("snapshot %s of volume %s: %w", snapshotID, volumeID, e.noSpace(err, volumeID))
	}
	return si, nil
}

func (v *Volume) snapshot(ctx context.Context, snapID string) (SnapshotInfo, error) {
	e := v.e
	v.snapMu.Lock()
	defer v.snapMu.Unlock()
	if _, err := e.getRow(ctx, KindSnapshot, snapID); err == nil {
		return SnapshotInfo{}, ErrExists
	} else if !errors.Is(err, ErrNotFound) {
		return SnapshotInfo{}, err
	}

	if h := e.hooks.beforeSwap; h != nil {
		h(v.id)
	}
	// The swap: the only moment writers and the snapshot contend on v.mu.
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return SnapshotInfo{}, ErrClosed
	}
	taken := v.dirty
	nb := (v.size + v.bs - 1) / v.bs
	v.dirty = newBitset(nb)
	s := &snapState{size: v.size, taken: taken, pending: taken.clone(), mem: map[int64]*[]byte{}, spill: map[int64]int64{}, total: taken.count()}
	v.snap = s
	base, baseSnap := v.base, v.baseSnap
	created := e.opts.Clock.Now().UTC()
	v.mu.Unlock()
	if h := e.hooks.afterSwap; h != nil {
		h(v.id)
	}

	committed := false
	defer func() {
		v.mu.Lock()
		if !committed {
			v.dirty.or(taken) // nothing is lost
		}
		v.snap = nil
		v.mu.Unlock()
		if s.side != nil {
			s.side.Close()
		}
	}()

	rec := &record{Size: s.size, BlockSize: v.bs, Created: created, Volume: v.id, Parent: baseSnap}
	var parent *record
	if !base.IsZero() {
		p, err := e.loadRecord(ctx, base)
		if err != nil {
			return SnapshotInfo{}, fmt.Errorf("load parent: %w", err)
		}
		parent = p
	}
	// The snapshot's chunks go into packs of their own (a stream), apart
	// from other disks' snapshots running at the same time.
	put, endStream := e.newStream()
	defer endStream()
	stats, err := v.writeBlocks(ctx, s, rec, parent, put)
	if err != nil {
		return SnapshotInfo{}, err
	}
	// One Flush commits the blocks, the pages and the record together:
	// nothing refers to any of them before the catalogue entry, so they
	// need not be committed in turn (a Flush of its own for the record
	// cost a pack write, its fsyncs and an index transaction more at the
	// end of every snapshot, with the cores idle).
	recID, err := put.Put(ctx, encodeRecord(rec))
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("store snapshot record: %w", err)
	}
	if err := put.Flush(ctx); err != nil {
		return SnapshotInfo{}, fmt.Errorf("flush chunks: %w", err)
	}
	si := SnapshotInfo{ID: snapID, Volume: v.id, Parent: baseSnap, Created: created, Size: s.size, BlockSize: v.bs, Record: recID}
	if err := e.commitSnapshot(ctx, si); err != nil {
		return SnapshotInfo{}, err
	}
	si.Stats = stats
	// The snapshot is committed. The volume's base moves only once the
	// volume record says so; if that write fails, the volume keeps its old
	// base and the taken blocks stay dirty (the deferred merge), which is
	// still correct: the next snapshot just reads more.
	if err := v.moveBase(ctx, recID, snapID); err == nil {
		committed = true
	}
	return si, nil
}

// writeBlocks reads and stores every pending block of s in parallel with
// put, rebuilds the changed index pages and fills rec.Pages.
func (v *Volume) writeBlocks(ctx context.Context, s *snapState, rec *record, parent *record, put chunkPutter) (SnapshotStats, error) {
	e := v.e
	nb := rec.nblocks()
	np := pagesFor(nb)
	rec.Pages = make([]chunk.ID, np)
	if parent != nil {
		copy(rec.Pages, parent.Pages)
	}
	var blocksRead, blocksStored, blocksZero, pagesWritten atomic.Int64
	finish := func(ctx context.Context, pg *snapPage) error {
		allZero := true
		for _, id := range pg.entries {
			if !id.IsZero() {
				allZero = false
				break
			}
		}
		if allZero {
			rec.Pages[pg.p] = chunk.ID{}
			return nil
		}
		id, err := put.Put(ctx, encodePage(pg.entries))
		if err != nil {
			return fmt.Errorf("store index page %d: %w", pg.p, err)
		}
		rec.Pages[pg.p] = id
		pagesWritten.Add(1)
		return nil
	}
	feed := &blockFeed{v: v, s: s, parent: parent, nb: nb, np: np,
		readAheadFrom: e.opts.Clock.Now().Add(foregroundWindow)} // see prefetch
	g, gctx := errgroup.WithContext(ctx)
	// While the volume's user is active, one worker at a time reads and
	// stores a block, with rests between blocks (yieldGate) unless the
	// user's writes copy blocks for the snapshot: each copy costs a write
	// more than the snapshot's share of the CPU does, and a snapshot that
	// rests has more blocks copied (measured: 13,424-14,794 copies of
	// 16,384 blocks with rests against 7,034-8,525 without, and writes
	// kept 0.38-0.45× of their idle rate against 0.45-0.72×). It still
	// gets its minimum share of a core (minShare) however busy the user
	// keeps the cores.
	yield := newYieldGate(e.opts.Clock, &v.fg)
	yield.urgentWhenCounted(&s.cbw)
	// The workers run on threads of the lowest priority (lowprio): the
	// kernel gives the user's connections a core first. They take their
	// blocks from the feed themselves, one worker per core (see blockFeed).
	// While they run the process has one P more than cores (SpareP): with
	// every P held by a worker inside a zstd call, the runtime took a P
	// back from nearly every call and kept its monitor waking every 20 µs,
	// which cost a full snapshot a tenth of its CPU (docs/design.md,
	// "Issue 14's figures (session 9)").
	defer lowprio.SpareP()()
	for range e.opts.Workers {
		lowprio.Go(g, func() error {
			buf := make([]byte, v.bs)
			var pg *snapPage
			var b int64
			store := func() error { // block b of page pg: one job of yield
				if err := v.snapRead(gctx, s, b, buf); err != nil {
					return fmt.Errorf("read block %d: %w", b, err)
				}
				data := buf[:v.blockLen(b, s.size)]
				blocksRead.Add(1)
				var id chunk.ID
				if isZero(data) {
					blocksZero.Add(1)
				} else {
					var err error
					if id, err = put.Put(gctx, data); err != nil {
						return fmt.Errorf("store block %d: %w", b, err)
					}
					blocksStored.Add(1)
				}
				pg.entries[b-pg.p*EntriesPerPage] = id
				if h := e.hooks.blockStored; h != nil {
					h(v.id, blocksRead.Load())
				}
				return nil
			}
			for {
				var err error
				pg, b, err = feed.next(gctx)
				if err != nil || pg == nil {
					return err
				}
				if b < 0 { // a page rebuilt without blocks of its own
					if err := finish(gctx, pg); err != nil {
						return err
					}
					continue
				}
				if err := yield.do(gctx, store); err != nil {
					return err
				}
				if pg.remaining.Add(-1) == 0 {
					if err := finish(gctx, pg); err != nil {
						return err
					}
				}
			}
		})
	}
	err := g.Wait()
	st := SnapshotStats{
		BlocksRead: blocksRead.Load(), BlocksStored: blocksStored.Load(), BlocksZero: blocksZero.Load(),
		PagesWritten: pagesWritten.Load(), PagesReused: feed.pagesReused, CBWBlocks: s.cbw.Load(),
	}
	st.BytesRead = st.BlocksRead * v.bs
	return st, err
}

// snapPage is an index page a snapshot rebuilds: its entries, filled in
// by the workers, and how many of its blocks are still to be stored.
type snapPage struct {
	p         int64
	entries   []chunk.ID
	remaining atomic.Int64
}

// blockFeed hands a snapshot's workers its taken blocks, page after page,
// preparing each page (the read-ahead of the next one, the parent's entries
// to start from) when a worker first asks for a block of it.
//
// The workers take their blocks from it themselves, under its lock, rather
// than from a goroutine feeding them through a channel: they run on locked
// threads (lowprio), so a worker that waits for a goroutine gives its core
// away through a thread switch, and the feeding goroutine, an ordinary one,
// got a core only when a worker left one. In a trace of a 1 GiB full
// snapshot (8,192 blocks) the channel ran empty 682 times and the feeder
// waited for a core 2,114 times (docs/design.md, "Issue 14's figures,
// session 8"). For the same reason there are as many workers as cores: a
// worker more had one of them always waiting for a core, taken from a
// worker in a cgo call (zstd) whose return then had to wait for one.
type blockFeed struct {
	v             *Volume
	s             *snapState
	parent        *record
	nb, np        int64
	readAheadFrom time.Time

	mu          sync.Mutex
	p           int64 // the next page to open
	cur         *snapPage
	blocks      []int64 // cur's taken blocks not handed out yet
	olds        map[int64][]chunk.ID
	pagesReused int64 // read once the workers are done
}

// next returns the next block to store and its page, a page to rebuild
// without blocks of its own (b < 0), or a nil page when every block has
// been handed out.
func (f *blockFeed) next(ctx context.Context) (pg *snapPage, b int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.blocks) == 0 {
		if f.p >= f.np {
			return nil, 0, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		p := f.p
		f.p++
		pg, err := f.open(ctx, p)
		if err != nil {
			return nil, 0, err
		}
		if pg != nil && len(f.blocks) == 0 {
			return pg, -1, nil
		}
	}
	b, f.blocks = f.blocks[0], f.blocks[1:]
	return f.cur, b, nil
}

// open prepares page p: nil if the snapshot reuses it (the parent's page,
// or a hole), else the page, with its taken blocks in f.blocks. f.mu is
// held.
func (f *blockFeed) open(ctx context.Context, p int64) (*snapPage, error) {
	v, s, parent := f.v, f.s, f.parent
	if p+1 < f.np {
		v.prefetch(s, p+1, f.nb, f.readAheadFrom)
	}
	lo, hi := p*EntriesPerPage, min((p+1)*EntriesPerPage, f.nb)
	inParent := parent != nil && p < int64(len(parent.Pages))
	// The parent pages to rebuild are fetched in batches (one index lookup
	// and few reads per pageBatch pages) ahead of their blocks.
	if inParent && p%pageBatch == 0 {
		var err error
		if f.olds, err = v.parentPages(ctx, s, parent, p, min(p+pageBatch, int64(len(parent.Pages))), f.nb); err != nil {
			return nil, fmt.Errorf("load parent page: %w", err)
		}
	}
	// A parent page whose entry count differs (the volume grew) is rebuilt
	// even without dirty blocks.
	grown := inParent && pageLen(parent.nblocks(), p) != pageLen(f.nb, p)
	if !s.pendingAny(v, lo, hi) && !grown {
		if inParent {
			f.pagesReused++
		}
		return nil, nil
	}
	pg := &snapPage{p: p, entries: make([]chunk.ID, hi-lo)}
	if inParent {
		copy(pg.entries, f.olds[p])
	}
	f.blocks = f.blocks[:0]
	for b := lo; b < hi; b++ {
		if s.taken.has(b) {
			f.blocks = append(f.blocks, b)
		}
	}
	pg.remaining.Store(int64(len(f.blocks)))
	f.cur = pg
	return pg, nil
}

// parentPages loads the pages of parent in [p0, p1) that the snapshot
// rebuilds (they hold a taken block, or their entry count changed), with
// batched reads. Hole pages and pages not rebuilt are absent from the map.
func (v *Volume) parentPages(ctx context.Context, s *snapState, parent *record, p0, p1, nb int64) (map[int64][]chunk.ID, error) {
	parentNB := parent.nblocks()
	var want []int64
	for p := p0; p < p1; p++ {
		lo, hi := p*EntriesPerPage, min((p+1)*EntriesPerPage, nb)
		if parent.Pages[p].IsZero() {
			continue
		}
		if s.pendingAny(v, lo, hi) || pageLen(parentNB, p) != pageLen(nb, p) {
			want = append(want, p)
		}
	}
	out := make(map[int64][]chunk.ID, len(want))
	if len(want) == 0 {
		return out, nil
	}
	ids := make([]chunk.ID, len(want))
	for i, p := range want {
		ids[i] = parent.Pages[p]
	}
	err := v.e.getMany(ctx, ids, func(i int, data []byte) error {
		p := want[i]
		entries, err := decodePageOf(data, ids[i], p, pageLen(parentNB, p))
		if err != nil {
			return err
		}
		out[p] = entries
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// pendingAny reports whether any block in [lo,hi) was taken by s.
func (s *snapState) pendingAny(v *Volume, lo, hi int64) bool {
	// taken is immutable during the snapshot, so no lock is needed.
	return s.taken.anyIn(lo, hi)
}

// moveBase writes the volume record with a new base, then adopts it. recMu
// serializes volume-record writes (snapshot commit, end of hydration).
func (v *Volume) moveBase(ctx context.Context, base chunk.ID, baseSnap string) error {
	v.recMu.Lock()
	defer v.recMu.Unlock()
	v.mu.Lock()
	var hydFrom chunk.ID
	if v.hyd != nil {
		hydFrom = v.hyd.srcID
	}
	v.mu.Unlock()
	if err := v.e.putVolumeRecord(ctx, volumeRecord{ID: v.id, Base: base, BaseSnapshot: baseSnap, HydrateFrom: hydFrom}); err != nil {
		return err
	}
	v.mu.Lock()
	v.base, v.baseSnap = base, baseSnap
	v.mu.Unlock()
	return nil
}
