package blockdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
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
// Volume.mu (the kept pieces' contents by their block's stripe).
//
// Invariant: for every block in pending, each of its pieces (cbwPiece) is
// either kept (kept[b]) or still holds in the volume file (or, for a block
// not hydrated yet, in the source snapshot and the units written since) the
// contents it had at the swap. Writers copy the pieces they change before
// they write (under the block's stripe); the snapshot reads a pending block
// under the same stripe, overlays its kept pieces and clears its pending
// bit.
type snapState struct {
	id      string // the snapshot's ID
	size    int64
	taken   *bitset // the dirty set swapped out; merged back on failure
	pending *bitset // taken and not read by the snapshot yet
	piece   int64   // cbwPiece of the volume
	kept    map[int64]*keptBlock

	// Kept pieces live in slots: memory slots (at most memCap, in arenas
	// made as they are first needed; arenas[i] is set once, under v.mu,
	// before any of its slots is handed out) and, beyond CBWMemory, slots of the
	// unlinked side file. A slot the snapshot has read is reused.
	arenas  [][]byte
	memCap  int64
	memNext int64
	// ready is the next arena, made and populated ahead of need by the
	// snapshot's arena goroutine (readyArenas) so that the writer who
	// first needs it does not pay its page faults; at most one, and only
	// while arenas are left to make. prepare asks for it (capacity 1);
	// made counts the arenas writers made themselves (none was ready).
	ready    []byte
	prepare  chan struct{}
	made     int
	memFree  []int64
	side     *os.File
	sideNext int64
	sideFree []int64
	// owner[i] is the block whose piece ownerPiece[i] memory slot i
	// keeps, -1 while the slot is free or its copy is under way; spill
	// reads them to move pieces to the side file. pin[i] is 1 while
	// spill writes slot i out, 2 if it was freed meanwhile (it goes back
	// to memFree only when spill is done with it).
	owner      []int64
	ownerPiece []uint8
	pin        []uint8
	spillAt    int64 // the memory slot where spill's next scan starts

	cbw      atomic.Int64 // blocks with a piece kept
	cbwBytes atomic.Int64 // bytes kept
	cbwSide  atomic.Int64 // of them, bytes writers put in the side file
	spilled  atomic.Int64 // bytes moved from memory to the side file (spill)
	total    int64        // blocks taken
	read     atomic.Int64 // of them, blocks the snapshot has read
}

// keptBlock is what a snapshot keeps of one pending block: the pieces in
// mask, piece i in slot at[i] (a memory slot, or side slot -1-at[i]).
type keptBlock struct {
	mask uint64
	at   []int64
}

// cbwNeed is a block's pieces to keep before a write (cbwCopy).
type cbwNeed struct {
	b      int64
	pieces uint64
}

// cbwPiece is the size of the pieces of a block that copy-before-write
// keeps: a 4 KiB page, or a 64th of a block larger than 256 KiB (a
// block's pieces fit one uint64 mask). A write copies only the pieces it
// changes, so a 4 KiB write to a 64 KiB block the snapshot has not read
// yet copies 4 KiB, not the block.
func cbwPiece(bs int64) int64 { return max(4<<10, bs/64) }

// arenaBytes is the size of one arena of memory slots.
const arenaBytes = 1 << 20

func newSnapState(size int64, taken *bitset, bs, cbwMemory int64) *snapState {
	piece := cbwPiece(bs)
	memCap := cbwMemory / piece
	per := max(1, arenaBytes/piece)
	// The arenas' slice never grows: pieceIO reads it without v.mu.
	s := &snapState{size: size, taken: taken, pending: taken.clone(), piece: piece, kept: map[int64]*keptBlock{},
		arenas: make([][]byte, (memCap+per-1)/per), memCap: memCap, total: taken.count(), prepare: make(chan struct{}, 1)}
	if s.spillLow() > 0 {
		s.owner, s.ownerPiece, s.pin = make([]int64, memCap), make([]uint8, memCap), make([]uint8, memCap)
		for i := range s.owner {
			s.owner[i] = -1
		}
	}
	return s
}

