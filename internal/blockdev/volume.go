package blockdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"coffer/internal/capacity"
	"coffer/internal/chunk"
)

// stripeCount is the number of per-block lock stripes of a volume. A write,
// a snapshot's read of a block and the hydration of a block hold the stripe
// of that block, and only for that block's I/O.
const stripeCount = 256

// Volume is a live block device: a sparse file plus change tracking. It
// provides what an NBD or HTTP export needs (Size, ReadAt, WriteAt, Flush,
// Trim, WriteZeroes, Extents). All methods are safe for concurrent use;
// concurrent reads and writes of the same bytes have no defined order.
type Volume struct {
	e   *Engine
	id  string
	dir string
	f   *os.File
	bs  int64

	stripes   [stripeCount]sync.Mutex
	snapMu    sync.Mutex // one snapshot at a time; Close waits for it
	persistMu sync.Mutex // serializes state-file writes and Trim
	recMu     sync.Mutex // serializes writes of the volume record

	mu             sync.Mutex
	size           int64
	dirty          *bitset // blocks changed since the last snapshot's swap
	persistedDirty *bitset // the dirty bitmap in the state file
	snap           *snapState
	base           chunk.ID // record the next snapshot is incremental to
	baseSnap       string
	hyd            *hydration
	hydDirty       bool // hydrated set changed since the last persist
	closed         bool
	hydWG          sync.WaitGroup
	fg             foreground // the user's reads and writes, for background work to give way

	// alloc holds every block that may have data in the data file; the
	// others are holes. It is a superset: set before any write into the
	// file (fileWrite; a user's write sets it with its dirty bits),
	// cleared after a block is punched (punch), and built at open with
	// one SEEK_DATA walk. Sparse reads take their holes
	// from it: asking the file system (SEEK_DATA/SEEK_HOLE) costs dozens
	// of seeks per 1 MiB read of pages written since the last writeback,
	// which ext4 reports one page at a time (docs/design.md, perf14m).
	// Guarded by mu.
	alloc *bitset
}

// Extent is a byte range of a volume or snapshot and whether it is a hole
// (reads as zeros, not allocated).
type Extent struct {
	Offset int64
	Length int64
	Hole   bool
}

func (e *Engine) volDir(id string) string { return filepath.Join(e.dir, "volumes", id) }

// CreateVolume creates an empty (all-zero, sparse) volume of size bytes and
// returns it open. size must be a positive multiple of 512.
func (e *Engine) CreateVolume(ctx context.Context, id string, size int64) (*Volume, error) {
	if err := validID(id); err != nil {
		return nil, fmt.Errorf("create volume: %w", err)
	}
	if size <= 0 || size%512 != 0 || size > maxVolumeSize {
		return nil, fmt.Errorf("create volume %s: size %d: %w", id, size, ErrInvalid)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.unusedLocked(id); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", id, err)
	}
	v, err := e.createVolumeLocked(ctx, id, size, volumeRecord{ID: id}, nil)
	if err != nil {
		return nil, fmt.Errorf("create volume %s: %w", id, e.noSpace(err, id))
	}
	return v, nil
}

// unusedLocked refuses a new volume's ID that an open volume or a deletion
// in progress holds; e.mu is held.
func (e *Engine) unusedLocked(id string) error {
	if _, ok := e.vols[id]; ok {
		return ErrExists
	}
	if e.deleting[id] {
		return fmt.Errorf("%w: %w", ErrExists, ErrDeleting)
	}
	return nil
}

