package blockdev

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// TestCopyBeforeWriteParts overwrites the blocks a snapshot has not read
// yet in every way a write can reach a block that keeps only the units it
// overwrote (a part): unaligned writes that overlap units kept already,
// partial zeroing, then, on some blocks, a whole-block write, a write
// spanning two blocks and a whole-block trim, which must keep the whole
// block as of the swap from the file and the part together. The snapshot
// must be the volume at its swap, every touched block counted once, and
// the partial writes must have kept parts (not whole blocks).
func TestCopyBeforeWriteParts(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs, CBWMemory: 1 << 20})
	const nb = 64
	const size = nb * bs
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(8, 9)), model)
	if _, err := v.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	atSwap := slices.Clone(model)
	write := func(p []byte, off int64) {
		t.Helper()
		if _, err := v.WriteAt(p, off); err != nil {
			t.Error(err)
		}
		copy(model[off:], p)
	}
	zero := func(off, n int64) {
		t.Helper()
		if err := v.WriteZeroes(ctx, off, n); err != nil {
			t.Error(err)
		}
		clear(model[off : off+n])
	}
	var parts, partBytes int
	env.e.hooks.afterSwap = func(string) {
		rng := rand.New(rand.NewPCG(10, 11))
		for b := int64(0); b < nb-1; b++ {
			base := b * bs
			write(bytes.Repeat([]byte{0xA1}, 100), base+37)  // units 0-2
			write(bytes.Repeat([]byte{0xA2}, 300), base+90)  // units 1-6: 1-2 kept already
			write(bytes.Repeat([]byte{0xA3}, 64), base+1024) // unit 16, aligned
			zero(base+2000, 300)                             // units 31-35
			p := make([]byte, 1+rng.IntN(700))
			fillRandom(rng, p)
			write(p, base+int64(rng.IntN(bs-len(p))))
		}
		v.mu.Lock()
		parts = len(v.snap.parts)
		for _, p := range v.snap.parts {
			partBytes += int(p.bytes)
		}
		v.mu.Unlock()
		write(bytes.Repeat([]byte{0xB1}, bs), 3*bs)       // whole block over a part
		write(bytes.Repeat([]byte{0xB2}, bs+2048), 10*bs) // one write over two blocks with parts
		zero(20*bs, 2*bs)                                 // two whole blocks punched
		write(bytes.Repeat([]byte{0xB3}, 10), 30*bs+5)    // another write to a part
		write(bytes.Repeat([]byte{0xB4}, 10), (nb-1)*bs)  // a block with no part yet
	}
	si, err := env.e.Snapshot(ctx, "vol", "s1")
	if err != nil {
		t.Fatal(err)
	}
	env.e.hooks.afterSwap = nil
	if parts != nb-1 || partBytes >= (nb-1)*bs/2 {
		t.Errorf("partial writes kept %d parts of %d bytes in all; want %d parts, well under half a block each", parts, partBytes, nb-1)
	}
	if si.Stats.CBWBlocks != nb {
		t.Errorf("%d blocks copied before write, want %d (each touched block once)", si.Stats.CBWBlocks, nb)
	}
	checkSnapshot(t, env, "s1", atSwap)
	if got := image(t, v); !bytes.Equal(got, model) {
		t.Fatalf("volume differs at %d", firstDiff(got, model))
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s2"); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, env, "s2", model)
}

// TestCopyBeforeWritePartsOverBudget: once the parts fill the memory
// budget, further blocks are kept whole (in the side file), and a block
// whose part is extended past the budget is kept whole with its part laid
// over it.
func TestCopyBeforeWritePartsOverBudget(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs, CBWMemory: 2 * bs})
	const nb = 32
	v, err := env.e.CreateVolume(ctx, "vol", nb*bs)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, nb*bs)
	fillRandom(rand.New(rand.NewPCG(12, 13)), model)
	if _, err := v.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	atSwap := slices.Clone(model)
	env.e.hooks.afterSwap = func(string) {
		for round := range 3 {
			for b := int64(0); b < nb; b++ {
				p := bytes.Repeat([]byte{byte(round + 1)}, 1000)
				off := b*bs + int64(round)*1100
				if _, err := v.WriteAt(p, off); err != nil {
					t.Error(err)
				}
				copy(model[off:], p)
			}
		}
	}
	si, err := env.e.Snapshot(ctx, "vol", "s1")
	if err != nil {
		t.Fatal(err)
	}
	env.e.hooks.afterSwap = nil
	if si.Stats.CBWBlocks != nb {
		t.Errorf("%d blocks copied before write, want %d", si.Stats.CBWBlocks, nb)
	}
	checkSnapshot(t, env, "s1", atSwap)
	if got := image(t, v); !bytes.Equal(got, model) {
		t.Fatalf("volume differs at %d", firstDiff(got, model))
	}
}

// TestSnapshotRestsUnlessWholeCopies: while the volume's user is active,
// a snapshot rests between blocks when the user's writes only keep parts
// of blocks for it (cheap for the user), and does not while they copy
// whole blocks (each costing the user a block's read and copy).
func TestSnapshotRestsUnlessWholeCopies(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	const nb = 16
	const writes = 5 // the first blocks stored each see one write
	env := newTestEnv(t, Options{BlockSize: bs, Workers: 1})
	v, err := env.e.CreateVolume(ctx, "vol", nb*bs)
	if err != nil {
		t.Fatal(err)
	}
	rests := func(name string, n int) int64 {
		t.Helper()
		p := make([]byte, nb*bs)
		fillRandom(rand.New(rand.NewPCG(uint64(n), 16)), p)
		if _, err := v.WriteAt(p, 0); err != nil {
			t.Fatal(err)
		}
		var stored, rested atomic.Int64
		env.e.hooks.blockStored = func(string, int64) {
			env.clk.Advance(10 * time.Millisecond) // each block takes 10 ms
			if k := stored.Add(1); k <= writes {
				// To a block the snapshot reads last.
				if _, err := v.WriteAt(make([]byte, n), (nb-k)*bs); err != nil {
					t.Error(err)
				}
			}
		}
		defer func() { env.e.hooks.blockStored = nil }()
		done := make(chan struct{})
		go func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if env.clk.Pending() == 0 {
					time.Sleep(time.Millisecond) // until the snapshot rests on the clock's timer
					continue
				}
				if stored.Load() <= writes {
					rested.Add(1)
				}
				env.clk.Advance(20 * time.Millisecond)
			}
		}()
		_, err := env.e.Snapshot(ctx, "vol", name)
		close(done)
		if err != nil {
			t.Fatal(err)
		}
		return rested.Load()
	}
	if n := rests("parts", 100); n < writes-1 {
		t.Errorf("the snapshot rested %d times while writes kept parts, want at least %d", n, writes-1)
	}
	if n := rests("whole", bs); n != 0 {
		t.Errorf("the snapshot rested %d times while writes copied whole blocks, want 0", n)
	}
}