// spillLow is the number of free memory slots below which spill moves
// kept pieces to the side file (0: never, CBWMemory too small), and
// spillHigh the number it moves them until; a batch is at most an
// arena's worth of slots, one pwritev.
func (s *snapState) spillLow() int64  { return min(4*s.perArena(), s.memCap/4) }
func (s *snapState) spillHigh() int64 { return min(8*s.perArena(), s.memCap/2) }
func (s *snapState) perArena() int64  { return max(1, arenaBytes/s.piece) }

// memFreeLocked is the number of memory slots free to hand out (freed,
// or in arenas not made yet); v.mu is held.
func (s *snapState) memFreeLocked() int64 { return int64(len(s.memFree)) + s.memCap - s.memNext }

// arenaLen is the length of arena i.
func (s *snapState) arenaLen(i int64) int64 {
	per := s.perArena()
	return min(per, s.memCap-i*per) * s.piece
}

// populate makes every page of a resident and writable: one
// madvise(MADV_POPULATE_WRITE) (Linux 5.14) rather than a page fault per
// page, else (an older kernel, or a start not page-aligned) a write to
// each page.
func populate(a []byte) {
	if len(a) == 0 {
		return
	}
	if unix.Madvise(a, unix.MADV_POPULATE_WRITE) == nil {
		return
	}
	for i := 0; i < len(a); i += 4 << 10 {
		a[i] = 0 // fault the page in (the write a copy would do)
	}
}

// readyArenas makes and populates s's next arena ahead of need (s.ready)
// whenever a writer took the ready one or started a new arena, until done
// is closed; then it drops the one left ready (a snapshot's arenas go with
// its state). It runs on a goroutine of the snapshot, off the writers'
// path: a copy before write into an arena's first touch cost about half of
// its 14-19 µs in page faults (docs/design.md, "Session perf14y"). The
// memory stays within CBWMemory: an arena is made ready only while one is
// left to make. v.mu guards s.ready. It also keeps memory slots free for
// the writers (spill).
func (v *Volume) readyArenas(s *snapState, done <-chan struct{}) {
	defer func() {
		v.mu.Lock()
		s.ready = nil
		v.mu.Unlock()
	}()
	for {
		select {
		case <-done:
			return
		case <-s.prepare:
		}
		v.readyArena(s)
		v.spill(s, done)
	}
}

// readyArena makes and populates s's next arena if none is ready and one
// is left to make.
func (v *Volume) readyArena(s *snapState) {
	per := s.perArena()
	v.mu.Lock()
	next := (s.memNext + per - 1) / per // the next arena to make
	want := s.ready == nil && next < int64(len(s.arenas))
	v.mu.Unlock()
	if !want {
		return
	}
	a := make([]byte, s.arenaLen(next))
	populate(a)
	v.mu.Lock()
	if s.ready == nil && (s.memNext+per-1)/per == next {
		s.ready = a
	}
	v.mu.Unlock()
	if hk := v.e.hooks.arenaReady; hk != nil {
		hk(v.id, next)
	}
}

// spill moves kept pieces from memory slots to the side file, an
// arena's worth of slots (1 MiB) at a time with one pwritev to fresh
// side slots, from when fewer than spillLow memory slots are free until
// spillHigh are, so that the writers copy into memory and not each into
// the side file: a piece a writer puts in the side file itself costs a
// pwrite on its write (docs/design.md, "Session perf14af"). A piece moves
// only under v.mu, after its bytes are in the side file, and only while
// its block is pending (kept); a slot freed while it is written out
// (pin) returns to memFree only once the write has ended, so nothing
// reuses it meanwhile. It stops when done closes, or on a write error
// (the writers then put pieces in the side file themselves, as they do
// whenever memory is full).
func (v *Volume) spill(s *snapState, done <-chan struct{}) {
	low, high, per := s.spillLow(), s.spillHigh(), s.perArena()
	if low <= 0 {
		return
	}
	v.mu.Lock()
	want := s.memFreeLocked() < low
	v.mu.Unlock()
	slots := make([]int64, 0, per)
	iov := make([][]byte, 0, per)
	for want {
		select {
		case <-done:
			return
		default:
		}
		v.mu.Lock()
		if s.side == nil {
			if err := s.sideFileLocked(v.dir); err != nil {
				v.mu.Unlock()
				return
			}
		}
		slots, iov = slots[:0], iov[:0]
		n := s.memCap
		for j := int64(0); j < n && int64(len(slots)) < per; j++ {
			i := (s.spillAt + j) % n
			if s.owner[i] >= 0 && s.pin[i] == 0 {
				s.pin[i] = 1
				slots = append(slots, i)
				iov = append(iov, s.mem(i))
				s.spillAt = (i + 1) % n
			}
		}
		first := s.sideNext
		s.sideNext += int64(len(slots))
		side := s.side
		v.mu.Unlock()
		if len(slots) == 0 {
			return
		}
		err := pwritevAll(side, iov, first*s.piece)
		v.mu.Lock()
		moved := int64(0)
		for k, i := range slots {
			freed := s.pin[i] == 2
			s.pin[i] = 0
			kb := s.kept[s.owner[i]]
			if err == nil && !freed && kb != nil && kb.at[s.ownerPiece[i]] == i {
				kb.at[s.ownerPiece[i]] = -1 - (first + int64(k))
				s.owner[i] = -1
				s.memFree = append(s.memFree, i)
				moved++
				continue
			}
			s.sideFree = append(s.sideFree, first+int64(k)) // not moved: its block was read meanwhile
			if freed {
				s.memFree = append(s.memFree, i)
			}
		}
		want = err == nil && s.memFreeLocked() < high
		v.mu.Unlock()
		s.spilled.Add(moved * s.piece)
		if hk := v.e.hooks.spilled; hk != nil {
			hk(v.id, moved)
		}
	}
}

