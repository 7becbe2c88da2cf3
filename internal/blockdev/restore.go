package blockdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"coffer/internal/capacity"
	"coffer/internal/chunk"
	"coffer/internal/directio"
	"coffer/internal/lowprio"
)

// hydration is the state of a restored volume still being filled from its
// source snapshot. done is guarded by Volume.mu.
type hydration struct {
	srcID chunk.ID
	src   *record
	srcNB int64
	cache *pageCache
	locs  *locCache // where the chunks of pages read lie
	done  *bitset   // blocks whose file contents are authoritative
	ndone int64
	// written holds, for blocks not hydrated yet that writes covered in
	// part, the units (writeUnits per block) the file holds authoritative
	// contents of; hydrating such a block fills in the other units only.
	// A block leaves it when it is hydrated.
	written  map[int64]uint64
	cancel   context.CancelFunc
	finished chan struct{}
	err      error // why the hydrator stopped, or why it is stalled
	// stalled is set while the hydrator waits for space to come back
	// (err is then the no-space error); changed is closed and replaced
	// when stalled changes and when hydration ends.
	stalled bool
	changed chan struct{}
	// fetched counts the blocks the user's reads fetched on their path
	// (hydrate-on-read): while it grows the hydrator does not rest.
	fetched atomic.Int64
	// ahead counts the goroutine locating the source's chunks ahead
	// (locateAhead): the hydrator's goroutine waits for it before it
	// ends.
	ahead sync.WaitGroup
}

// hydrationPageCache is how many of the source's index pages (8 KiB each
// with 64 KiB blocks) a hydration keeps for its reads of blocks not
// hydrated yet: all of a 16 GiB disk's. With 64, random reads of a 4 GiB
// disk (256 pages) loaded a page (an index lookup, a pack read, a
// decompression) for three misses in four.
const hydrationPageCache = 1024

func newHydration(e *Engine, srcID chunk.ID, src *record, done *bitset, written map[int64]uint64) *hydration {
	nb := src.nblocks()
	if done == nil {
		done = newBitset(nb)
	}
	done.grow(nb)
	if written == nil {
		written = map[int64]uint64{}
	}
	return &hydration{srcID: srcID, src: src, srcNB: nb, cache: newPageCache(e, src, hydrationPageCache), locs: newLocCache(hydrationPageCache), done: done, written: written,
		ndone: done.count(), finished: make(chan struct{}), changed: make(chan struct{})}
}

// writeUnits is how many units a block is cut into for writes to blocks not
// hydrated yet: a write made of whole units (1 KiB of a 64 KiB block) goes
// into the file at once and its units are recorded (hydration.written),
// where any other partial write must first fetch the block from the source
// snapshot and merge. The units fit one uint64 mask.
const writeUnits = 64

// unitRange is the mask of units [lo, hi).
func unitRange(lo, hi int64) uint64 {
	if hi-lo >= 64 {
		return ^uint64(0)
	}
	return (1<<uint(hi-lo) - 1) << uint(lo)
}

// unitsOf returns the units that [bOff, bOff+l) of a block of blen bytes
// covers, and whether it is made of whole units (it may end at the end of
// a short last block).
func (v *Volume) unitsOf(bOff, l, blen int64) (uint64, bool) {
	u := v.bs / writeUnits
	if bOff%u != 0 || (l%u != 0 && bOff+l != blen) {
		return 0, false
	}
	return unitRange(bOff/u, (bOff+l+u-1)/u), true
}

// wroteUnits records that the units of block b in mask were written into
// the file; a block whose every unit has been written is hydrated. The
// caller holds b's stripe.
func (v *Volume) wroteUnits(b int64, mask uint64, blen int64) {
	v.mu.Lock()
	h := v.hyd
	if h == nil || b >= h.srcNB || h.done.has(b) {
		v.mu.Unlock()
		return
	}
	u := v.bs / writeUnits
	mask |= h.written[b]
	full := mask == unitRange(0, (blen+u-1)/u)
	if !full {
		h.written[b] = mask
		v.hydDirty = true
	}
	v.mu.Unlock()
	if full {
		v.blockHydrated(b)
	}
}

// writtenUnits returns the units of block b written into the file while
// it is not hydrated.
func (v *Volume) writtenUnits(b int64) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.hyd == nil {
		return 0
	}
	return v.hyd.written[b]
}