// createVolumeLocked makes the directory, data file and state file of a new
// volume, writes its volume record and registers it open. e.mu is held.
func (e *Engine) createVolumeLocked(ctx context.Context, id string, size int64, vr volumeRecord, hydrated *bitset) (*Volume, error) {
	dir := e.volDir(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, ErrExists
		}
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	f, err := os.OpenFile(filepath.Join(dir, "data"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	err = e.truncate(f, size)
	if err == nil {
		err = e.sync(f)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	nb := (size + e.bs - 1) / e.bs
	v := &Volume{e: e, id: id, dir: dir, f: f, bs: e.bs, size: size,
		dirty: newBitset(nb), persistedDirty: newBitset(nb), alloc: newBitset(nb),
		base: vr.Base, baseSnap: vr.BaseSnapshot}
	if !vr.HydrateFrom.IsZero() {
		src, err := e.loadRecord(ctx, vr.HydrateFrom)
		if err != nil {
			f.Close()
			return nil, err
		}
		v.hyd = newHydration(e, vr.HydrateFrom, src, hydrated, nil)
	}
	if err := v.persistState(false, false); err != nil {
		f.Close()
		return nil, err
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		f.Close()
		return nil, err
	}
	if err := e.putVolumeRecord(ctx, vr); err != nil {
		f.Close()
		return nil, err
	}
	ok = true
	e.vols[id] = v
	v.startHydrator(true)
	return v, nil
}

// OpenVolume opens an existing volume, or returns it if it is already open.
// After an unclean stop (no clean-shutdown marker) every allocated block
// counts as dirty, and a restored volume resumes hydration.
func (e *Engine) OpenVolume(ctx context.Context, id string) (*Volume, error) {
	if err := validID(id); err != nil {
		return nil, fmt.Errorf("open volume: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if v, ok := e.vols[id]; ok {
		return v, nil
	}
	if e.deleting[id] {
		return nil, fmt.Errorf("open volume %s: %w: %w", id, ErrNotFound, ErrDeleting)
	}
	v, err := e.openVolumeLocked(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("open volume %s: %w", id, err)
	}
	return v, nil
}

func (e *Engine) openVolumeLocked(ctx context.Context, id string) (*Volume, error) {
	dir := e.volDir(id)
	sb, err := os.ReadFile(filepath.Join(dir, "state"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	st, err := decodeState(sb)
	if err != nil {
		return nil, err
	}
	if st.BlockSize != e.bs {
		return nil, fmt.Errorf("state has block size %d, engine %d: %w", st.BlockSize, e.bs, ErrBlockSize)
	}
	f, err := os.OpenFile(filepath.Join(dir, "data"), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	size := fi.Size()
	nb := (size + e.bs - 1) / e.bs
	v := &Volume{e: e, id: id, dir: dir, f: f, bs: e.bs, size: size}
	v.dirty = st.Dirty
	v.dirty.grow(nb)
	v.alloc = newBitset(nb)
	if err := allocatedBlocks(f, size, e.bs, v.alloc); err != nil {
		f.Close()
		return nil, err
	}
	if !st.Clean {
		// Unclean stop: the persisted bitmap is a superset of the blocks
		// trimmed since the last snapshot (Trim persists before punching);
		// every allocated block may have been written.
		v.dirty.or(v.alloc)
	}
	v.persistedDirty = newBitset(nb)
	vr, err := e.getVolumeRecord(ctx, id)
	switch {
	case err == nil:
		v.base, v.baseSnap = vr.Base, vr.BaseSnapshot
		if !st.Hydrating && !vr.HydrateFrom.IsZero() {
			// Hydration finished but its end was not recorded.
			vr.HydrateFrom = chunk.ID{}
			if err := e.putVolumeRecord(ctx, vr); err != nil {
				f.Close()
				return nil, err
			}
		}
	case errors.Is(err, ErrNotFound):
		vr = volumeRecord{ID: id, HydrateFrom: st.HydrateFrom}
		if err := e.putVolumeRecord(ctx, vr); err != nil {
			f.Close()
			return nil, err
		}
	default:
		f.Close()
		return nil, err
	}
	if st.Hydrating {
		src, err := e.loadRecord(ctx, st.HydrateFrom)
		if err != nil {
			f.Close()
			return nil, err
		}
		v.hyd = newHydration(e, st.HydrateFrom, src, st.Hydrated, st.Written)
	}
	// Remove the clean marker (and record the recovered dirty set) before
	// any write is accepted.
	if err := v.persistState(false, false); err != nil {
		f.Close()
		return nil, err
	}
	e.vols[id] = v
	v.startHydrator(false)
	return v, nil
}

// allocatedBlocks sets in s every block that has allocated data in f.
func allocatedBlocks(f *os.File, size, bs int64, s *bitset) error {
	for off := int64(0); off < size; {
		d, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		h, err := f.Seek(d, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		for b := d / bs; b*bs < h && b < s.n; b++ {
			s.set(b)
		}
		off = h
	}
	return nil
}

// DeleteVolume closes and deletes a volume and its volume record. Its
// snapshots stay. Close waits for the snapshot and writes in progress; the
// handles still held fail with ErrClosed. While the deletion runs the
// volume is neither opened (ErrNotFound and ErrDeleting), created
// (ErrExists and ErrDeleting) nor deleted again (ErrDeleting).
func (e *Engine) DeleteVolume(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return fmt.Errorf("delete volume: %w", err)
	}
	e.mu.Lock()
	if e.deleting[id] {
		e.mu.Unlock()
		return fmt.Errorf("delete volume %s: %w", id, ErrDeleting)
	}
	e.deleting[id] = true
	v := e.vols[id]
	hook := e.hooks.deleting
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.deleting, id)
		e.mu.Unlock()
	}()
	if v != nil {
		if err := v.Close(); err != nil {
			return fmt.Errorf("delete volume %s: %w", id, err)
		}
	}
	if hook != nil {
		hook(id)
	}
	dir := e.volDir(id)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete volume %s: %w", id, ErrNotFound)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("delete volume %s: %w", id, err)
	}
	if err := e.deleteVolumeRecord(ctx, id); err != nil {
		return fmt.Errorf("delete volume %s: %w", id, err)
	}
	return nil
}

// ID returns the volume's ID.
func (v *Volume) ID() string { return v.id }

// BlockSize returns the volume's block size.
func (v *Volume) BlockSize() int64 { return v.bs }

// Size returns the volume size in bytes.
func (v *Volume) Size() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.size
}

// DirtyBlocks returns how many blocks changed since the last snapshot.
func (v *Volume) DirtyBlocks() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.dirty.count()
}

func (v *Volume) stripe(b int64) *sync.Mutex { return &v.stripes[b%stripeCount] }

// blockLen is the length of block b in a volume of the given size.
func (v *Volume) blockLen(b, size int64) int64 { return min(v.bs, size-b*v.bs) }

// ReadAt implements io.ReaderAt. Reads past Size return io.EOF.
func (v *Volume) ReadAt(p []byte, off int64) (int, error) {
	return v.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext is ReadAt with a context, used when a read may have to fetch
// not-yet-hydrated blocks from the chunk store.
func (v *Volume) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	return v.readAt(ctx, p, off, nil)
}

// ReadSparseAt is ReadAtContext for a reader that sends zeroes without
// their bytes (an NBD structured reply's holes): the parts of the range
// in blocks that hold no data (never written since they were last holes)
// are neither read nor written in p but passed to hole (in increasing
// order); they read as zeroes. A large read of a sparse volume then costs
// no copy of its zeroes and no scan for them, and each run of blocks that
// may hold data is one read. While the volume hydrates it reads
// everything (a hole there may be a block still to fetch).
func (v *Volume) ReadSparseAt(ctx context.Context, p []byte, off int64, hole func(off, n int64)) (int, error) {
	return v.readAt(ctx, p, off, hole)
}

func (v *Volume) readAt(ctx context.Context, p []byte, off int64, hole func(off, n int64)) (int, error) {
	v.mu.Lock()
	closed, size, hyd := v.closed, v.size, v.hyd
	v.mu.Unlock()
	if closed {
		return 0, fmt.Errorf("read volume %s: %w", v.id, ErrClosed)
	}
	if off < 0 {
		return 0, fmt.Errorf("read volume %s at %d: %w", v.id, off, ErrOutOfRange)
	}
	if off >= size {
		return 0, io.EOF
	}
	n := int64(len(p))
	var eof error
	if off+n > size {
		n, eof = size-off, io.EOF
	}
	v.fg.touch(v.e.opts.Clock.Now())
	// served lists the blocks copied into p from what a hydrate-on-read
	// fetched (or, with no space to keep them, read from the source
	// snapshot): the file need not be read for them.
	var served []int64
	if hyd != nil {
		// Hydrate-on-read every block of the range not yet hydrated.
		var buf []byte
		for b := off / v.bs; b*v.bs < off+n; b++ {
			if v.isHydrated(b) {
				continue
			}
			if buf == nil {
				bp := v.e.getBlock()
				defer v.e.putBlock(bp)
				buf = *bp
			}
			// The page's work (its index page, where its chunks lie)
			// before the block's stripe.
			if err := v.locateMiss(ctx, hyd, b); err != nil {
				return 0, fmt.Errorf("read volume %s: %w", v.id, err)
			}
			l := v.stripe(b)
			l.Lock()
			v.mu.Lock()
			stalled := v.hyd != nil && v.hyd.stalled
			v.mu.Unlock()
			var err error
			filled := false
			if !stalled {
				filled, err = v.hydrateLocked(ctx, b, buf)
			}
			if stalled || errors.Is(v.e.noSpace(err, v.id), capacity.ErrNoSpace) {
				// The filesystem is full (or hydration waits for
				// space): read the block from the snapshot without
				// keeping it.
				err = v.readBlockRaw(ctx, b, buf)
				filled = err == nil
			}
			if filled {
				lo := max(off, b*v.bs)
				hi := min(off+n, (b+1)*v.bs)
				copy(p[lo-off:hi-off], buf[lo-b*v.bs:])
				served = append(served, b)
			}
			l.Unlock()
			if err != nil {
				return 0, fmt.Errorf("read volume %s: %w", v.id, err)
			}
		}
	}
	if hole != nil && hyd == nil {
		if err := v.preadData(p[:n], off, hole); err != nil {
			return 0, fmt.Errorf("read volume %s: %w", v.id, err)
		}
		return int(n), eof
	}
	if err := v.preadExcept(p[:n], off, served); err != nil {
		return 0, fmt.Errorf("read volume %s: %w", v.id, err)
	}
	return int(n), eof
}

// preadData fills the parts of p, read at off, that may be data in the
// data file (allocRuns), and passes the others, holes, to hole.
func (v *Volume) preadData(p []byte, off int64, hole func(off, n int64)) error {
	v.mu.Lock()
	exts := v.allocRunsLocked(off, int64(len(p)))
	v.mu.Unlock()
	for _, x := range exts {
		if x.Hole {
			hole(x.Offset, x.Length)
			continue
		}
		if err := v.pread(p[x.Offset-off:x.Offset-off+x.Length], x.Offset); err != nil {
			return err
		}
	}
	return nil
}

// preadExcept fills p from the data file at off, except the parts of p
// that belong to the blocks listed in skip (in increasing order).
func (v *Volume) preadExcept(p []byte, off int64, skip []int64) error {
	end := off + int64(len(p))
	for pos := off; pos < end; {
		stop := end
		if len(skip) > 0 {
			stop = max(pos, skip[0]*v.bs)
		}
		if stop > pos {
			if err := v.pread(p[pos-off:stop-off], pos); err != nil {
				return err
			}
		}
		if len(skip) == 0 {
			break
		}
		pos = min(end, (skip[0]+1)*v.bs)
		skip = skip[1:]
	}
	return nil
}

// pread fills p from the data file, zero-filling past its end.
func (v *Volume) pread(p []byte, off int64) error {
	n, err := v.f.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	clear(p[n:])
	return nil
}

// WriteAt implements io.WriterAt at any alignment. Writing past Size fails
// with ErrOutOfRange (use Resize).
func (v *Volume) WriteAt(p []byte, off int64) (int, error) {
	return v.WriteAtContext(context.Background(), p, off)
}

// WriteAtContext is WriteAt with a context (a partial write to a block not
// yet hydrated first fetches the block from the chunk store).
func (v *Volume) WriteAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if err := v.modify(ctx, off, int64(len(p)), p, false); err != nil {
		return 0, fmt.Errorf("write volume %s: %w", v.id, v.e.noSpace(err, v.id))
	}
	return len(p), nil
}

// errWouldWait is what TryWriteAt's write of a block meets when it would
// have to wait.
var errWouldWait = errors.New("would wait")

// TryWriteAt writes p at off if it can do so at once: no other write of
// its blocks' stripes is under way, the pieces a running snapshot must
// keep first (copy-before-write) are in the page cache, and no block not
// hydrated yet needs merging with its source (a write of whole units
// does not) or a copy for a snapshot.
// Otherwise it writes nothing and reports !ok (use WriteAt). A failed
// write is reported with ok and its error. The data goes into the page
// cache like WriteAt's, where it may briefly wait for writeback.
func (v *Volume) TryWriteAt(p []byte, off int64) (ok bool, err error) {
	n := int64(len(p))
	if n == 0 || off < 0 {
		return false, nil
	}
	var scratch *[]byte // taken only to copy before write
	defer func() {
		if scratch != nil {
			v.e.putBlock(scratch)
		}
	}()
	b := off / v.bs
	switch {
	case (off+n-1)/v.bs == b:
		lk := v.stripe(b)
		if !lk.TryLock() {
			return false, nil
		}
		err = v.modifyBlock(context.Background(), b, off%v.bs, n, p, false, &scratch, &[2]int64{off, n}, true)
		lk.Unlock()
		if errors.Is(err, errWouldWait) {
			return false, nil
		}
	case (off+n-1)/v.bs-b < stripeCount:
		// Several blocks: one pwrite under all their stripes, as WriteAt.
		done, werr := v.writeSpan(context.Background(), off, p, &scratch, true)
		if !done {
			return false, nil
		}
		err = werr
	default:
		return false, nil
	}
	v.fg.touch(v.e.opts.Clock.Now())
	if err != nil {
		return true, fmt.Errorf("write volume %s: %w", v.id, v.e.noSpace(err, v.id))
	}
	return true, nil
}

// TryReadAt reads len(p) bytes at off if it can do so at once: the range
// lies within the volume, all its blocks are hydrated, and all of it is
// in the page cache (preadv2 with RWF_NOWAIT). Otherwise it reports !ok,
// and p holds nothing defined (use ReadAt).
func (v *Volume) TryReadAt(p []byte, off int64) (n int, ok bool, err error) {
	end := off + int64(len(p))
	v.mu.Lock()
	ready := !v.closed && off >= 0 && off <= v.size && int64(len(p)) <= v.size-off
	for b := off / v.bs; ready && v.hyd != nil && b*v.bs < end; b++ {
		ready = v.hydratedLocked(b)
	}
	v.mu.Unlock()
	if !ready || !v.preadNowait(p, off) {
		return 0, false, nil
	}
	v.fg.touch(v.e.opts.Clock.Now())
	return len(p), true, nil
}

// TryReadSparseAt is ReadSparseAt if it can be done at once, as
// TryReadAt: the range lies within the volume, the volume is not
// hydrating, and all of its blocks that may hold data are in the page
// cache. Otherwise it reports !ok, and p and the holes passed so far mean
// nothing.
func (v *Volume) TryReadSparseAt(p []byte, off int64, hole func(off, n int64)) (n int, ok bool, err error) {
	v.mu.Lock()
	ready := !v.closed && v.hyd == nil && off >= 0 && off <= v.size && int64(len(p)) <= v.size-off
	var exts []Extent
	if ready {
		exts = v.allocRunsLocked(off, int64(len(p)))
	}
	v.mu.Unlock()
	if !ready {
		return 0, false, nil
	}
	for _, x := range exts {
		if x.Hole {
			hole(x.Offset, x.Length)
		} else if !v.preadNowait(p[x.Offset-off:x.Offset-off+x.Length], x.Offset) {
			return 0, false, nil
		}
	}
	v.fg.touch(v.e.opts.Clock.Now())
	return len(p), true, nil
}

// allocRunsLocked cuts [off, off+n) into runs of blocks that may hold
// data (alloc), to read with one call each, and holes, which read as
// zeroes; it asks the file system nothing. v.mu is held.
func (v *Volume) allocRunsLocked(off, n int64) []Extent {
	var out []Extent
	end := off + n
	for pos := off; pos < end; {
		b := pos / v.bs
		data := v.alloc.has(b)
		for b++; b*v.bs < end && v.alloc.has(b) == data; b++ {
		}
		next := min(b*v.bs, end)
		out = append(out, Extent{Offset: pos, Length: next - pos, Hole: !data})
		pos = next
	}
	return out
}

// preadNowait fills p from the data file at off if every page is in the
// page cache (preadv2 with RWF_NOWAIT) and reports whether it did.
func (v *Volume) preadNowait(p []byte, off int64) bool {
	rc, err := v.f.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var rerr error
	// Control keeps the descriptor open for the call.
	if cerr := rc.Control(func(fd uintptr) {
		n, rerr = unix.Preadv2(int(fd), [][]byte{p}, off, unix.RWF_NOWAIT)
	}); cerr != nil || rerr != nil || n != len(p) {
		// EAGAIN: some page is not cached; any error is ReadAt's to report.
		return false
	}
	return true
}

// WriteZeroes makes [off, off+n) read as zeros, punching holes for whole
// blocks (they are then not allocated) and writing zeros for partial ones.
func (v *Volume) WriteZeroes(ctx context.Context, off, n int64) error {
	if err := v.zero(ctx, off, n); err != nil {
		return fmt.Errorf("write zeroes to volume %s: %w", v.id, v.e.noSpace(err, v.id))
	}
	return nil
}

// Trim discards [off, off+n). Coffer guarantees trimmed ranges read as
// zeros afterwards (it is WriteZeroes).
func (v *Volume) Trim(ctx context.Context, off, n int64) error {
	if err := v.zero(ctx, off, n); err != nil {
		return fmt.Errorf("trim volume %s: %w", v.id, v.e.noSpace(err, v.id))
	}
	return nil
}

func (v *Volume) zero(ctx context.Context, off, n int64) error {
	// Write-ahead: a punched block becomes a hole, which crash recovery
	// (allocated blocks ⇒ dirty) cannot see, so the blocks' dirty bits must
	// be in the state file before the punch.
	v.persistMu.Lock()
	defer v.persistMu.Unlock()
	v.mu.Lock()
	if err := v.checkRange(off, n); err != nil {
		v.mu.Unlock()
		return err
	}
	size := v.size
	lo, hi := off/v.bs, (off+n+v.bs-1)/v.bs
	for b := lo; b < hi; b++ {
		v.dirty.set(b)
	}
	covered := v.persistedDirty.covers(lo, hi) || v.unchangedHolesLocked(lo, hi)
	v.mu.Unlock()
	if !covered {
		if err := v.persistStateLocked(false, false); err != nil {
			return err
		}
	}
	// Whole blocks are punched a run at a time; the partial blocks at
	// either end are written with zeroes.
	end := off + n
	first := (off + v.bs - 1) / v.bs // first whole block
	last := end / v.bs               // blocks before last are whole...
	if end == size {
		last = hi // ...and so is a short final block that ends the volume
	}
	if first >= last {
		return v.modify(ctx, off, n, nil, true)
	}
	if off < first*v.bs {
		if err := v.modify(ctx, off, first*v.bs-off, nil, true); err != nil {
			return err
		}
	}
	for b := first; b < last; b += stripeCount {
		if err := v.punchBlocks(ctx, b, min(b+stripeCount, last)); err != nil {
			return err
		}
	}
	if tail := last * v.bs; tail < end {
		return v.modify(ctx, tail, end-tail, nil, true)
	}
	return nil
}

// unchangedHolesLocked reports whether every block of [lo, hi) whose
// dirty bit is not in the state file is a hole of the data file (not in
// alloc) on a volume that does not hydrate: such a block has read as
// zeroes since the volume's base (a block becomes a hole only by a punch,
// which first puts its dirty bit in the state file, where it stays until
// the next snapshot commits), so zeroing it changes nothing that crash
// recovery must find, and it needs no write-ahead save of the state
// file. nbdcopy zeroes every hole of its source on a new disk this way:
// a state save (two fsyncs) per WRITE_ZEROES made 520-530 fsyncs per copy
// of coffer bench nbd's 4 GiB image, 54-76 without them (docs/design.md,
// "Session perf14ag"). v.mu is held.
func (v *Volume) unchangedHolesLocked(lo, hi int64) bool {
	if v.hyd != nil {
		return false // a hole may be a block still to fetch
	}
	for b := lo; b < hi; b++ {
		if v.alloc.has(b) && !v.persistedDirty.has(b) {
			return false
		}
	}
	return true
}

// punchBlocks deallocates the whole blocks [b0, b1) (at most stripeCount
// of them, so each holds its own stripe) with one punch, under all their
// stripes, after copy-before-write of those a running snapshot still
// needs. Their dirty bits are set and persisted already (zero).
func (v *Volume) punchBlocks(ctx context.Context, b0, b1 int64) error {
	defer v.lockStripes(b0, b1)()
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return ErrClosed
	}
	s := v.snap
	var copies []cbwNeed
	var hydrate []int64
	for b := b0; b < b1; b++ {
		if need := s.piecesOf(b, 0, v.bs, v.bs); need != 0 {
			copies = append(copies, cbwNeed{b, need})
		}
		if v.hyd != nil && !v.hydratedLocked(b) {
			hydrate = append(hydrate, b)
		}
		v.dirty.set(b)
	}
	end := min(b1*v.bs, v.size)
	v.mu.Unlock()
	if len(copies) > 0 {
		var scratch *[]byte
		defer func() {
			if scratch != nil {
				v.e.putBlock(scratch)
			}
		}()
		for _, c := range copies {
			// Copy-before-write: keep the contents the snapshot must see.
			if _, err := v.cbwCopy(ctx, s, c.b, c.pieces, &scratch, false); err != nil {
				return err
			}
		}
	}
	if err := v.punch(b0*v.bs, end-b0*v.bs); err != nil {
		return err
	}
	for _, b := range hydrate {
		v.markHydrated(b) // a hole needs nothing from the source
	}
	return nil
}

