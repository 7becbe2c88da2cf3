package blockdev

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"coffer/internal/blobstore/mem"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
	"coffer/internal/store/memstore"
)

// TestWithChunkstore runs the engine over the real chunk store and blob
// store: snapshots, restores, verify, and the chunk store's two-cycle GC
// driven by MarkLive after a snapshot is deleted.
func TestWithChunkstore(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	blobs := mem.New()
	cs, err := chunkstore.New(blobs, chunkstore.NewMemIndex(), chunkstore.Options{Clock: clk, PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e, err := Open(ctx, dir, cs, blobs, Options{BlockSize: 4 << 10, Clock: clk, Catalogue: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	env := &testEnv{e: e, dir: dir, clk: clk}
	const size = 4 << 20
	v, err := e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	applyWrites(t, v, genWrites(30, 300, size, 4096), model)
	if _, err := e.Snapshot(ctx, "vol", "s1"); err != nil {
		t.Fatal(err)
	}
	img1 := slices.Clone(model)
	clk.Advance(time.Minute)
	rng := rand.New(rand.NewPCG(31, 31))
	for range 100 {
		randomWrite(t, rng, v, model)
	}
	if _, err := e.Snapshot(ctx, "vol", "s2"); err != nil {
		t.Fatal(err)
	}
	img2 := slices.Clone(model)
	checkSnapshot(t, env, "s1", img1)
	checkSnapshot(t, env, "s2", img2)
	if _, err := e.VerifySnapshot(ctx, "s2"); err != nil {
		t.Fatal(err)
	}

	if err := e.DeleteSnapshot(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	gc := func() chunkstore.GCReport {
		clk.Advance(2 * time.Hour)
		// Every pack holding a chunk of s1 alone is rewritten: s1's record
		// shares its pack with chunks s2 still uses.
		rep, err := cs.GC(ctx, e.MarkLive, chunkstore.GCOptions{SafetyMargin: time.Hour, RewriteThreshold: 0.001})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	gc()
	rep := gc()
	if rep.DeletedChunks == 0 {
		t.Errorf("GC after deleting s1 deleted nothing: %+v", rep)
	}
	checkSnapshot(t, env, "s2", img2)
	if _, err := e.VerifySnapshot(ctx, "s2"); err != nil {
		t.Fatal(err)
	}
	// The next snapshot reuses s2's pages (the volume's base) after GC.
	for range 20 {
		randomWrite(t, rng, v, model)
	}
	if _, err := e.Snapshot(ctx, "vol", "s3"); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, env, "s3", model)
}

// TestSnapshotsPackApart: two disks' snapshots running at the same time,
// storing their blocks in turn, leave each pack holding one disk's blocks
// only (each snapshot writes a chunk store stream of its own), and both
// snapshots restore to their images.
func TestSnapshotsPackApart(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	blobs := mem.New()
	idx := chunkstore.NewMemIndex()
	cs, err := chunkstore.New(blobs, idx, chunkstore.Options{Clock: clk, PackSize: 64 << 10, Level: chunkstore.LevelNone})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e, err := Open(ctx, dir, cs, blobs, Options{BlockSize: 4 << 10, Workers: 1, Clock: clk, Catalogue: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	env := &testEnv{e: e, dir: dir, clk: clk}
	const (
		size   = 256 << 10
		blocks = size / (4 << 10)
	)
	vols := []string{"a", "b"}
	models := map[string][]byte{}
	for i, name := range vols {
		v, err := e.CreateVolume(ctx, name, size)
		if err != nil {
			t.Fatal(err)
		}
		m := make([]byte, size)
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		for j := range m {
			m[j] = byte(rng.Uint32())
		}
		if _, err := v.WriteAt(m, 0); err != nil {
			t.Fatal(err)
		}
		models[name] = m
	}
	// The two snapshots store their blocks in turn: each waits after a
	// block until the other has stored one (or has stored all of its).
	var (
		mu   sync.Mutex
		cond = sync.NewCond(&mu)
		turn = "a"
		done = map[string]bool{}
	)
	e.hooks.blockStored = func(vol string, n int64) {
		mu.Lock()
		defer mu.Unlock()
		other := "b"
		if vol == "b" {
			other = "a"
		}
		if n == blocks {
			done[vol] = true
		}
		turn = other
		cond.Broadcast()
		for turn != vol && !done[other] && !done[vol] {
			cond.Wait()
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(vols))
	for i, name := range vols {
		wg.Go(func() { _, errs[i] = e.Snapshot(ctx, name, "s-"+name) })
	}
	wg.Wait()
	e.hooks.blockStored = nil
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	owner := map[string]string{} // pack → disk
	for _, name := range vols {
		m := models[name]
		for off := 0; off < size; off += 4 << 10 {
			id := chunk.Hash(m[off : off+4<<10])
			found, err := idx.Lookup(ctx, []chunk.ID{id})
			if err != nil || found[id].Pack == "" {
				t.Fatalf("disk %s block at %d: not indexed (%v)", name, off, err)
			}
			p := found[id].Pack
			if o, ok := owner[p]; ok && o != name {
				t.Fatalf("pack %s holds blocks of disks %s and %s", p, o, name)
			}
			owner[p] = name
		}
		checkSnapshot(t, env, "s-"+name, m)
	}
}