// pwritevAll writes iov to f at off with pwritev, going on after a short
// write.
func pwritevAll(f *os.File, iov [][]byte, off int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("copy-before-write side file: %w", err)
	}
	for len(iov) > 0 {
		var n int
		var werr error
		if cerr := rc.Control(func(fd uintptr) { n, werr = unix.Pwritev(int(fd), iov, off) }); cerr != nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("copy-before-write side file: %w", werr)
		}
		if n == 0 {
			return fmt.Errorf("copy-before-write side file: %w", io.ErrShortWrite)
		}
		off += int64(n)
		for n > 0 {
			if n < len(iov[0]) {
				iov[0] = iov[0][n:]
				n = 0
			} else {
				n -= len(iov[0])
				iov = iov[1:]
			}
		}
	}
	return nil
}

// SnapshotProgress is how far a volume's running snapshot has got.
type SnapshotProgress struct {
	Running bool // false: no snapshot runs (the rest is zero)
	// BlocksRead of BlocksTotal, the blocks the snapshot takes (those
	// changed since the volume's last snapshot).
	BlocksRead, BlocksTotal int64
	// CBWBlocks is how many of them the user's writes copied from before
	// write so far, and CBWBytes how much they copied (only the pieces
	// they changed: 4 KiB pages of a 64 KiB block), CBWSideBytes how much
	// of that the writers put in the side file themselves (CBWMemory
	// full) and CBWSpilledBytes how much the snapshot moved there from
	// memory in batches (spill).
	CBWBlocks, CBWBytes, CBWSideBytes, CBWSpilledBytes int64
}

// SnapshotProgress reports the progress of the volume's running snapshot.
func (v *Volume) SnapshotProgress() SnapshotProgress {
	v.mu.Lock()
	s := v.snap
	v.mu.Unlock()
	if s == nil {
		return SnapshotProgress{}
	}
	return s.progress()
}

// SnapshotProgress reports the progress of the snapshot snapshotID of the
// volume volumeID while it runs; once it has ended, before it starts, or
// while the volume is not open, Running is false.
func (e *Engine) SnapshotProgress(volumeID, snapshotID string) SnapshotProgress {
	e.mu.Lock()
	v := e.vols[volumeID]
	e.mu.Unlock()
	if v == nil {
		return SnapshotProgress{}
	}
	v.mu.Lock()
	s := v.snap
	v.mu.Unlock()
	if s == nil || s.id != snapshotID {
		return SnapshotProgress{}
	}
	return s.progress()
}

func (s *snapState) progress() SnapshotProgress {
	return SnapshotProgress{Running: true, BlocksRead: s.read.Load(), BlocksTotal: s.total, CBWBlocks: s.cbw.Load(), CBWBytes: s.cbwBytes.Load(), CBWSideBytes: s.cbwSide.Load(),
		CBWSpilledBytes: s.spilled.Load()}
}