// lockStripes locks the stripes of blocks [b0, b1) (at most stripeCount
// blocks) and returns their unlock. The stripes are taken in stripe order,
// the one order of every path that holds more than one, so two such paths
// cannot deadlock.
func (v *Volume) lockStripes(b0, b1 int64) (unlock func()) {
	unlock, _ = v.takeStripes(b0, b1, false)
	return unlock
}

// takeStripes locks the stripes of blocks [b0, b1) in stripe order; with
// try it takes none and reports !ok when one of them is held.
func (v *Volume) takeStripes(b0, b1 int64, try bool) (unlock func(), ok bool) {
	lo, hi := int(b0%stripeCount), int((b1-1)%stripeCount)
	wraps := b1-b0 == stripeCount || hi < lo // [lo, end) and [0, hi]
	held := func(i int) bool {
		if wraps {
			return i >= lo || i <= hi
		}
		return i >= lo && i <= hi
	}
	release := func(upto int) {
		for i := range upto {
			if held(i) {
				v.stripes[i].Unlock()
			}
		}
	}
	for i := range v.stripes {
		if !held(i) {
			continue
		}
		if !try {
			v.stripes[i].Lock()
		} else if !v.stripes[i].TryLock() {
			release(i)
			return nil, false
		}
	}
	return func() { release(len(v.stripes)) }, true
}

