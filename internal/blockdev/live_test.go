package blockdev

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// TestWriteZeroesPunchesRuns zeroes a range with a partial first block,
// hundreds of whole blocks and a short last block that ends the volume:
// the partial block is written with zeros, the whole blocks are punched a
// run (of at most one block per stripe) at a time, every block is dirty
// and persisted as dirty before the punch, and a snapshot running
// meanwhile still sees the old contents.
func TestWriteZeroesPunchesRuns(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	const size = 2<<20 + 512 // 513 blocks, the last one 512 bytes
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(1, 2)), model)
	if _, err := v.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s0"); err != nil {
		t.Fatal(err)
	}
	if n := v.DirtyBlocks(); n != 0 {
		t.Fatalf("dirty blocks after a snapshot: %d", n)
	}

	type punch struct{ off, n int64 }
	var mu sync.Mutex
	var punches []punch
	var persistedAtPunch []bool
	env.e.hooks.punch = func(_ string, off, n int64) {
		// What the state file says when the hole is made.
		sb, err := os.ReadFile(filepath.Join(env.e.volDir("vol"), "state"))
		st, derr := decodeState(sb)
		mu.Lock()
		defer mu.Unlock()
		punches = append(punches, punch{off, n})
		covered := err == nil && derr == nil && st.Dirty.covers(off/bs, (off+n+bs-1)/bs)
		persistedAtPunch = append(persistedAtPunch, covered)
	}
	const from = 1000
	if err := v.WriteZeroes(ctx, from, size-from); err != nil {
		t.Fatal(err)
	}
	clear(model[from:])
	want := []punch{{bs, 256 * bs}, {257 * bs, size - 257*bs}}
	if !slices.Equal(punches, want) {
		t.Errorf("punches %v, want %v", punches, want)
	}
	for i, ok := range persistedAtPunch {
		if !ok {
			t.Errorf("punch %d: the state file did not hold the blocks as dirty", i)
		}
	}
	wantImage(t, v, model, "after write zeroes")
	exts, err := v.Extents(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	// The short last block shares a filesystem block with nothing else
	// past the end, so it may stay allocated (and read as zeros).
	if len(exts) < 2 || exts[0] != (Extent{0, bs, false}) || exts[1].Offset != bs || !exts[1].Hole || exts[1].Length < size-bs-512 {
		t.Errorf("extents %v, want data [0, %d) then a hole to the end or to the last 512 bytes", exts, bs)
	}
	if n := v.DirtyBlocks(); n != 513 {
		t.Errorf("dirty blocks %d, want 513", n)
	}

	// Zeroing whole blocks that a running snapshot still needs copies them
	// first: the snapshot is the volume at the swap.
	if _, err := v.WriteAt(bytes.Repeat([]byte{0xCD}, 64*bs), 10*bs); err != nil {
		t.Fatal(err)
	}
	copy(model[10*bs:], bytes.Repeat([]byte{0xCD}, 64*bs))
	atSwap := slices.Clone(model)
	punches = nil
	env.e.hooks.afterSwap = func(string) {
		if err := v.WriteZeroes(ctx, 8*bs, 70*bs); err != nil {
			t.Error(err)
		}
	}
	si, err := env.e.Snapshot(ctx, "vol", "s1")
	if err != nil {
		t.Fatal(err)
	}
	env.e.hooks.afterSwap = nil
	clear(model[8*bs : 78*bs])
	if len(punches) != 1 {
		t.Errorf("%d punches for 70 whole blocks, want 1", len(punches))
	}
	checkSnapshot(t, env, "s1", atSwap)
	if si.Stats.CBWBlocks == 0 {
		t.Error("no block was copied before the punch")
	}
	wantImage(t, v, model, "after zeroing during a snapshot")
	if _, err := env.e.Snapshot(ctx, "vol", "s2"); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, env, "s2", model)
}

// TestWriteZeroesWhileHydrating zeroes whole blocks of a restored volume
// that are not hydrated yet: they need nothing from the snapshot (no chunk
// is read), read as zeros at once and stay zeros when hydration ends.
func TestWriteZeroesWhileHydrating(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	const size = 4 << 20
	src, _ := env.e.CreateVolume(ctx, "src", size)
	model := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(3, 4)), model)
	if _, err := src.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	v, held, release := restoreHeld(t, env, "src")
	// Once a hydration job waits, the hydrator has read all four index
	// pages and reads nothing more until released.
	<-held
	gets := env.chunks.gets.Load()
	if err := v.WriteZeroes(ctx, 100*bs, 300*bs); err != nil {
		t.Fatal(err)
	}
	if n := env.chunks.gets.Load() - gets; n != 0 {
		t.Errorf("zeroing whole unhydrated blocks read %d chunks, want 0", n)
	}
	clear(model[100*bs : 400*bs])
	got := make([]byte, 300*bs)
	if _, err := v.ReadAt(got, 100*bs); err != nil || !bytes.Equal(got, model[100*bs:400*bs]) {
		t.Fatalf("zeroed range before hydration: %v", err)
	}
	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	wantImage(t, v, model, "after hydration")
}