// unitRuns calls fn with each run [lo, hi) of bytes of a block of blen
// bytes whose units are in mask (set) or not in it (!set).
func (v *Volume) unitRuns(mask uint64, set bool, blen int64, fn func(lo, hi int64) error) error {
	if !set {
		mask = ^mask
	}
	u := v.bs / writeUnits
	for i := int64(0); i < writeUnits && i*u < blen; {
		if mask&(1<<uint(i)) == 0 {
			i++
			continue
		}
		j := i
		for j < writeUnits && mask&(1<<uint(j)) != 0 {
			j++
		}
		if err := fn(i*u, min(j*u, blen)); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// fillUnwritten writes src, block b's contents in the source snapshot,
// into the file except for the units written meanwhile.
func (v *Volume) fillUnwritten(src []byte, b int64) error {
	mask := v.writtenUnits(b)
	if mask == 0 {
		return v.fileWrite(src, b*v.bs)
	}
	return v.unitRuns(mask, false, int64(len(src)), func(lo, hi int64) error {
		return v.fileWrite(src[lo:hi], b*v.bs+lo)
	})
}

// readWrittenUnits overlays buf, block b's contents in the source
// snapshot, with the units written into the file meanwhile.
func (v *Volume) readWrittenUnits(buf []byte, b int64) error {
	mask := v.writtenUnits(b)
	if mask == 0 {
		return nil
	}
	return v.unitRuns(mask, true, v.blockLen(b, v.Size()), func(lo, hi int64) error {
		return v.pread(buf[lo:hi], b*v.bs+lo)
	})
}

// stop stops the hydrator and the read-ahead of located pages (the
// caller then waits for both: v.hydWG, h.locs.waitPrefetch).
func (h *hydration) stop() {
	if h.cancel != nil {
		h.cancel()
	}
	h.locs.stopPrefetch()
}

// hydratedLocked reports whether block b's file contents are authoritative;
// v.mu is held.
func (v *Volume) hydratedLocked(b int64) bool {
	h := v.hyd
	return h == nil || b >= h.srcNB || h.done.has(b)
}

func (v *Volume) isHydrated(b int64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.hydratedLocked(b)
}

func (v *Volume) markHydrated(b int64) {
	v.mu.Lock()
	if h := v.hyd; h != nil && b < h.srcNB && !h.done.has(b) {
		h.done.set(b)
		h.ndone++
		delete(h.written, b)
		v.hydDirty = true
		if h.stalled { // space came back: hydration moves again
			h.setStalledLocked(nil)
		}
	}
	v.mu.Unlock()
}

// setStalledLocked records that hydration is stalled for err (nil: no
// longer) and tells those who wait for a change; Volume.mu is held.
func (h *hydration) setStalledLocked(err error) {
	h.stalled, h.err = err != nil, err
	close(h.changed)
	h.changed = make(chan struct{})
}

// hydrateLocked copies block b from the source snapshot into the file if
// it is not hydrated yet (hydrate-on-read), fetching it into buf (one
// block). It reports whether buf then holds what the file holds for the
// block, as when no unit of it was written meanwhile, so that the read can
// be served from buf instead of reading the file again. The caller holds
// b's stripe.
func (v *Volume) hydrateLocked(ctx context.Context, b int64, buf []byte) (filled bool, err error) {
	h := v.unhydrated(b)
	if h == nil {
		return false, nil
	}
	id, err := h.cache.entry(ctx, b)
	if err != nil {
		return false, err
	}
	blen := v.blockLen(b, h.src.Size)
	if err := v.readSourceInto(ctx, h, b, id, buf); err != nil {
		return false, fmt.Errorf("hydrate block %d: %w", b, err)
	}
	if !id.IsZero() { // (a hole is a hole in the file already)
		// The free-space reserve is for bookkeeping, as in the
		// hydrator's jobs: below it the block is not kept (the caller
		// serves the read from the snapshot). A stall that a read's
		// block cleared (markHydrated) must not let reads fill the
		// filesystem, or metadata writes such as revoking a grant fail.
		if err := v.e.opts.Space.CheckFor(int64(blen)); err != nil {
			return false, fmt.Errorf("hydrate block %d: %w", b, err)
		}
		if err := v.fillUnwritten(buf[:blen], b); err != nil {
			return false, fmt.Errorf("hydrate block %d: %w", b, err)
		}
		h.fetched.Add(1)
	}
	filled = v.writtenUnits(b) == 0
	v.blockHydrated(b)
	return filled, nil
}

// unhydrated returns the volume's hydration if block b is not hydrated
// yet, and nil if its file contents are authoritative.
func (v *Volume) unhydrated(b int64) *hydration {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.hydratedLocked(b) {
		return nil
	}
	return v.hyd
}

// blockHydrated records that block b's contents are in the file.
func (v *Volume) blockHydrated(b int64) {
	v.markHydrated(b)
	if hk := v.e.hooks.hydrated; hk != nil {
		hk(v.id, b)
	}
}

// hydrateWith writes block b from data, its chunk in the source snapshot,
// unless the block is hydrated already (a write or hydrate-on-read got
// there first). It takes b's stripe; buf is one block of scratch.
func (v *Volume) hydrateWith(b int64, id chunk.ID, data, buf []byte, wb *writeback) error {
	l := v.stripe(b)
	l.Lock()
	defer l.Unlock()
	h := v.unhydrated(b)
	if h == nil {
		return nil
	}
	out, err := blockData(id, data, buf, v.blockLen(b, h.src.Size))
	if err != nil {
		return fmt.Errorf("hydrate block %d: %w", b, err)
	}
	if err := v.fillUnwritten(out, b); err != nil {
		return fmt.Errorf("hydrate block %d: %w", b, err)
	}
	wb.wrote(b*v.bs, len(out), len(out))
	v.blockHydrated(b)
	return nil
}

// stillUnhydrated returns the blocks (and their chunks, ids) not
// hydrated yet, in place.
func (v *Volume) stillUnhydrated(blocks []int64, ids []chunk.ID) ([]int64, []chunk.ID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for i, b := range blocks {
		if !v.hydratedLocked(b) {
			blocks[n], ids[n] = b, ids[i]
			n++
		}
	}
	return blocks[:n], ids[:n]
}

// HydrationStatus is the progress of a restored volume's hydration.
type HydrationStatus struct {
	Hydrating  bool  // false once every block is in the volume file
	DoneBytes  int64 // bytes of the source already in the file (holes count)
	TotalBytes int64
	// Stalled is set while hydration waits for space on the data
	// filesystem; it resumes by itself (Err is then the no-space error,
	// capacity.ErrNoSpace). Reads are served from the snapshot meanwhile.
	Stalled bool
	Err     error // why the hydrator stopped or is stalled
	// ReadFetched is how many blocks the user's reads fetched from the
	// source snapshot on their path (hydrate-on-read) so far.
	ReadFetched int64
}

// Hydration reports hydration progress.
func (v *Volume) Hydration() HydrationStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	h := v.hyd
	if h == nil {
		return HydrationStatus{DoneBytes: v.size, TotalBytes: v.size}
	}
	return HydrationStatus{Hydrating: true, DoneBytes: min(h.ndone*v.bs, h.src.Size), TotalBytes: h.src.Size,
		Stalled: h.stalled, Err: h.err, ReadFetched: h.fetched.Load()}
}

// closedChan is a channel that is always closed.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// HydrationChanged returns a channel that is closed when the hydration
// status changes: it stalls for lack of space, resumes, or ends. It is
// closed already for a volume that is not hydrating.
func (v *Volume) HydrationChanged() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.hyd == nil {
		return closedChan
	}
	return v.hyd.changed
}