// checkRange validates [off, off+n) against the size; v.mu is held.
func (v *Volume) checkRange(off, n int64) error {
	if v.closed {
		return ErrClosed
	}
	if off < 0 || n < 0 || off+n > v.size {
		return fmt.Errorf("range [%d, %d) outside size %d: %w", off, off+n, v.size, ErrOutOfRange)
	}
	return nil
}

// modify writes p (or zeros, if zero) to [off, off+n), block by block, each
// under its stripe lock, doing copy-before-write for blocks a running
// snapshot has not read yet and hydrating not-yet-hydrated blocks that are
// partially written. The range is checked with the first block's
// bookkeeping, before anything is written.
func (v *Volume) modify(ctx context.Context, off, n int64, p []byte, zero bool) error {
	v.fg.touch(v.e.opts.Clock.Now())
	if n == 0 {
		v.mu.Lock()
		err := v.checkRange(off, n)
		v.mu.Unlock()
		return err
	}
	var scratch *[]byte // one block, from the engine's pool when needed
	defer func() {
		if scratch != nil {
			v.e.putBlock(scratch)
		}
	}()
	if !zero && off%v.bs+n > v.bs && (n+v.bs-1)/v.bs <= stripeCount {
		if done, err := v.writeSpan(ctx, off, p, &scratch, false); done {
			return err
		}
	}
	for pos := int64(0); pos < n; {
		b := (off + pos) / v.bs
		bOff := (off + pos) % v.bs
		l := min(v.bs-bOff, n-pos)
		var piece []byte
		if !zero {
			piece = p[pos : pos+l]
		}
		var check *[2]int64
		if pos == 0 {
			check = &[2]int64{off, n}
		}
		lk := v.stripe(b)
		lk.Lock()
		err := v.modifyBlock(ctx, b, bOff, l, piece, zero, &scratch, check, false)
		lk.Unlock()
		if err != nil {
			return err
		}
		pos += l
	}
	return nil
}

