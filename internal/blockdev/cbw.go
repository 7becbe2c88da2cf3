package blockdev

import (
	"context"
	"fmt"
	"math/bits"
	"os"
	"sync/atomic"
)

// snapState is the copy-before-write state of a running snapshot, guarded by
// Volume.mu (the side file's contents and a part's bytes by the block's
// stripe).
//
// Invariant: for every block in pending and every unit (writeUnits per
// block) of it, either the volume file (or, for a block not hydrated yet,
// the source snapshot) still holds the contents it had at the swap, or a
// whole copy (mem, spill) or the block's part (parts) holds them. Writers
// keep what they are about to overwrite before they write (under the
// block's stripe); the snapshot reads a pending block under the same
// stripe, overlays its part, and clears its pending bit.
type snapState struct {
	size     int64
	taken    *bitset           // the dirty set swapped out; merged back on failure
	pending  *bitset           // taken and not read by the snapshot yet
	mem      map[int64]*[]byte // whole blocks, from Engine.getBlock
	parts    map[int64]*cbwPart
	memBytes int64           // of mem and parts, bounded by Options.CBWMemory
	spill    map[int64]int64 // block → offset in side
	side     *os.File
	sideNext int64
	cbw      atomic.Int64 // blocks copied before a write, whole or in part
	wholes   atomic.Int64 // whole copies (cbwKeep), the costly ones
}

func newSnapState(size int64, taken *bitset) *snapState {
	return &snapState{size: size, taken: taken, pending: taken.clone(), mem: map[int64]*[]byte{},
		parts: map[int64]*cbwPart{}, spill: map[int64]int64{}}
}

// cbwPart holds the contents at the swap of some units of a pending block:
// those the user's writes have overwritten since. Keeping only them costs a
// 4 KiB write the 4 KiB it overwrites, where a whole copy cost it a block's
// read and copy (64 KiB) and, past the memory budget, a block's write to
// the side file; under random 4 KiB writes a snapshot of a 1 GiB disk had
// 12,039-13,461 of its 16,384 blocks copied whole (docs/design.md, NBD
// data path).
//
// Each write's units are a piece of their own: a block written many times
// during a long snapshot gets its units in many small allocations, where
// growing one slice copied them again at each growth (runtime.growslice
// took 0.89 s of 2.9 s in the parts' code under random writes).
type cbwPart struct {
	mask   uint64            // units held
	slot   [writeUnits]uint8 // unit → its place among the units of pieces, in order
	pieces [][]byte          // the units, in the order they were kept
	bytes  int64
}

// overlay copies the units p holds into buf, a whole block.
func (p *cbwPart) overlay(buf []byte, unit int64) {
	var unitAt [writeUnits]int8 // place → unit
	for m := p.mask; m != 0; m &= m - 1 {
		u := bits.TrailingZeros64(m)
		unitAt[p.slot[u]] = int8(u)
	}
	place := 0
	for _, pc := range p.pieces {
		for off := int64(0); off < int64(len(pc)); off += unit {
			u := int64(unitAt[place])
			copy(buf[u*unit:(u+1)*unit], pc[off:off+unit])
			place++
		}
	}
}

func (s *snapState) holds(b int64) bool {
	if _, ok := s.mem[b]; ok {
		return true
	}
	_, ok := s.spill[b]
	return ok
}

// needs reports whether a write to the units mask of block b must first
// keep their contents for s: b is pending and neither a whole copy nor its
// part holds them. Volume.mu is held.
func (s *snapState) needs(b int64, mask uint64) bool {
	if s == nil || !s.pending.has(b) || s.holds(b) {
		return false
	}
	p := s.parts[b]
	return p == nil || p.mask&mask != mask
}

// dropPartLocked forgets block b's part; Volume.mu is held.
func (s *snapState) dropPartLocked(b int64) {
	if p := s.parts[b]; p != nil {
		s.memBytes -= p.bytes
		delete(s.parts, b)
	}
}