// TestWriteAllocatesNothing: a write within one block, with no snapshot
// running and nothing to hydrate, takes no scratch buffer (a 64 KiB
// allocation per 4 KiB write made the small-write path slow).
func TestWriteAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 64 << 10})
	v, err := env.e.CreateVolume(ctx, "vol", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Repeat([]byte{1}, 4096)
	var off int64
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := v.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		off = (off + 4096) % (1 << 20)
	})
	if allocs > 0 {
		t.Errorf("a 4 KiB write allocates %.1f times, want 0", allocs)
	}
}

// TestTryWriteAt: a write within one block or over several that needs
// nothing else is done at once and counts as a change; one that finds
// one of its stripes busy is refused and changes nothing; one that hits
// blocks a running snapshot still needs is done at once after copying
// what it changes from the page cache, and the snapshot stays the volume
// at its swap.
func TestTryWriteAt(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	const size = 1 << 20
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(5, 6)), model)
	if _, err := v.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s0"); err != nil {
		t.Fatal(err)
	}
	p := bytes.Repeat([]byte{0xEE}, 1024)
	span := bytes.Repeat([]byte{0xDD}, 6*bs)
	v.stripe(3).Lock()
	ok, err := v.TryWriteAt(p, 3*bs)
	if ok || err != nil {
		t.Errorf("write to a block whose stripe is held: ok=%v err=%v, want refused", ok, err)
	}
	if ok, err := v.TryWriteAt(span, bs+100); ok || err != nil {
		t.Errorf("write over blocks 1-7, the stripe of 3 held: ok=%v err=%v, want refused", ok, err)
	}
	v.stripe(3).Unlock()
	for b := range int64(10) {
		if !v.stripe(b).TryLock() {
			t.Fatalf("a refused write left the stripe of block %d held", b)
		}
		v.stripe(b).Unlock()
	}
	if got := image(t, v); !bytes.Equal(got, model) || v.DirtyBlocks() != 0 {
		t.Fatalf("refused writes changed the volume (differs at %d) or marked %d blocks dirty", firstDiff(got, model), v.DirtyBlocks())
	}
	if ok, err := v.TryWriteAt(p, 5*bs+100); !ok || err != nil {
		t.Fatalf("plain write: ok=%v err=%v", ok, err)
	}
	copy(model[5*bs+100:], p)
	if v.DirtyBlocks() != 1 {
		t.Errorf("dirty blocks %d after one write, want 1", v.DirtyBlocks())
	}
	writes := fileWrites(env, "vol")
	if ok, err := v.TryWriteAt(span, 10*bs+100); !ok || err != nil {
		t.Fatalf("write over blocks 10-16: ok=%v err=%v", ok, err)
	}
	copy(model[10*bs+100:], span)
	if got := writes(); !slices.Equal(got, [][2]int64{{10*bs + 100, 6 * bs}}) || v.DirtyBlocks() != 8 {
		t.Errorf("write over blocks 10-16: file writes %v, %d blocks dirty; want one write, 8 dirty", got, v.DirtyBlocks())
	}
	if ok, err := v.TryWriteAt(p[:100], size); !ok || !errors.Is(err, ErrOutOfRange) {
		t.Errorf("write past the end: ok=%v err=%v, want ErrOutOfRange", ok, err)
	}

	// During a snapshot: a write to blocks it has not read yet is done at
	// once too, once the pieces it changes are copied (they are in the
	// page cache: preadv2 RWF_NOWAIT); the snapshot is the volume at the
	// swap.
	atSwap := slices.Clone(model)
	var pending, clean, span2 bool
	env.e.hooks.afterSwap = func(string) {
		ok, err := v.TryWriteAt(p, 5*bs) // dirty since s0: the snapshot reads it
		pending = ok && err == nil
		ok, err = v.TryWriteAt(p, 9*bs) // clean: not part of this snapshot
		clean = ok && err == nil
		// Blocks 12-17, of which 12-16 (dirty since s0) are pending.
		ok, err = v.TryWriteAt(span, 12*bs)
		span2 = ok && err == nil
	}
	si, err := env.e.Snapshot(ctx, "vol", "s1")
	if err != nil {
		t.Fatal(err)
	}
	env.e.hooks.afterSwap = nil
	copy(model[5*bs:], p)
	copy(model[9*bs:], p)
	copy(model[12*bs:], span)
	if !pending || !clean || !span2 {
		t.Errorf("during the snapshot: written at once: pending block %v, clean block %v, span over pending blocks %v; want all", pending, clean, span2)
	}
	if si.Stats.CBWBlocks != 6 {
		t.Errorf("%d blocks copied before write, want 6 (5 and 12-16)", si.Stats.CBWBlocks)
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

// TestTryWhileHydrating: a restored volume that is still hydrating serves
// no read or write of a block not hydrated yet at once (the usual paths
// fetch what they need); a hydrated block is read at once.
func TestTryWhileHydrating(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	const size = 1 << 20
	src, _ := env.e.CreateVolume(ctx, "src", size)
	model := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(7, 8)), model)
	if _, err := src.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8192)
	if n, ok, err := src.TryReadAt(got, 3*bs); !ok || err != nil || n != len(got) || !bytes.Equal(got, model[3*bs:5*bs]) {
		t.Fatalf("read of cached data: n=%d ok=%v err=%v", n, ok, err)
	}
	if _, ok, _ := src.TryReadAt(got, size-100); ok {
		t.Error("read past the end done at once")
	}
	v, held, release := restoreHeld(t, env, "src")
	<-held // the hydrator has read the manifest's pages: it gets no chunk until released
	if _, ok, _ := v.TryReadAt(got, 3*bs); ok {
		t.Error("read of a hydrating volume done at once")
	}
	p := bytes.Repeat([]byte{0x5A}, bs)
	if ok, _ := v.TryWriteAt(p[:100], 7*bs); ok {
		t.Error("write of part of a unit of a block not hydrated yet done at once")
	}
	if _, err := v.WriteAt(p[:100], 7*bs); err != nil {
		t.Fatal(err)
	}
	copy(model[7*bs:], p[:100])
	// Whole units of a block not hydrated yet are written at once, with
	// nothing fetched; the rest of the block comes from the snapshot.
	gets := env.chunks.gets.Load()
	if ok, err := v.TryWriteAt(p[:1024], 9*bs+512); !ok || err != nil {
		t.Errorf("write of whole units of a block not hydrated yet: ok=%v err=%v, want done at once", ok, err)
	}
	copy(model[9*bs+512:], p[:1024])
	if n := env.chunks.gets.Load() - gets; n != 0 {
		t.Errorf("the write of whole units read %d chunks, want 0", n)
	}
	if _, ok, _ := v.TryReadAt(got[:bs], 9*bs); ok {
		t.Error("read of a block written in part and not hydrated done at once")
	}
	if n, ok, err := v.TryReadAt(got[:bs], 7*bs); !ok || err != nil || n != bs || !bytes.Equal(got[:bs], model[7*bs:8*bs]) {
		t.Errorf("read of a block hydrated by a write: n=%d ok=%v err=%v", n, ok, err)
	}
	if _, ok, _ := v.TryReadAt(got, 7*bs); ok {
		t.Error("read of a hydrated and an unhydrated block done at once")
	}
	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	wantImage(t, v, model, "after hydration")
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := v.TryReadAt(got, 0); ok {
		t.Error("read of a closed volume done at once")
	}
	if ok, err := v.TryWriteAt(p, 0); !ok || !errors.Is(err, ErrClosed) {
		t.Errorf("write to a closed volume: ok=%v err=%v, want ErrClosed", ok, err)
	}
}