// writeSpan writes p, which spans several blocks, at off with one pwrite
// under the stripes of all its blocks, after copy-before-write of the
// blocks a running snapshot still needs. It reports !done, having changed
// nothing, when a block that p covers only in part is not hydrated yet
// and p covers no whole units of it (unitsOf): that block must be merged
// with its source (modify's block-by-block path). A write of many blocks costs the kernel less as one call
// (page-cache folios up to the write's size) and takes each lock once.
//
// With nowait it also reports !done, having written nothing, when one of
// the stripes is held or a piece to copy before write is not in the page
// cache or must come from the hydration source (TryWriteAt); the pieces
// it kept meanwhile stay kept, which changes nothing a snapshot reads.
func (v *Volume) writeSpan(ctx context.Context, off int64, p []byte, scratch **[]byte, nowait bool) (done bool, err error) {
	n := int64(len(p))
	b0, b1 := off/v.bs, (off+n+v.bs-1)/v.bs
	unlock, ok := v.takeStripes(b0, b1, nowait)
	if !ok {
		return false, nil
	}
	defer unlock()
	v.mu.Lock()
	if err := v.checkRange(off, n); err != nil {
		v.mu.Unlock()
		return true, err
	}
	s, hyd := v.snap, v.hyd
	var copies []cbwNeed
	var edges [2]uint64 // units written of b0 and b1-1, if partial and not hydrated
	for b := b0; b < b1; b++ {
		bOff, blen := max(off-b*v.bs, 0), v.blockLen(b, v.size)
		if l := min(off+n-b*v.bs, blen) - bOff; hyd != nil && l < blen && !v.hydratedLocked(b) {
			units, whole := v.unitsOf(bOff, l, blen)
			if !whole {
				v.mu.Unlock()
				return false, nil // a partial block to merge with its source
			}
			edges[min(b-b0, 1)] = units
		}
		if need := s.piecesOf(b, bOff, off+n-b*v.bs-bOff, v.bs); need != 0 {
			copies = append(copies, cbwNeed{b, need})
		}
	}
	for b := b0; b < b1; b++ {
		v.dirty.set(b)
		v.alloc.set(b) // before the write (writeFile)
	}
	v.mu.Unlock()
	for _, c := range copies {
		// Copy-before-write: keep the contents the snapshot must see.
		if _, err := v.cbwCopy(ctx, s, c.b, c.pieces, scratch, nowait); errors.Is(err, errWouldWait) {
			return false, nil
		} else if err != nil {
			return true, err
		}
	}
	if err := v.writeFile(p, off); err != nil {
		return true, err
	}
	if hyd != nil {
		for b := b0; b < b1; b++ {
			switch {
			case b == b0 && edges[0] != 0:
				v.wroteUnits(b, edges[0], v.blockLen(b, v.Size()))
			case b == b1-1 && edges[1] != 0:
				v.wroteUnits(b, edges[1], v.blockLen(b, v.Size()))
			default:
				v.markHydrated(b) // written whole (or to the volume's end)
			}
		}
	}
	return true, nil
}