// unitsCovering returns the units of a block of blen bytes that
// [bOff, bOff+l) touches, rounded out to whole units.
func (v *Volume) unitsCovering(bOff, l, blen int64) uint64 {
	u := v.bs / writeUnits
	return unitRange(bOff/u, min(bOff+l+u-1, blen+u-1)/u)
}

// cbwSave keeps, for snapshot s, the contents at the swap of the units in
// mask of block b before a write changes them. Where the file holds the
// block's contents (it is hydrated) and the memory budget allows, it reads
// and keeps only the units not kept yet (a part); otherwise the whole
// block (cbwKeep), read with buf (one block of scratch). With nowait it
// keeps nothing and returns errWouldWait where it would read from the
// disk or the chunk store, or copy a whole block. The caller holds b's
// stripe.
func (v *Volume) cbwSave(ctx context.Context, s *snapState, b int64, mask uint64, buf func() []byte, nowait bool) error {
	unit := v.bs / writeUnits
	v.mu.Lock()
	if !s.needs(b, mask) {
		v.mu.Unlock()
		return nil
	}
	part := s.parts[b]
	var have uint64
	if part != nil {
		have = part.mask
	}
	missing := mask &^ have
	n := int64(bits.OnesCount64(missing)) * unit
	inPart := v.hydratedLocked(b) && mask != unitRange(0, writeUnits) && s.memBytes+n <= v.e.opts.CBWMemory
	if inPart {
		s.memBytes += n // reserved
	}
	v.mu.Unlock()
	if !inPart {
		if nowait {
			return errWouldWait
		}
		return v.cbwWhole(ctx, s, b, buf())
	}
	data := make([]byte, n)
	var read int64
	err := v.unitRuns(missing, true, v.bs, func(lo, hi int64) error {
		p := data[read : read+hi-lo]
		read += hi - lo
		if nowait {
			if !v.preadNowait(p, b*v.bs+lo) {
				return errWouldWait
			}
			return nil
		}
		return v.pread(p, b*v.bs+lo)
	})
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		s.memBytes -= n
		return err
	}
	if part == nil {
		part = &cbwPart{}
		s.parts[b] = part
	}
	next := uint8(part.bytes / unit)
	for m := missing; m != 0; m &= m - 1 {
		part.slot[bits.TrailingZeros64(m)] = next
		next++
	}
	part.mask |= missing
	part.pieces = append(part.pieces, data)
	part.bytes += n
	if have == 0 {
		s.cbw.Add(1)
	}
	return nil
}

// cbwWhole keeps the whole of block b as of the swap for snapshot s: its
// current contents (buf is one block of scratch) with the units its part
// holds laid over them. The caller holds b's stripe.
func (v *Volume) cbwWhole(ctx context.Context, s *snapState, b int64, buf []byte) error {
	if err := v.readBlockRaw(ctx, b, buf); err != nil {
		return err
	}
	v.mu.Lock()
	part := s.parts[b]
	if part != nil {
		part.overlay(buf, v.bs/writeUnits)
		s.dropPartLocked(b)
	}
	v.mu.Unlock()
	if part != nil {
		s.cbw.Add(-1) // counted once, as its part
	}
	return v.cbwKeep(s, b, buf)
}

// cbwKeep stores the pre-write contents of block b for snapshot s. The
// caller holds b's stripe.
func (v *Volume) cbwKeep(s *snapState, b int64, data []byte) error {
	s.cbw.Add(1)
	s.wholes.Add(1)
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
	part := s.parts[b]
	delete(s.mem, b)
	delete(s.spill, b)
	s.dropPartLocked(b)
	if inMem {
		s.memBytes -= v.bs
	}
	s.pending.clear(b)
	side := s.side
	v.mu.Unlock()
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
	}
	if err := v.readBlockRaw(ctx, b, buf); err != nil {
		return err
	}
	if part != nil {
		part.overlay(buf, v.bs/writeUnits)
	}
	return nil
}