// piecesOf returns the pieces of block b that [bOff, bOff+l) changes and
// s must keep first: none unless b is pending, and only those not kept
// yet and within the block as of the swap. v.mu is held.
func (s *snapState) piecesOf(b, bOff, l, bs int64) uint64 {
	if s == nil || l <= 0 || !s.pending.has(b) {
		return 0
	}
	blen := min(bs, s.size-b*bs)
	hi := min(bOff+l, blen)
	if hi <= bOff {
		return 0 // past the block's end at the swap (the volume grew)
	}
	m := unitRange(bOff/s.piece, (hi+s.piece-1)/s.piece)
	if k := s.kept[b]; k != nil {
		m &^= k.mask
	}
	return m
}

// slotLocked takes a free slot: a memory one while any is left, else one
// of the side file (created on first need, unlinked). v.mu is held.
func (s *snapState) slotLocked(dir string) (int64, error) {
	if n := len(s.memFree); n > 0 {
		i := s.memFree[n-1]
		s.memFree = s.memFree[:n-1]
		s.wakeSpill()
		return i, nil
	}
	if s.memNext < s.memCap {
		per := s.perArena()
		if i := s.memNext / per; s.memNext%per == 0 {
			if a := s.ready; a != nil && int64(len(a)) == s.arenaLen(i) {
				s.arenas[i] = a
			} else {
				s.arenas[i] = make([]byte, s.arenaLen(i))
				s.made++
			}
			s.ready = nil
			select {
			case s.prepare <- struct{}{}: // the next one
			default:
			}
		}
		s.memNext++
		s.wakeSpill()
		return s.memNext - 1, nil
	}
	if n := len(s.sideFree); n > 0 {
		i := s.sideFree[n-1]
		s.sideFree = s.sideFree[:n-1]
		return -1 - i, nil
	}
	if s.side == nil {
		if err := s.sideFileLocked(dir); err != nil {
			return 0, err
		}
	}
	s.sideNext++
	return -1 - (s.sideNext - 1), nil
}

// sideFileLocked creates the side file, unlinked; v.mu is held.
func (s *snapState) sideFileLocked(dir string) error {
	f, err := os.CreateTemp(dir, "cbw-*")
	if err != nil {
		return fmt.Errorf("copy-before-write side file: %w", err)
	}
	_ = os.Remove(f.Name()) // unlinked: vanishes with the process
	s.side = f
	return nil
}

// wakeSpill asks the arena goroutine to spill when fewer than spillLow
// memory slots are free; v.mu is held.
func (s *snapState) wakeSpill() {
	if s.owner == nil || s.memFreeLocked() >= s.spillLow() {
		return
	}
	select {
	case s.prepare <- struct{}{}:
	default:
	}
}

// freeLocked gives slots back; v.mu is held.
func (s *snapState) freeLocked(slots []int64) {
	for _, i := range slots {
		if i >= 0 {
			if s.owner != nil {
				s.owner[i] = -1
				if s.pin[i] != 0 {
					s.pin[i] = 2 // spill gives it back
					continue
				}
			}
			s.memFree = append(s.memFree, i)
		} else {
			s.sideFree = append(s.sideFree, -1-i)
		}
	}
}

// mem is memory slot i.
func (s *snapState) mem(i int64) []byte {
	per := s.perArena()
	a := s.arenas[i/per]
	o := (i % per) * s.piece
	return a[o : o+s.piece]
}

// pieceIO moves the pieces of mask between p (a block's bytes, piece i
// at i×piece) and their slots: out stores p's pieces into slots at[i],
// else it reads the slots into p. Consecutive side slots of consecutive
// pieces are one call. The caller holds the block's stripe.
func (s *snapState) pieceIO(p []byte, mask uint64, at []int64, out bool) error {
	u := s.piece
	for i := int64(0); i < 64 && mask>>uint(i) != 0; {
		if mask&(1<<uint(i)) == 0 {
			i++
			continue
		}
		if at[i] >= 0 {
			if out {
				copy(s.mem(at[i]), p[i*u:(i+1)*u])
			} else {
				copy(p[i*u:(i+1)*u], s.mem(at[i]))
			}
			i++
			continue
		}
		j := i + 1
		for j < 64 && mask&(1<<uint(j)) != 0 && at[j] == at[j-1]-1 {
			j++
		}
		off := (-1 - at[i]) * u
		var err error
		if out {
			_, err = s.side.WriteAt(p[i*u:j*u], off)
		} else {
			_, err = s.side.ReadAt(p[i*u:j*u], off)
		}
		if err != nil {
			return fmt.Errorf("copy-before-write side file: %w", err)
		}
		i = j
	}
	return nil
}