// modifyBlock changes [bOff, bOff+l) of block b. The stripe of b is held.
// scratch is a one-block buffer taken from the pool when first needed;
// check, if set, is the whole range to validate first. With nowait, a
// block that needs copy-before-write or hydration is left alone
// (errWouldWait).
func (v *Volume) modifyBlock(ctx context.Context, b, bOff, l int64, piece []byte, zero bool, scratch **[]byte, check *[2]int64, nowait bool) error {
	v.mu.Lock()
	if check != nil {
		if err := v.checkRange(check[0], check[1]); err != nil {
			v.mu.Unlock()
			return err
		}
	} else if v.closed {
		v.mu.Unlock()
		return ErrClosed
	}
	s := v.snap
	need := s.piecesOf(b, bOff, l, v.bs)
	hyd := v.hyd
	needHyd := hyd != nil && !v.hydratedLocked(b)
	blen := v.blockLen(b, v.size)
	full := bOff == 0 && l == blen
	// A partial write of a block not hydrated yet is merged with the
	// block's source (fetched) unless it is made of whole units, which
	// the file keeps as they are (wroteUnits).
	var units uint64
	merge := false
	if needHyd && !full {
		var whole bool
		units, whole = v.unitsOf(bOff, l, blen)
		merge = !whole
	}
	if nowait && merge {
		v.mu.Unlock()
		return errWouldWait
	}
	v.dirty.set(b)
	if !zero || !full {
		v.alloc.set(b) // the block is written, not punched (writeFile)
	}
	v.mu.Unlock()

	haveRaw := false // buf holds the block's current contents
	if need != 0 {
		// Copy-before-write: keep the pieces the snapshot must see.
		var err error
		if haveRaw, err = v.cbwCopy(ctx, s, b, need, scratch, nowait); err != nil {
			return err
		}
	}
	var buf []byte
	if merge || (zero && !full) {
		if *scratch == nil {
			*scratch = v.e.getBlock()
		}
		buf = **scratch
	}
	if merge && !haveRaw {
		if err := v.readBlockRaw(ctx, b, buf); err != nil {
			return err
		}
	}
	pos := b * v.bs
	var err error
	switch {
	case merge:
		// buf holds the source block: merge the change and write the
		// whole block, hydrating it.
		if zero {
			clear(buf[bOff : bOff+l])
		} else {
			copy(buf[bOff:], piece)
		}
		err = v.writeFile(buf[:blen], pos)
	case zero && full:
		err = v.punch(pos, blen)
	case zero:
		clear(buf[:l])
		err = v.writeFile(buf[:l], pos+bOff)
	default:
		err = v.writeFile(piece, pos+bOff)
	}
	if err != nil {
		return err
	}
	switch {
	case needHyd && (full || merge):
		v.markHydrated(b)
	case needHyd:
		v.wroteUnits(b, units, blen)
	}
	return nil
}

