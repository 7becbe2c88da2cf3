package blockdev

import (
	"bytes"
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// fileWrites records the writes of data into volume vol's file.
func fileWrites(env *testEnv, vol string) (get func() [][2]int64) {
	var mu sync.Mutex
	var ws [][2]int64
	env.e.hooks.write = func(v string, off, n int64) {
		if v != vol {
			return
		}
		mu.Lock()
		ws = append(ws, [2]int64{off, n})
		mu.Unlock()
	}
	return func() [][2]int64 {
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(ws)
		ws = ws[:0]
		return out
	}
}

// TestWriteSpanIsOneWrite: a write over several blocks goes into the data
// file as one write (it was one per block), also while a snapshot still
// needs some of its blocks (they are copied first, and the snapshot is the
// volume at its swap).
func TestWriteSpanIsOneWrite(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	const size = 1<<20 + 512 // the last block is 512 bytes
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	writes := fileWrites(env, "vol")
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(9, 10))
	fillRandom(rng, model)
	write := func(off, n int64) {
		t.Helper()
		p := make([]byte, n)
		fillRandom(rng, p)
		if _, err := v.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], p)
	}
	if _, err := v.WriteAt(model[:256*bs], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(model[256*bs:], 256*bs); err != nil {
		t.Fatal(err)
	}
	if got := writes(); !slices.Equal(got, [][2]int64{{0, 256 * bs}, {256 * bs, size - 256*bs}}) {
		t.Errorf("file writes %v, want one per WriteAt", got)
	}
	write(3*bs+100, 20*bs) // unaligned at both ends
	if got := writes(); !slices.Equal(got, [][2]int64{{3*bs + 100, 20 * bs}}) {
		t.Errorf("file writes %v, want one", got)
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s0"); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, env, "s0", model)

	// During a snapshot: blocks 2–5 changed since s0 (the snapshot reads
	// them), the write covers 0–9.
	write(2*bs, 4*bs)
	atSwap := slices.Clone(model)
	writes()
	env.e.hooks.afterSwap = func(string) {
		write(0, 10*bs)
	}
	si, err := env.e.Snapshot(ctx, "vol", "s1")
	if err != nil {
		t.Fatal(err)
	}
	env.e.hooks.afterSwap = nil
	if got := writes(); !slices.Equal(got, [][2]int64{{0, 10 * bs}}) {
		t.Errorf("file writes during the snapshot %v, want one", got)
	}
	if si.Stats.CBWBlocks != 4 {
		t.Errorf("%d blocks copied before the write, want 4", si.Stats.CBWBlocks)
	}
	checkSnapshot(t, env, "s1", atSwap)
	write(size-3*bs, 3*bs) // to the end, through the short last block
	if got := image(t, v); !bytes.Equal(got, model) {
		t.Fatalf("volume differs at %d", firstDiff(got, model))
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s2"); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, env, "s2", model)
}

// TestWriteSpanWhileHydrating: a write over several blocks of a volume
// still hydrating is one write when the blocks it covers in part are
// hydrated or absent, and is merged block by block with the snapshot's
// data otherwise; the volume is right either way and after hydration.
func TestWriteSpanWhileHydrating(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	const size = 1<<20 + 512
	src, _ := env.e.CreateVolume(ctx, "src", size)
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(11, 12))
	for i := range model { // no zero block: every block has a chunk to fetch
		model[i] = byte(rng.Uint32())
	}
	if _, err := src.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	v, _, release := restoreHeld(t, env, "src")
	writes := fileWrites(env, "dst")
	write := func(off, n int64) {
		t.Helper()
		p := make([]byte, n)
		fillRandom(rng, p)
		if _, err := v.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], p)
	}
	write(10*bs, 8*bs) // whole blocks: nothing to fetch
	if got := writes(); !slices.Equal(got, [][2]int64{{10 * bs, 8 * bs}}) {
		t.Errorf("file writes %v, want one", got)
	}
	write(20*bs+7, 5*bs) // partial unhydrated blocks at both ends
	if got := writes(); len(got) != 6 {
		t.Errorf("file writes %v, want the 6 blocks one by one", got)
	}
	write(20*bs+9, 5*bs-2) // now hydrated: one write
	if got := writes(); !slices.Equal(got, [][2]int64{{20*bs + 9, 5*bs - 2}}) {
		t.Errorf("file writes %v, want one", got)
	}
	write(size-512-bs, bs+512) // a whole block and the short last one
	if got := writes(); !slices.Equal(got, [][2]int64{{size - 512 - bs, bs + 512}}) {
		t.Errorf("file writes %v, want one", got)
	}
	write(size-512-bs-100, 200) // short of the end: partial, hydrated already
	wantImage(t, v, model, "before hydration")
	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	wantImage(t, v, model, "after hydration")
}