// restoreHeld snapshots volume src as "s" and restores it as "dst" with
// its hydration held: each hydration job reports on held and then waits
// until the caller closes release, or sends to it (one job goes), or its
// context ends.
func restoreHeld(t *testing.T, env *testEnv, src string) (v *Volume, held <-chan struct{}, release chan struct{}) {
	t.Helper()
	return restoreHeldOn(t, env.e, src)
}

// restoreHeldOn is restoreHeld on engine e (a real-store engine, say).
func restoreHeldOn(t *testing.T, e *Engine, src string) (v *Volume, held <-chan struct{}, release chan struct{}) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.Snapshot(ctx, src, "s"); err != nil {
		t.Fatal(err)
	}
	release, h := make(chan struct{}), make(chan struct{}, 64)
	e.hooks.hydrator = func(ctx context.Context, vol string) {
		select {
		case h <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	v, err := e.RestoreVolume(ctx, "s", "dst")
	if err != nil {
		t.Fatal(err)
	}
	return v, h, release
}

// TestReadSparseAt: a sparse read fills the data of the range and
// reports its holes (the data file's, as Extents reports them) without
// touching them in p; while the volume hydrates a hole may be a block
// still to fetch, so everything is read and no hole reported.
func TestReadSparseAt(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	const size = 1 << 20
	src, _ := env.e.CreateVolume(ctx, "src", size)
	model := make([]byte, size)
	for _, r := range [][2]int{{3 * bs, 5 * bs}, {9*bs + 100, 2*bs + 7}, {size - bs, bs}} {
		fillRandom(rand.New(rand.NewPCG(uint64(r[0]), 2)), model[r[0]:r[0]+r[1]])
		if _, err := src.WriteAt(model[r[0]:r[0]+r[1]], int64(r[0])); err != nil {
			t.Fatal(err)
		}
	}
	sparseRead := func(v *Volume, off, n int64) ([]byte, []Extent) {
		t.Helper()
		p := bytes.Repeat([]byte{0xEE}, int(n))
		var holes []Extent
		got, err := v.ReadSparseAt(ctx, p, off, func(o, l int64) {
			holes = append(holes, Extent{Offset: o, Length: l, Hole: true})
			clear(p[o-off : o-off+l])
		})
		if err != nil || got != int(n) {
			t.Fatalf("ReadSparseAt(%d, %d): %d, %v", off, n, got, err)
		}
		return p, holes
	}
	for _, r := range [][2]int64{{0, size}, {bs + 1, 20 * bs}, {4 * bs, 3 * bs}, {20 * bs, 30 * bs}} {
		off, n := r[0], r[1]
		p, holes := sparseRead(src, off, n)
		if !bytes.Equal(p, model[off:off+n]) {
			t.Errorf("read [%d, +%d): differs at %d (holes zeroed by the caller)", off, n, firstDiff(p, model[off:off+n]))
		}
		exts, err := src.Extents(ctx, off, n)
		if err != nil {
			t.Fatal(err)
		}
		want := slices.DeleteFunc(exts, func(x Extent) bool { return !x.Hole })
		if !slices.Equal(holes, want) {
			t.Errorf("read [%d, +%d): holes %v, want %v", off, n, holes, want)
		}
	}
	if _, holes := sparseRead(src, 20*bs, 30*bs); len(holes) != 1 {
		t.Errorf("all-hole range: holes %v, want one", holes)
	}
	// At once: the same, the data being in the page cache.
	p := bytes.Repeat([]byte{0xEE}, size)
	var tried []Extent
	if n, ok, err := src.TryReadSparseAt(p, 0, func(o, l int64) {
		tried = append(tried, Extent{Offset: o, Length: l, Hole: true})
		clear(p[o : o+l])
	}); !ok || err != nil || n != size || !bytes.Equal(p, model) {
		t.Errorf("TryReadSparseAt of cached data: n=%d ok=%v err=%v, data equal %v", n, ok, err, bytes.Equal(p, model))
	}
	if _, holes := sparseRead(src, 0, size); !slices.Equal(tried, holes) {
		t.Errorf("TryReadSparseAt holes %v, want ReadSparseAt's %v", tried, holes)
	}
	if _, ok, _ := src.TryReadSparseAt(p[:2*bs], size-bs, func(int64, int64) {}); ok {
		t.Error("TryReadSparseAt past the end done")
	}

	v, held, release := restoreHeld(t, env, "src")
	<-held
	if _, ok, _ := v.TryReadSparseAt(p, 0, func(int64, int64) {}); ok {
		t.Error("TryReadSparseAt of a hydrating volume done at once")
	}
	p, holes := sparseRead(v, 0, size)
	if len(holes) != 0 || !bytes.Equal(p, model) {
		t.Errorf("hydrating: holes %v, data equal %v; want no holes and the snapshot's data", holes, bytes.Equal(p, model))
	}
	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := src.ReadSparseAt(ctx, p, 0, func(int64, int64) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("read of a closed volume: %v, want ErrClosed", err)
	}
	if _, ok, _ := src.TryReadSparseAt(p, 0, func(int64, int64) {}); ok {
		t.Error("TryReadSparseAt of a closed volume done at once")
	}
}

// TestSparseReadAllocMap checks that a sparse read takes its holes from
// the volume's map of blocks that may hold data, not from the file system,
// and that the map stays right: a block written in part is read whole
// (its unwritten pages as zeroes), a block never written, or trimmed or
// zeroed whole, is one hole, and so it stays across writes after a trim,
// hydration, a resize, and reopening after a clean and an unclean stop
// (the map is rebuilt from the file). A map that missed a write loses
// data; one that missed a punch or a reopen reports the wrong holes.
func TestSparseReadAllocMap(t *testing.T) {
	ctx := context.Background()
	const bs = 16 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	v, err := env.e.CreateVolume(ctx, "vol", 32*bs)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, 40*bs)
	write := func(off, n int64) {
		t.Helper()
		fillRandom(rand.New(rand.NewPCG(uint64(off), uint64(n))), model[off:off+n])
		if _, err := v.WriteAt(model[off:off+n], off); err != nil {
			t.Fatal(err)
		}
	}
	// check reads all of w with ReadSparseAt and then TryReadSparseAt (its
	// data cached by then) and wants model's bytes and exactly the blocks
	// data lacks as holes.
	check := func(step string, w *Volume, data ...int64) {
		t.Helper()
		size := w.Size()
		var want []int64
		for b := int64(0); b < size/bs; b++ {
			if !slices.Contains(data, b) {
				want = append(want, b)
			}
		}
		for _, try := range []bool{false, true} {
			p := bytes.Repeat([]byte{0xEE}, int(size))
			var holes []int64
			hole := func(o, l int64) {
				if o%bs != 0 || l%bs != 0 {
					t.Errorf("%s: hole [%d, +%d) is not whole blocks", step, o, l)
				}
				for b := o / bs; b*bs < o+l; b++ {
					holes = append(holes, b)
				}
				clear(p[o : o+l])
			}
			if try {
				if n, ok, err := w.TryReadSparseAt(p, 0, hole); !ok || err != nil || n != int(size) {
					t.Fatalf("%s: TryReadSparseAt of cached data: n=%d ok=%v err=%v", step, n, ok, err)
				}
			} else if n, err := w.ReadSparseAt(ctx, p, 0, hole); err != nil || n != int(size) {
				t.Fatalf("%s: ReadSparseAt: %d, %v", step, n, err)
			}
			if !bytes.Equal(p, model[:size]) {
				t.Errorf("%s (try %v): data differs at %d", step, try, firstDiff(p, model[:size]))
			}
			if !slices.Equal(holes, want) {
				t.Errorf("%s (try %v): holes in blocks %v, want %v", step, try, holes, want)
			}
		}
	}
	check("new volume", v)

	write(2*bs, 2*bs)         // blocks 2 and 3, whole
	write(5*bs+8<<10, 4<<10)  // one page of block 5
	write(8*bs+12<<10, 8<<10) // across blocks 8 and 9, in part
	write(31*bs+4<<10, 4<<10) // the last block, in part
	check("written", v, 2, 3, 5, 8, 9, 31)

	if err := v.Trim(ctx, 3*bs, bs); err != nil {
		t.Fatal(err)
	}
	clear(model[3*bs : 4*bs])
	if err := v.WriteZeroes(ctx, 8*bs, 2*bs); err != nil {
		t.Fatal(err)
	}
	clear(model[8*bs : 10*bs])
	if err := v.WriteZeroes(ctx, 5*bs, 4<<10); err != nil { // in part: written as zeroes
		t.Fatal(err)
	}
	clear(model[5*bs : 5*bs+4<<10])
	check("trimmed and zeroed", v, 2, 5, 31)

	write(3*bs+100, 50) // a trimmed block written again
	check("written after trim", v, 2, 3, 5, 31)

	// Hydration writes the restored blocks that hold data, and no others.
	if _, err := env.e.Snapshot(ctx, "vol", "s"); err != nil {
		t.Fatal(err)
	}
	r, err := env.e.RestoreVolume(ctx, "s", "restored")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	check("restored and hydrated", r, 2, 3, 5, 31)

	if err := v.Resize(ctx, 40*bs); err != nil {
		t.Fatal(err)
	}
	write(36*bs, bs)
	check("resized", v, 2, 3, 5, 31, 36)

	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if v, err = env.e.OpenVolume(ctx, "vol"); err != nil {
		t.Fatal(err)
	}
	check("reopened", v, 2, 3, 5, 31, 36)
	v.crash()
	if v, err = env.e.OpenVolume(ctx, "vol"); err != nil {
		t.Fatal(err)
	}
	check("reopened after a crash", v, 2, 3, 5, 31, 36)
}