// WaitHydrated blocks until hydration completes (nil), fails, or ctx ends.
func (v *Volume) WaitHydrated(ctx context.Context) error {
	v.mu.Lock()
	h := v.hyd
	v.mu.Unlock()
	if h == nil {
		return nil
	}
	select {
	case <-h.finished:
		v.mu.Lock()
		defer v.mu.Unlock()
		if h.err != nil {
			return fmt.Errorf("hydrate volume %s: %w", v.id, h.err)
		}
		if v.hyd != nil {
			return fmt.Errorf("hydrate volume %s: %w", v.id, ErrStillHydrate)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startHydrator starts the background hydrator of a restored volume; for
// a volume just restored (fresh), it first reserves the file's space of
// the source's data blocks (preallocate).
func (v *Volume) startHydrator(fresh bool) {
	v.mu.Lock()
	h := v.hyd
	v.mu.Unlock()
	if h == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	v.hydWG.Add(1)
	go func() {
		defer v.hydWG.Done()
		defer close(h.finished)
		defer cancel()
		// Locate the source's chunks ahead of the reads and the
		// hydrator, beside preallocate (both load the index pages
		// through h.cache, each page once).
		h.ahead.Add(1)
		go func() {
			defer h.ahead.Done()
			v.locateAhead(ctx, h)
		}()
		defer func() { cancel(); h.ahead.Wait() }()
		if fresh {
			v.preallocate(ctx, h)
		}
		for {
			err := v.hydrate(ctx, h)
			v.mu.Lock()
			switch {
			case err == nil:
				// A stall ends when a block is hydrated (markHydrated);
				// a retry that had none left to write (they all went
				// into space reserved before the stall, preallocate)
				// ends it here.
				h.stalled, h.err = false, nil
			case errors.Is(err, context.Canceled):
			case errors.Is(err, capacity.ErrNoSpace):
				// The filesystem is full: say so, and try again later
				// (reads are served from the snapshot meanwhile).
				if h.stalled {
					h.err = err
				} else {
					h.setStalledLocked(err)
				}
				v.mu.Unlock()
				if !v.waitRetry(ctx) {
					return
				}
				continue
			default:
				h.err = err
			}
			close(h.changed)
			v.mu.Unlock()
			return
		}
	}()
}

// waitRetry waits the engine's HydrationRetry; false means the hydrator
// was stopped meanwhile.
func (v *Volume) waitRetry(ctx context.Context) bool {
	t := v.e.opts.Clock.NewTimer(v.e.opts.HydrationRetry)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}

// hydrateCheckpointPages is how many index pages the hydrator fills between
// checkpoints (fdatasync + state file).
const hydrateCheckpointPages = 64

// hydrate fills every not-yet-hydrated block from the source snapshot using
// all workers, checkpointing progress, then ends hydration durably.
func (v *Volume) hydrate(ctx context.Context, h *hydration) error {
	e := v.e
	np := int64(len(h.src.Pages))
	// Checkpoints find little to sync. The hydrated blocks stay cached, in
	// the folios of the hydrator's block-sized writes: dropped, the user's
	// reads bring them back in read-ahead's large folios, and every 4 KiB
	// write into one of those costs ext4 a walk of all its blocks
	// (docs/design.md, "Session perf14aw").
	wb := startWriteback(v.f, false)
	defer wb.stop()
	release := e.openIOBufs()
	defer release()
	// While the volume's user is active, one job at a time, with rests
	// between jobs unless the user's reads fetched blocks since the last
	// rest: each such fetch costs the user more than the hydrator's
	// batched work costs (BenchmarkReadMiss), so then its progress is
	// what the user needs. It still gets its minimum share of a core
	// (minShare) however busy the user keeps the cores.
	yield := newYieldGate(e.opts.Clock, &v.fg)
	yield.urgentWhenCounted(&h.fetched)
	for p0 := int64(0); p0 < np; p0 += hydrateCheckpointPages {
		p1 := min(p0+hydrateCheckpointPages, np)
		g, gctx := errgroup.WithContext(ctx)
		type job struct {
			blocks []int64
			ids    []chunk.ID
		}
		jobs := make(chan job, e.opts.Workers)
		g.Go(func() error {
			defer close(jobs)
			// The pages preallocate cached (h.cache): not read again.
			return h.cache.batches(gctx, p0, p1, func(b0 int64, pages [][]chunk.ID) error {
				for i, entries := range pages {
					p := b0 + int64(i)
					var j job
					lo := p * EntriesPerPage
					hi := lo + int64(pageLen(h.srcNB, p))
					for b := lo; b < hi; b++ {
						if entries == nil || entries[b-lo].IsZero() {
							v.markHydrated(b) // holes are already holes in the file
							continue
						}
						if !v.isHydrated(b) {
							j.blocks = append(j.blocks, b)
							j.ids = append(j.ids, entries[b-lo])
						}
					}
					if len(j.ids) == 0 {
						continue
					}
					select {
					case jobs <- j:
					case <-gctx.Done():
						return gctx.Err()
					}
				}
				return nil
			})
		})
		// Each worker hydrates the missing blocks of one page at a time,
		// with one batched read into one of the engine's read buffers
		// (ioBufs); each block is merged under its stripe. They decompress,
		// verify and write on threads of the lowest priority (lowprio): the
		// kernel gives the user's connections a core first.
		for range e.opts.Workers + restoreIODepth {
			lowprio.Go(g, func() error {
				buf := make([]byte, v.bs)
				var j job
				run := func() error { // job j: one job of yield
					if hk := e.hooks.hydrator; hk != nil {
						hk(gctx, v.id)
					}
					if err := gctx.Err(); err != nil {
						return err // stopped: no more writes, no checkpoint
					}
					// The job may have waited at the gate while the
					// user's reads hydrated some of its blocks: those
					// are neither fetched nor decompressed again.
					j.blocks, j.ids = v.stillUnhydrated(j.blocks, j.ids)
					if len(j.ids) == 0 {
						return nil
					}
					// Bulk writes leave the free-space reserve to
					// bookkeeping: below it, hydration stalls.
					if err := e.opts.Space.CheckFor(int64(len(j.ids)) * v.bs); err != nil {
						return err
					}
					rbuf, err := e.getReadBuf(gctx)
					if err != nil {
						return err
					}
					err = v.getSourceInto(gctx, h, j.blocks, j.ids, rbuf, func(i int, data []byte) error {
						return v.hydrateWith(j.blocks[i], j.ids[i], data, buf, wb)
					})
					e.putReadBuf(rbuf)
					if err != nil {
						return fmt.Errorf("hydrate: %w", err)
					}
					return nil
				}
				for j = range jobs {
					if err := yield.do(gctx, run); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return e.noSpace(err, v.id)
		}
		if err := v.persistState(false, true); err != nil {
			return fmt.Errorf("hydrate: checkpoint: %w", e.noSpace(err, v.id))
		}
	}
	// Every block is in the file: end hydration durably, then drop the
	// hydration source from the volume record.
	v.mu.Lock()
	v.hyd = nil
	v.mu.Unlock()
	if err := v.persistState(false, true); err != nil {
		v.mu.Lock()
		v.hyd = h // not ended durably: still hydrating
		v.mu.Unlock()
		return fmt.Errorf("hydrate: finish: %w", e.noSpace(err, v.id))
	}
	h.locs.stopPrefetch() // nothing left to read ahead
	h.locs.waitPrefetch()
	v.mu.Lock()
	base, baseSnap := v.base, v.baseSnap
	v.mu.Unlock()
	if err := v.moveBase(ctx, base, baseSnap); err != nil {
		return fmt.Errorf("hydrate: finish: %w", err)
	}
	return nil
}

// RestoreVolume creates volume newVolumeID from a snapshot and returns it
// open and usable at once: reads of blocks not copied yet are served from
// the chunk store (and hydrate the block), writes to such blocks are merged
// with the snapshot's contents, and a background hydrator fills the file
// with all workers. Progress is in Volume.Hydration; hydration resumes after
// a restart. The new volume's first snapshot is incremental to the source.
func (e *Engine) RestoreVolume(ctx context.Context, snapshotID, newVolumeID string) (*Volume, error) {
	if err := validID(newVolumeID); err != nil {
		return nil, fmt.Errorf("restore volume: %w", err)
	}
	si, err := e.StatSnapshot(ctx, snapshotID)
	if err != nil {
		return nil, fmt.Errorf("restore volume %s: %w", newVolumeID, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.unusedLocked(newVolumeID); err != nil {
		return nil, fmt.Errorf("restore volume %s: %w", newVolumeID, err)
	}
	vr := volumeRecord{ID: newVolumeID, Base: si.Record, BaseSnapshot: si.ID, HydrateFrom: si.Record}
	v, err := e.createVolumeLocked(ctx, newVolumeID, si.Size, vr, nil)
	if err != nil {
		return nil, fmt.Errorf("restore volume %s: %w", newVolumeID, e.noSpace(err, newVolumeID))
	}
	return v, nil
}

// RestoreTo writes the contents of a snapshot to w in parallel, skipping
// holes: w must read as zeros where it is not written (a new or truncated
// file). It writes exactly Size bytes' worth of data blocks.
func (e *Engine) RestoreTo(ctx context.Context, snapshotID string, w io.WriterAt) error {
	_, rec, err := e.loadSnapshot(ctx, snapshotID)
	if err != nil {
		return fmt.Errorf("restore %s: %w", snapshotID, err)
	}
	if err := e.restoreRecord(ctx, rec, w); err != nil {
		return fmt.Errorf("restore %s: %w", snapshotID, err)
	}
	return nil
}

// RestoreToFile restores a snapshot into a new sparse file at path (which
// must not exist) and syncs it. Data goes to the file with direct I/O in
// runs of up to a page's worth of blocks where the file system allows it
// (see restoreFile), so a restore neither copies the disk through the page
// cache nor leaves it there.
func (e *Engine) RestoreToFile(ctx context.Context, snapshotID, path string) error {
	si, rec, err := e.loadSnapshot(ctx, snapshotID)
	if err != nil {
		return fmt.Errorf("restore %s: %w", snapshotID, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("restore %s: %w", snapshotID, err)
	}
	err = f.Truncate(si.Size)
	if err == nil {
		rf := restoreFile{f: f, wb: startWriteback(f, true)} // need not stay cached
		if d, derr := directio.Open(path, os.O_WRONLY); derr == nil {
			rf.direct = d
			rf.sync = directio.StartSyncer(f, directio.SyncEvery)
		}
		err = e.restoreRecord(ctx, rec, rf)
		rf.wb.stop()
		if serr := rf.sync.Stop(); err == nil {
			err = serr
		}
		if hk := e.hooks.restored; hk != nil {
			hk(path, rf.sync.Syncs())
		}
		if rf.direct != nil {
			if cerr := rf.direct.Close(); err == nil {
				err = cerr
			}
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("restore %s to %s: %w", snapshotID, path, err)
	}
	return nil
}

// restoreFile is the io.WriterAt of RestoreToFile: the aligned part of a
// write goes through direct, when the file system gave one, and the rest
// (the end of a partial last block) through the page cache with early
// writeback; the direct part has the file fdatasynced as it goes (sync;
// directio.SyncEvery).
type restoreFile struct {
	f, direct *os.File
	wb        *writeback
	sync      *directio.Syncer // nil without direct
}

func (r restoreFile) WriteAt(p []byte, off int64) (int, error) {
	direct, buffered, err := directio.WriteAt(r.direct, r.f, p, off)
	r.wb.wrote(off, len(p), buffered)
	r.sync.Wrote(direct)
	return direct + buffered, err
}

// allocate reserves the blocks of [off, off+n) of the file before they
// are written (fallocate: unwritten extents, which read as zeros). ext4
// makes a direct write into allocated blocks under the inode's lock
// shared, but a direct write that allocates under it exclusive, for the
// whole write: without allocate, a restore's jobs wrote its file one at a
// time. A file system without fallocate gives errors.ErrUnsupported.
func (r restoreFile) allocate(off, n int64) error { return fileAllocator{r.f}.allocate(off, n) }

// fileAllocator reserves ranges of a file before they are written
// (fallocate, keeping the file's size).
type fileAllocator struct{ f *os.File }

func (a fileAllocator) allocate(off, n int64) error {
	if err := unix.Fallocate(int(a.f.Fd()), unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
		return &os.PathError{Op: "fallocate", Path: a.f.Name(), Err: err}
	}
	return nil
}

// allocator is implemented by restore writers that can reserve the space
// of a range before it is written (restoreFile).
type allocator interface {
	allocate(off, n int64) error
}

var _ allocator = restoreFile{}

// allocFunc is an allocator made of a function.
type allocFunc func(off, n int64) error

func (f allocFunc) allocate(off, n int64) error { return f(off, n) }

// preallocate reserves, before a new restored volume hydrates, the
// blocks of its file that the hydrator will write: every run of the
// source's data blocks, holes left out (allocateData). A write into a
// block not hydrated yet is then a write into allocated (unwritten)
// blocks instead of into a hole: ext4 maps it without a delayed
// allocation of its own, which the user's random writes during hydration
// paid for on every write (docs/design.md, "Session perf14ao"). It is an
// optimisation: where there is not room for all of the runs and the
// engine's free-space reserve (capacity.Monitor.RoomFor), or the file
// system cannot fallocate, or ctx ends, nothing or part is reserved and
// the writes allocate as before. Blocks already
// written are left as they are (fallocate does not change allocated
// blocks), so the volume's contents never depend on it.
func (v *Volume) preallocate(ctx context.Context, h *hydration) {
	var runs []span
	err := h.cache.batches(ctx, 0, int64(len(h.src.Pages)), func(b0 int64, pages [][]chunk.ID) error {
		return allocateData(allocFunc(func(off, n int64) error {
			if k := len(runs) - 1; k >= 0 && runs[k].off+runs[k].n == off {
				runs[k].n += n // a run across a batch's end
			} else {
				runs = append(runs, span{off, n})
			}
			return nil
		}), h.src, b0, pages)
	})
	if err != nil {
		return // stopped, or the hydrator's own reads of the pages say what failed
	}
	var total int64
	for _, r := range runs {
		total += r.n
	}
	if !v.e.opts.Space.RoomFor(total) {
		return
	}
	a := fileAllocator{v.f}
	for _, r := range runs {
		if ctx.Err() != nil || a.allocate(r.off, r.n) != nil {
			return // stopped; unsupported, or no space after all: the writes allocate
		}
	}
}

// span is a byte range [off, off+n) of a file.
type span struct{ off, n int64 }

// allocateData reserves, through a, every run of consecutive data blocks
// of the index pages b0, b0+1, … of rec (pages as loadPageBatches gives
// them): one call per run, holes left out, so the file stays sparse.
func allocateData(a allocator, rec *record, b0 int64, pages [][]chunk.ID) error {
	bs := rec.BlockSize
	run := int64(-1) // first block of the run not allocated yet, or -1
	flush := func(end int64) error {
		if run < 0 {
			return nil
		}
		off := run * bs
		n := min(end*bs, rec.Size) - off
		run = -1
		if err := a.allocate(off, n); err != nil {
			return fmt.Errorf("allocate blocks %d-%d: %w", off/bs, end-1, err)
		}
		return nil
	}
	next := b0 * EntriesPerPage // the block after the last one looked at
	for k, entries := range pages {
		first := (b0 + int64(k)) * EntriesPerPage
		if entries == nil {
			if err := flush(next); err != nil {
				return err
			}
			next = first + EntriesPerPage
			continue
		}
		for i, id := range entries {
			b := first + int64(i)
			switch {
			case id.IsZero():
				if err := flush(b); err != nil {
					return err
				}
			case run < 0:
				run = b
			}
			next = b + 1
		}
	}
	return flush(next)
}

// restoreRecord writes the data blocks of rec to w. Each job restores a
// span of a page (restoreBufBytes): one batched read of the span's chunks,
// decompressed into a span buffer where the blocks go, then one WriteAt
// per run of consecutive data blocks (holes end runs); io.WriterAt allows
// parallel WriteAt calls on non-overlapping ranges. Jobs hold the engine's
// shared buffers (ioBufs), aligned for direct I/O (restoreFile): a read
// buffer from the chunks' lookup to the last one decoded, a span from the
// first chunk decoded to the end of the writes (restoreSpan), so that
// there are twice as many jobs as either pool has buffers, half of them
// able to read while the others write. A w that is an allocator has each
// batch of pages' data blocks allocated before their jobs start
// (allocateData).
func (e *Engine) restoreRecord(ctx context.Context, rec *record, w io.WriterAt) error {
	release := e.openIOBufs()
	defer release()
	workers := 2 * (e.opts.Workers + restoreIODepth)
	bs := rec.BlockSize
	span := int(max(1, min(EntriesPerPage, restoreBufBytes/bs))) // blocks per job
	g, gctx := errgroup.WithContext(ctx)
	type job struct {
		first   int64      // first block
		entries []chunk.ID // of blocks first, first+1, ...
	}
	jobs := make(chan job, workers)
	alloc, _ := w.(allocator)
	g.Go(func() error {
		defer close(jobs)
		return e.loadPageBatches(gctx, rec, 0, int64(len(rec.Pages)), func(b0 int64, pages [][]chunk.ID) error {
			// The batch's data blocks are allocated before any of them
			// is written: once, not between the jobs' writes, since an
			// allocation waits for the file's writes in flight.
			if alloc != nil {
				err := allocateData(alloc, rec, b0, pages)
				if errors.Is(err, errors.ErrUnsupported) {
					alloc = nil // the writes allocate, one at a time
				} else if err != nil {
					return err
				}
			}
			for k, entries := range pages {
				p := b0 + int64(k)
				for i := 0; i < len(entries); i += span {
					select {
					case jobs <- job{p*EntriesPerPage + int64(i), entries[i:min(i+span, len(entries))]}:
					case <-gctx.Done():
						return gctx.Err()
					}
				}
			}
			return nil
		})
	})
	for range workers {
		g.Go(func() error {
			filled := make([]bool, span)
			var ids []chunk.ID
			var slots []int64
			for j := range jobs {
				ids, slots = ids[:0], slots[:0]
				clear(filled)
				for i, id := range j.entries {
					if !id.IsZero() {
						ids = append(ids, id)
						slots = append(slots, int64(i))
					}
				}
				if len(ids) == 0 {
					continue
				}
				if err := e.restoreSpan(gctx, rec, w, j.first, len(j.entries), ids, slots, filled); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// restoreSpan restores the blocks first+slots[i] (i < len(ids)) of a span
// of n blocks of rec, whose chunks are ids, to w: it reads them with one
// of the engine's read buffers into one of its spans (n blocks) and writes
// each run of consecutive blocks with one WriteAt. filled has n entries,
// all false. It takes the read buffer first and the span when the first
// chunk is ready to decode, and gives the read buffer back before it
// writes, the span after (ioBufs); the caller holds the buffers open.
func (e *Engine) restoreSpan(ctx context.Context, rec *record, w io.WriterAt, first int64, n int, ids []chunk.ID, slots []int64, filled []bool) (err error) {
	bs := rec.BlockSize
	if int64(n)*bs > e.spanBytes() {
		return fmt.Errorf("blocks %d-%d: %d-byte blocks do not fit a %d-byte restore buffer: %w", first, first+int64(n)-1, bs, e.spanBytes(), ErrInvalid)
	}
	rbuf, err := e.getReadBuf(ctx)
	if err != nil {
		return err
	}
	var buf []byte // the span, once taken
	defer func() {
		if rbuf != nil {
			e.putReadBuf(rbuf)
		}
		if buf != nil {
			e.putSpanBuf(buf)
		}
	}()
	// span takes the span on the first chunk's arrival.
	span := func() error {
		if buf != nil {
			return nil
		}
		b, err := e.getSpanBuf(ctx)
		if err != nil {
			return err
		}
		buf = b
		return nil
	}
	// block returns the bytes of slot s in buf: a block, or what of the
	// partial last block the snapshot holds.
	block := func(s int64) []byte {
		return buf[s*bs : s*bs+min(bs, rec.Size-(first+s)*bs)]
	}
	err = e.getManyInto(ctx, ids, rbuf, restoreReadAhead, func(i int) []byte {
		if span() != nil {
			return nil // decoded elsewhere; fn reports the error
		}
		return block(slots[i])
	}, func(i int, data []byte) error {
		if err := span(); err != nil {
			return err
		}
		s := slots[i]
		dst := block(s)
		if len(data) > len(dst) {
			return fmt.Errorf("block %d: chunk %s is %d bytes, larger than the block: %w", first+s, ids[i].Short(), len(data), ErrCorrupt)
		}
		if len(data) == 0 || &data[0] != &dst[0] { // else decompressed in place
			copy(dst, data)
		}
		clear(dst[len(data):])
		filled[s] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("blocks %d-%d: %w", first, first+int64(n)-1, err)
	}
	// Every chunk is decoded: the read buffer goes to a job that reads
	// while this one writes.
	e.putReadBuf(rbuf)
	rbuf = nil
	for s := 0; s < n; {
		if !filled[s] {
			s++
			continue
		}
		end := s
		for end < n && filled[end] {
			end++
		}
		if err := ctx.Err(); err != nil {
			return err // cancelled, or another worker failed
		}
		off := (first + int64(s)) * bs
		m := min(int64(end-s)*bs, rec.Size-off)
		if _, err := w.WriteAt(buf[int64(s)*bs:int64(s)*bs+m], off); err != nil {
			return fmt.Errorf("write blocks %d-%d: %w", first+int64(s), first+int64(end)-1, err)
		}
		s = end
	}
	return nil
}

// StalledHydrations counts the open volumes whose hydration waits for
// space on the data filesystem.
func (e *Engine) StalledHydrations() int {
	e.mu.Lock()
	vols := make([]*Volume, 0, len(e.vols))
	for _, v := range e.vols {
		vols = append(vols, v)
	}
	e.mu.Unlock()
	n := 0
	for _, v := range vols {
		if v.Hydration().Stalled {
			n++
		}
	}
	return n
}
