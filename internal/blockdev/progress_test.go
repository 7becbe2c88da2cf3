package blockdev

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestSnapshotProgress: while a snapshot runs its progress counts the
// blocks it has read of those it takes, and the blocks the user's writes
// copied before write; before and after, none runs.
func TestSnapshotProgress(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10, Workers: 1})
	const nb = 32
	model := make([]byte, nb<<12)
	fillRandom(rand.New(rand.NewPCG(11, 12)), model[:24<<12]) // blocks 24-31 hold zeros
	v := volumeOf(t, env, "v", model)
	if p := v.SnapshotProgress(); p.Running {
		t.Fatalf("progress before any snapshot: %+v", p)
	}
	// At the swap the user writes blocks 20 and 21 (copied before write:
	// the snapshot has read none yet).
	env.e.hooks.afterSwap = func(string) {
		if p := v.SnapshotProgress(); !p.Running || p.BlocksTotal != nb || p.BlocksRead != 0 || p.CBWBlocks != 0 {
			t.Errorf("progress at the swap: %+v, want running, 0 of %d read", p, nb)
		}
		if _, err := v.WriteAt(make([]byte, 2<<12), 20<<12); err != nil {
			t.Error(err)
		}
	}
	var mu sync.Mutex
	var reads []int64
	env.e.hooks.blockStored = func(string, int64) {
		p := v.SnapshotProgress()
		if q := env.e.SnapshotProgress("v", "s"); q != p {
			t.Errorf("the engine's progress of snapshot s: %+v, the volume's %+v", q, p)
		}
		if q := env.e.SnapshotProgress("v", "other"); q.Running {
			t.Errorf("the engine reports snapshot 'other' of v, which does not run: %+v", q)
		}
		if q := env.e.SnapshotProgress("w", "s"); q.Running {
			t.Errorf("the engine reports a snapshot of volume w, which is not open: %+v", q)
		}
		mu.Lock()
		defer mu.Unlock()
		reads = append(reads, p.BlocksRead)
		if !p.Running || p.BlocksTotal != nb || p.CBWBlocks != 2 {
			t.Errorf("progress while storing: %+v, want running, %d blocks in all, 2 copied before write", p, nb)
		}
	}
	if _, err := env.e.Snapshot(ctx, "v", "s"); err != nil {
		t.Fatal(err)
	}
	env.e.hooks.afterSwap, env.e.hooks.blockStored = nil, nil
	for i, n := range reads {
		if n != int64(i+1) {
			t.Fatalf("blocks read at each block stored: %v, want 1 to %d", reads, nb)
		}
	}
	if len(reads) != nb {
		t.Fatalf("%d blocks stored, want %d", len(reads), nb)
	}
	if p := v.SnapshotProgress(); p.Running {
		t.Fatalf("progress after the snapshot: %+v", p)
	}
	if p := env.e.SnapshotProgress("v", "s"); p.Running {
		t.Fatalf("the engine's progress after the snapshot: %+v", p)
	}
	checkSnapshot(t, env, "s", model)
}
