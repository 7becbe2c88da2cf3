package blockdev

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
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
	cbw      atomic.Int64 // blocks copied before a write
	slow     atomic.Int64 // of them, those copied through a scratch block (cbwKeep)
}

func newSnapState(size int64, taken *bitset) *snapState {
	return &snapState{size: size, taken: taken, pending: taken.clone(), mem: map[int64]*[]byte{}, spill: map[int64]int64{}}
}

func (s *snapState) holds(b int64) bool {
	if _, ok := s.mem[b]; ok {
		return true
	}
	_, ok := s.spill[b]
	return ok
}

// needs reports whether a write to block b must first keep its contents
// for s: b is pending and not kept yet. Volume.mu is held.
func (s *snapState) needs(b int64) bool {
	return s != nil && s.pending.has(b) && !s.holds(b)
}

// cbwSave keeps, for snapshot s, the contents at the swap of block b
// before a write changes it. A block whose file contents are
// authoritative (hydrated) is read straight into memory while the budget
// allows (cbwMem); otherwise it is read with buf (one block of scratch)
// and kept in memory or in the side file (cbwWhole). With nowait it keeps
// nothing and returns errWouldWait unless it can keep the block in memory
// from the page cache. The caller holds b's stripe.
func (v *Volume) cbwSave(ctx context.Context, s *snapState, b int64, buf func() []byte, nowait bool) error {
	v.mu.Lock()
	if !s.needs(b) {
		v.mu.Unlock()
		return nil
	}
	inMem := v.hydratedLocked(b) && s.memBytes+v.bs <= v.e.opts.CBWMemory
	if inMem {
		s.memBytes += v.bs // reserved
	}
	v.mu.Unlock()
	switch {
	case inMem:
		return v.cbwMem(s, b, nowait)
	case nowait:
		return errWouldWait
	}
	return v.cbwWhole(ctx, s, b, buf())
}

// cbwMem keeps block b, hydrated, for snapshot s in memory reserved for it
// already, read straight from the file into the kept buffer. With nowait
// it keeps nothing and returns errWouldWait unless the block is in the
// page cache. The caller holds b's stripe.
func (v *Volume) cbwMem(s *snapState, b int64, nowait bool) error {
	kept := v.e.getBlock()
	var err error
	switch {
	case !nowait:
		err = v.pread(*kept, b*v.bs)
	case !v.preadNowait(*kept, b*v.bs):
		err = errWouldWait
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		s.memBytes -= v.bs
		v.e.putBlock(kept)
		return err
	}
	s.mem[b] = kept
	s.cbw.Add(1)
	return nil
}

// cbwWhole keeps block b as of the swap for snapshot s: its current
// contents, from the file or, if it is not hydrated yet, from the source
// snapshot (buf is one block of scratch). The caller holds b's stripe.
func (v *Volume) cbwWhole(ctx context.Context, s *snapState, b int64, buf []byte) error {
	if err := v.readBlockRaw(ctx, b, buf); err != nil {
		return err
	}
	return v.cbwKeep(s, b, buf)
}

// cbwKeep stores the pre-write contents of block b for snapshot s. The
// caller holds b's stripe.
func (v *Volume) cbwKeep(s *snapState, b int64, data []byte) error {
	s.cbw.Add(1)
	s.slow.Add(1)
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
	return v.readBlockRaw(ctx, b, buf)
}