// TestWrittenUnitsWhileHydrating: writes made of whole units (1/64 of a
// block) to blocks not hydrated yet go into the file with nothing fetched
// (each such write fetched and rewrote its whole block before); reads,
// snapshots and hydration see them merged with the source, a flush makes
// them survive a crash, and a block whose every unit is written is
// hydrated.
func TestWrittenUnitsWhileHydrating(t *testing.T) {
	ctx := context.Background()
	const bs = 64 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	const size = 4 << 20
	src, _ := env.e.CreateVolume(ctx, "src", size)
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(13, 14))
	for i := range model { // no zero block: every block has a chunk to fetch
		model[i] = byte(rng.Uint32())
	}
	if _, err := src.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	v, held, release := restoreHeld(t, env, "src")
	<-held // the hydrator holds its index pages and reads nothing more
	writes := fileWrites(env, "dst")
	write := func(off, n int64) {
		t.Helper()
		randomWriteAt(t, rng, v, model, off, n)
	}
	gets := env.chunks.gets.Load()
	write(3*bs+4096, 4096)
	write(5*bs, 4096)
	write(7*bs+bs-4096, 4096)
	write(10*bs+bs-8192, 16384) // the end of block 10 and the start of 11
	if n := env.chunks.gets.Load() - gets; n != 0 {
		t.Errorf("writes of whole units read %d chunks, want 0", n)
	}
	if got := writes(); len(got) != 4 {
		t.Errorf("file writes %v, want 4", got)
	}
	for b := int64(0); b < 16; b++ { // every unit of block 20, in 16 writes
		write(20*bs+b*4096, 4096)
	}
	if !v.isHydrated(20) || v.isHydrated(3) || v.isHydrated(11) {
		t.Errorf("hydrated: block 20 %v (want true), 3 %v and 11 %v (want false)", v.isHydrated(20), v.isHydrated(3), v.isHydrated(11))
	}
	got := make([]byte, 2*bs)
	if _, err := v.ReadAt(got, 2*bs); err != nil || !bytes.Equal(got, model[2*bs:4*bs]) {
		t.Fatalf("read of blocks 2-3: %v, differs at %d", err, firstDiff(got, model[2*bs:4*bs]))
	}
	// A snapshot mid-hydration reads the written blocks merged (checked
	// at the end: checkSnapshot's restores would wait for the held
	// hydrator).
	if _, err := env.e.Snapshot(ctx, "dst", "mid"); err != nil {
		t.Fatal(err)
	}
	atMid := slices.Clone(model)

	// Flushed units survive a crash; an unflushed one is lost, as any
	// unflushed write may be (block 30 reverts to the source).
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	lost := slices.Clone(model[30*bs : 31*bs])
	write(30*bs+8192, 4096)
	copy(model[30*bs:], lost)
	v.crash()
	v, err := env.e.OpenVolume(ctx, "dst")
	if err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	w := maps.Clone(v.hyd.written)
	v.mu.Unlock()
	if w[5] != 0xf || w[7] != 0xf<<60 || w[10] != 0xff<<56 || w[11] != 0xff || len(w) != 4 {
		t.Errorf("written units after the crash: %#v, want blocks 5, 7, 10 and 11", w)
	}
	wantImage(t, v, model, "after the crash")
	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	wantImage(t, v, model, "after hydration")
	checkSnapshot(t, env, "mid", atMid)
}