// writeFile writes p at off of the data file: the one place a write's
// data (or a partial block of zeroes) goes into it. The caller has marked
// p's blocks in alloc already, under the same hold of v.mu that marked
// them dirty: one lock per write, not two (fileWrite takes it again).
func (v *Volume) writeFile(p []byte, off int64) error {
	if hk := v.e.hooks.write; hk != nil {
		hk(v.id, off, int64(len(p)))
	}
	_, err := v.f.WriteAt(p, off)
	return err
}

// fileWrite writes p at off of the data file, its blocks marked in alloc
// first: every write into the file by hydration goes through here, and
// every user's write through writeFile, its blocks marked with its dirty
// bits. A sparse read that meets the mark before the data reads
// the zeroes of the hole the write replaces, as it would have before.
func (v *Volume) fileWrite(p []byte, off int64) error {
	if len(p) > 0 {
		v.mu.Lock()
		for b := off / v.bs; b*v.bs < off+int64(len(p)); b++ {
			v.alloc.set(b)
		}
		v.mu.Unlock()
	}
	_, err := v.f.WriteAt(p, off)
	return err
}

// punch deallocates [off, off+n) of the data file; it then reads as zeros.
func (v *Volume) punch(off, n int64) error {
	if hk := v.e.hooks.punch; hk != nil {
		hk(v.id, off, n)
	}
	if err := unix.Fallocate(int(v.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
		return fmt.Errorf("punch hole: %w", err)
	}
	// The whole blocks of the range (and a short last block it ends) are
	// holes now. The caller holds their stripes, so no write races this.
	v.mu.Lock()
	hi := (off + n) / v.bs
	if off+n >= v.size {
		hi = (v.size + v.bs - 1) / v.bs
	}
	for b := (off + v.bs - 1) / v.bs; b < hi; b++ {
		v.alloc.clear(b)
	}
	v.mu.Unlock()
	return nil
}

// readBlockRaw reads block b's current contents into buf (one block,
// zero-padded): from the file, or from the source snapshot if the block is
// not hydrated yet. The caller holds b's stripe.
func (v *Volume) readBlockRaw(ctx context.Context, b int64, buf []byte) error {
	v.mu.Lock()
	hyd := v.hyd
	fromSrc := hyd != nil && !v.hydratedLocked(b)
	v.mu.Unlock()
	if fromSrc {
		id, err := hyd.cache.entry(ctx, b)
		if err != nil {
			return err
		}
		if err := v.e.readChunkInto(ctx, id, buf); err != nil {
			return err
		}
		return v.readWrittenUnits(buf, b)
	}
	return v.pread(buf, b*v.bs)
}

// Resize grows the volume to size bytes (a multiple of 512); shrinking is
// refused with ErrShrink. New space reads as zeros. A size past the
// filesystem's largest file is refused (ErrTooLarge) and any failure
// leaves the volume as it was.
func (v *Volume) Resize(ctx context.Context, size int64) error {
	if err := v.setSize(size, false); err != nil {
		return fmt.Errorf("resize volume %s: %w", v.id, err)
	}
	return nil
}

// UndoResize takes a volume back to size, the size it had before a Resize
// whose effect must not stay (the record of the larger size could not be
// stored). Nothing may have written to the added space: the volume is not
// exported meanwhile.
func (v *Volume) UndoResize(ctx context.Context, size int64) error {
	if err := v.setSize(size, true); err != nil {
		return fmt.Errorf("undo resize of volume %s: %w", v.id, err)
	}
	return nil
}

// setSize changes the size of the data file to size: larger, or, to undo a
// resize, smaller.
func (v *Volume) setSize(size int64, undo bool) error {
	v.persistMu.Lock()
	defer v.persistMu.Unlock()
	v.mu.Lock()
	cur, closed := v.size, v.closed
	v.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case size < cur && !undo:
		return fmt.Errorf("from %d to %d: %w", cur, size, ErrShrink)
	case size > cur && undo, size <= 0, size%512 != 0, size > maxVolumeSize:
		return fmt.Errorf("from %d to %d: %w", cur, size, ErrInvalid)
	case size == cur:
		return nil
	}
	if err := v.e.truncate(v.f, size); err != nil {
		return v.e.noSpace(err, v.id)
	}
	if err := v.e.sync(v.f); err != nil {
		// Leave the volume as it was.
		if terr := v.f.Truncate(cur); terr != nil {
			err = errors.Join(err, fmt.Errorf("restore size %d: %w", cur, terr))
		}
		return v.e.noSpace(err, v.id)
	}
	nb := (size + v.bs - 1) / v.bs
	v.mu.Lock()
	v.size = size
	v.dirty.grow(nb) // (an undo keeps the bitmaps' length: the bits past size are clear)
	v.persistedDirty.grow(nb)
	v.alloc.grow(nb)
	if v.hyd != nil {
		v.hyd.done.grow(nb)
	}
	v.mu.Unlock()
	return nil
}

// Flush makes every completed write durable (fdatasync) and, for a volume
// being hydrated, records the hydration progress.
func (v *Volume) Flush(ctx context.Context) error {
	v.mu.Lock()
	closed, hydDirty := v.closed, v.hydDirty
	v.mu.Unlock()
	if closed {
		return fmt.Errorf("flush volume %s: %w", v.id, ErrClosed)
	}
	var err error
	if hydDirty {
		err = v.persistState(false, true)
	} else {
		err = v.syncData()
	}
	if err != nil {
		return fmt.Errorf("flush volume %s: %w", v.id, v.e.noSpace(err, v.id))
	}
	return nil
}

