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

// TestCopyBeforeWriteInMemory: during a snapshot, writes to blocks it has
// not read yet are served at once (TryWriteAt), keeping each block in
// memory read straight from the page cache, while the memory budget
// lasts; past it they are refused (the usual path copies them to the side
// file). The snapshot is the volume at its swap either way.
func TestCopyBeforeWriteInMemory(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs, CBWMemory: 4 * bs})
	const nb = 8
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
	var inline []bool
	env.e.hooks.afterSwap = func(string) {
		for b := int64(0); b < nb; b++ {
			p := bytes.Repeat([]byte{byte(b + 1)}, 1000)
			off := b*bs + 100
			ok, err := v.TryWriteAt(p, off)
			if err != nil {
				t.Error(err)
			}
			if !ok {
				if _, err := v.WriteAt(p, off); err != nil {
					t.Error(err)
				}
			}
			inline = append(inline, ok)
			copy(model[off:], p)
		}
	}
	si, err := env.e.Snapshot(ctx, "vol", "s1")
	if err != nil {
		t.Fatal(err)
	}
	env.e.hooks.afterSwap = nil
	if want := []bool{true, true, true, true, false, false, false, false}; !slices.Equal(inline, want) {
		t.Errorf("writes served at once: %v, want %v (the budget holds 4 blocks)", inline, want)
	}
	if si.Stats.CBWBlocks != nb {
		t.Errorf("%d blocks copied before write, want %d", si.Stats.CBWBlocks, nb)
	}
	checkSnapshot(t, env, "s1", atSwap)
	if got := image(t, v); !bytes.Equal(got, model) {
		t.Fatalf("volume differs at %d", firstDiff(got, model))
	}
}

// TestSnapshotRestsUnlessSlowCopies: while the volume's user is active,
// a snapshot rests between blocks when the user's writes keep the blocks
// it still needs in memory (cheap for the user), and does not while they
// copy them the slow way (here to the side file, the memory budget being
// too small for a block), each costing the user a block's read and write.
func TestSnapshotRestsUnlessSlowCopies(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	const nb = 16
	const writes = 5 // the first blocks stored each see one write
	rests := func(budget int64) int64 {
		t.Helper()
		env := newTestEnv(t, Options{BlockSize: bs, Workers: 1, CBWMemory: budget})
		v, err := env.e.CreateVolume(ctx, "vol", nb*bs)
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, nb*bs)
		fillRandom(rand.New(rand.NewPCG(15, 16)), p)
		if _, err := v.WriteAt(p, 0); err != nil {
			t.Fatal(err)
		}
		var stored, rested atomic.Int64
		env.e.hooks.blockStored = func(string, int64) {
			env.clk.Advance(10 * time.Millisecond) // each block takes 10 ms
			if k := stored.Add(1); k <= writes {
				// To a block the snapshot reads last.
				if _, err := v.WriteAt(make([]byte, 100), (nb-k)*bs); err != nil {
					t.Error(err)
				}
			}
		}
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
		_, err = env.e.Snapshot(ctx, "vol", "s")
		close(done)
		if err != nil {
			t.Fatal(err)
		}
		return rested.Load()
	}
	if n := rests(64 << 20); n < writes-1 {
		t.Errorf("the snapshot rested %d times while writes kept blocks in memory, want at least %d", n, writes-1)
	}
	if n := rests(1); n != 0 {
		t.Errorf("the snapshot rested %d times while writes copied blocks to the side file, want 0", n)
	}
}