// cbwCopy keeps the pieces of block b in need (from piecesOf) for snapshot
// s: it reads them (from the file, or the whole block from the source
// while b is not hydrated) into *scratch (a block from the engine's pool,
// taken if nil) and stores them in slots. With nowait it keeps nothing
// and returns errWouldWait when that would wait: the block is not
// hydrated, or a page is not in the page cache (preadv2 RWF_NOWAIT).
// whole reports that *scratch holds all of b's current contents (read
// from the source). The caller holds b's stripe.
//
// A snapshot that has ended meanwhile (it failed: a writer it did not
// wait for may still hold s) needs nothing kept; the copy is then
// dropped, errors included.
func (v *Volume) cbwCopy(ctx context.Context, s *snapState, b int64, need uint64, scratch **[]byte, nowait bool) (whole bool, err error) {
	u := s.piece
	v.mu.Lock()
	fromSrc := v.hyd != nil && !v.hydratedLocked(b)
	v.mu.Unlock()
	if fromSrc && nowait {
		return false, errWouldWait
	}
	if *scratch == nil {
		*scratch = v.e.getBlock()
	}
	buf := **scratch
	if fromSrc {
		if err := v.readBlockRaw(ctx, b, buf); err != nil {
			return false, err
		}
		whole = true
	} else {
		lo := int64(bits.TrailingZeros64(need))
		hi := int64(64 - bits.LeadingZeros64(need))
		end := min(hi*u, s.size-b*v.bs) // pieces are within the block as of the swap
		p := buf[lo*u : end]
		if nowait {
			if !v.preadNowait(p, b*v.bs+lo*u) {
				return false, errWouldWait
			}
		} else if err := v.pread(p, b*v.bs+lo*u); err != nil {
			return false, fmt.Errorf("copy-before-write: %w", err)
		}
		clear(buf[end : hi*u])
	}
	var at, slots [64]int64
	n := 0
	v.mu.Lock()
	if v.snap != s {
		v.mu.Unlock()
		return whole, nil
	}
	for m := need; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		if at[i], err = s.slotLocked(v.dir); err != nil {
			s.freeLocked(slots[:n])
			v.mu.Unlock()
			return whole, err
		}
		slots[n] = at[i]
		n++
	}
	v.mu.Unlock()
	err = s.pieceIO(buf, need, at[:], true)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.snap != s {
		return whole, nil // ended meanwhile (its side file may be closed)
	}
	if err != nil {
		s.freeLocked(slots[:n])
		return whole, err
	}
	k := s.kept[b]
	if k == nil {
		k = &keptBlock{at: make([]int64, v.bs/u)}
		s.kept[b] = k
		s.cbw.Add(1)
	}
	k.mask |= need
	side := int64(0)
	for m := need; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		k.at[i] = at[i]
		if at[i] < 0 {
			side += u
		} else if s.owner != nil {
			s.owner[at[i]], s.ownerPiece[at[i]] = b, uint8(i)
		}
	}
	s.cbwBytes.Add(int64(bits.OnesCount64(need)) * u)
	s.cbwSide.Add(side)
	return whole, nil
}