// Extents reports allocated (data) and hole ranges within [off, off+n), in
// order and covering the range. Blocks of a restored volume that are not
// hydrated yet are reported as data.
func (v *Volume) Extents(ctx context.Context, off, n int64) ([]Extent, error) {
	v.mu.Lock()
	err := v.checkRange(off, n)
	hyd := v.hyd != nil
	v.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("extents of volume %s: %w", v.id, err)
	}
	if hyd {
		return []Extent{{Offset: off, Length: n}}, nil
	}
	exts, err := v.fileExtents(off, n)
	if err != nil {
		return nil, fmt.Errorf("extents of volume %s: %w", v.id, err)
	}
	return exts, nil
}

// fileExtents reports the data and holes of [off, off+n) in the data
// file (SEEK_DATA, SEEK_HOLE), adjacent ones merged. The seeks hold the
// descriptor open (a concurrent Close cannot hand its number to another
// file under them); the file position they move is used by nothing else.
func (v *Volume) fileExtents(off, n int64) ([]Extent, error) {
	var out []Extent
	add := func(o, l int64, hole bool) {
		if l <= 0 {
			return
		}
		if k := len(out); k > 0 && out[k-1].Hole == hole {
			out[k-1].Length += l
			return
		}
		out = append(out, Extent{Offset: o, Length: l, Hole: hole})
	}
	rc, err := v.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		end := off + n
		for pos := off; pos < end; {
			d, err := unix.Seek(int(fd), pos, unix.SEEK_DATA)
			if errors.Is(err, syscall.ENXIO) {
				add(pos, end-pos, true)
				return
			}
			if err != nil {
				serr = fmt.Errorf("seek data: %w", err)
				return
			}
			d = min(d, end)
			add(pos, d-pos, true)
			if d >= end {
				return
			}
			h, err := unix.Seek(int(fd), d, unix.SEEK_HOLE)
			if err != nil {
				serr = fmt.Errorf("seek hole: %w", err)
				return
			}
			h = min(h, end)
			add(d, h-d, false)
			pos = h
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// syncData makes the writes completed so far to the data file durable.
func (v *Volume) syncData() error {
	if err := unix.Fdatasync(int(v.f.Fd())); err != nil {
		return err
	}
	if hk := v.e.hooks.dataSynced; hk != nil {
		hk(v.id)
	}
	return nil
}

// persistState writes the state file (see state.go); with sync, the data
// file is synced first in any case.
func (v *Volume) persistState(clean, sync bool) error {
	v.persistMu.Lock()
	defer v.persistMu.Unlock()
	return v.persistStateLocked(clean, sync)
}

// persistStateLocked writes the state file; v.persistMu is held. The dirty
// bitmap written is the union of the current dirty set and the blocks a
// running snapshot has taken, so it stays a superset of the changes since
// the volume's base until the next snapshot commits.
//
// What the state file says of the data file — blocks filled in, units
// written while hydrating, a clean shutdown — must be true of it after a
// power loss, so when the state carries such news (clean, or hydDirty) or
// the caller asks for it (sync), the data file is synced after the state
// is taken and before it is written: everything it records was written
// before the sync. A save that carries only dirty bits (a trim's
// write-ahead) needs no sync: they only widen the next snapshot.
func (v *Volume) persistStateLocked(clean, sync bool) error {
	v.mu.Lock()
	nb := (v.size + v.bs - 1) / v.bs
	d := v.dirty.clone()
	if v.snap != nil {
		d.or(v.snap.taken)
	}
	st := &volState{Clean: clean, BlockSize: v.bs, NBlocks: nb, Dirty: d}
	if v.hyd != nil {
		st.Hydrating = true
		st.HydrateFrom = v.hyd.srcID
		st.Hydrated = v.hyd.done.clone()
		st.Written = maps.Clone(v.hyd.written)
	}
	hydDirty := v.hydDirty
	v.hydDirty = false
	v.mu.Unlock()
	var err error
	if clean || sync || hydDirty {
		if err = v.syncData(); err != nil {
			err = fmt.Errorf("sync data: %w", err)
		}
	}
	if err == nil {
		err = writeFileAtomic(filepath.Join(v.dir, "state"), encodeState(st))
	}
	if err != nil {
		if hydDirty {
			v.mu.Lock()
			v.hydDirty = true
			v.mu.Unlock()
		}
		return fmt.Errorf("persist volume state: %w", err)
	}
	v.mu.Lock()
	v.persistedDirty = d
	v.mu.Unlock()
	return nil
}

// Close waits for a running snapshot, stops hydration (it resumes on the
// next OpenVolume), syncs the data, writes the bitmap with the clean-shutdown
// marker and closes the volume.
func (v *Volume) Close() error {
	v.snapMu.Lock()
	defer v.snapMu.Unlock()
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	h := v.hyd
	if h != nil {
		h.stop()
	}
	v.mu.Unlock()
	v.hydWG.Wait()
	if h != nil {
		h.locs.waitPrefetch()
	}
	for i := range v.stripes { // drain writes in progress
		v.stripes[i].Lock()
		v.stripes[i].Unlock()
	}
	v.e.mu.Lock()
	if v.e.vols[v.id] == v {
		delete(v.e.vols, v.id)
	}
	v.e.mu.Unlock()
	err := v.persistState(true, true)
	if cerr := v.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close volume %s: %w", v.id, err)
	}
	return nil
}

// crash abandons the volume as a process crash would: no sync, no state,
// no clean marker. For tests.
func (v *Volume) crash() {
	v.snapMu.Lock()
	defer v.snapMu.Unlock()
	v.mu.Lock()
	v.closed = true
	h := v.hyd
	if h != nil {
		h.stop()
	}
	v.mu.Unlock()
	v.hydWG.Wait()
	if h != nil {
		h.locs.waitPrefetch()
	}
	v.e.mu.Lock()
	delete(v.e.vols, v.id)
	v.e.mu.Unlock()
	v.f.Close()
}