// snapRead reads pending block b as of the swap into buf and clears its
// pending bit: the block's current contents with its kept pieces laid
// over them (the current contents are not read when every piece is
// kept).
func (v *Volume) snapRead(ctx context.Context, s *snapState, b int64, buf []byte) error {
	l := v.stripe(b)
	l.Lock()
	defer l.Unlock()
	v.mu.Lock()
	k := s.kept[b]
	delete(s.kept, b)
	s.pending.clear(b)
	v.mu.Unlock()
	s.read.Add(1)
	var err error
	blen := v.blockLen(b, s.size)
	if all := unitRange(0, (blen+s.piece-1)/s.piece); k == nil || k.mask&all != all {
		err = v.readBlockRaw(ctx, b, buf)
	}
	if k == nil {
		return err
	}
	if err == nil {
		err = s.pieceIO(buf, k.mask, k.at, false)
	}
	var slots [64]int64
	n := 0
	for m := k.mask; m != 0; m &= m - 1 {
		slots[n] = k.at[bits.TrailingZeros64(m)]
		n++
	}
	v.mu.Lock()
	s.freeLocked(slots[:n])
	v.mu.Unlock()
	return err
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
// there); once their packs are durable, the catalogue entry
// snapshots/<id> and the volume record volumes/<volume> (its base moved to
// the new record) are written while the chunks' index add runs; then one
// transaction writes both rows (the snapshot's is the commit point). If
// Snapshot fails, the blocks it took are merged back into the dirty set.
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
	s := newSnapState(v.size, taken, v.bs, e.opts.CBWMemory)
	s.id = snapID
	// The first arena is asked for at once (a write that follows the swap
	// closely is the first to copy), before any writer can see s: a
	// writer's own request (cbwSlot) then finds this one pending and
	// goes on, and this send cannot block, prepare being new with room
	// for one. Sent after the swap, it could find a writer's request
	// there first and wait for ever: the arena goroutine that takes
	// requests starts only after it.
	s.prepare <- struct{}{}
	v.snap = s
	base, baseSnap := v.base, v.baseSnap
	created := e.opts.Clock.Now().UTC()
	v.mu.Unlock()
	if h := e.hooks.published; h != nil {
		h(v.id)
	}
	arenasDone, arenasEnded := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(arenasEnded)
		v.readyArenas(s, arenasDone)
	}()
	if h := e.hooks.afterSwap; h != nil {
		h(v.id)
	}

	committed := false
	defer func() {
		close(arenasDone)
		<-arenasEnded
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
	si := SnapshotInfo{ID: snapID, Volume: v.id, Parent: baseSnap, Created: created, Size: s.size, BlockSize: v.bs, Record: recID}
	if err := v.commitSnapshot(ctx, put, si); err != nil {
		return SnapshotInfo{}, err
	}
	committed = true
	si.Stats = stats
	return si, nil
}

// commitSnapshot flushes put, commits si (a snapshot of v whose chunks put
// holds) and moves v's base to it, together (Engine.commitSnapshot). recMu
// is held throughout, so that the volume record's hydration source is the
// one written.
func (v *Volume) commitSnapshot(ctx context.Context, put chunkPutter, si SnapshotInfo) error {
	v.recMu.Lock()
	defer v.recMu.Unlock()
	vr := volumeRecord{ID: v.id, Base: si.Record, BaseSnapshot: si.ID, HydrateFrom: v.hydrateFrom()}
	if err := v.e.commitSnapshot(ctx, put, si, &vr); err != nil {
		return err
	}
	v.mu.Lock()
	v.base, v.baseSnap = si.Record, si.ID
	v.mu.Unlock()
	return nil
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
	// stores a block, with rests between blocks (yieldGate), also while
	// the user's writes copy pieces for the snapshot: a copy is a 4 KiB
	// piece (about 10 µs), a block stored 150 µs, and the blocks the
	// snapshot reads early save few copies in the seconds the user is
	// busy (docs/design.md, "Session perf14ak"). It still gets its
	// minimum share of a core (minShare) however busy the user keeps the
	// cores, so it finishes.
	yield := newYieldGate(e.opts.Clock, &v.fg)
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
		PagesWritten: pagesWritten.Load(), PagesReused: feed.pagesReused, CBWBlocks: s.cbw.Load(), CBWBytes: s.cbwBytes.Load(), CBWSideBytes: s.cbwSide.Load(),
		CBWSpilledBytes: s.spilled.Load(),
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

// hydrateFrom is the record v hydrates from, zero when it does not: what
// its volume record says.
func (v *Volume) hydrateFrom() chunk.ID {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.hyd != nil {
		return v.hyd.srcID
	}
	return chunk.ID{}
}

// moveBase writes the volume record with a new base, then adopts it. recMu
// serializes volume-record writes (snapshot commit, end of hydration).
func (v *Volume) moveBase(ctx context.Context, base chunk.ID, baseSnap string) error {
	v.recMu.Lock()
	defer v.recMu.Unlock()
	if err := v.e.putVolumeRecord(ctx, volumeRecord{ID: v.id, Base: base, BaseSnapshot: baseSnap, HydrateFrom: v.hydrateFrom()}); err != nil {
		return err
	}
	v.mu.Lock()
	v.base, v.baseSnap = base, baseSnap
	v.mu.Unlock()
	return nil
}
