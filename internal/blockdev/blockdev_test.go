package blockdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"coffer/internal/chunk"
	"coffer/internal/store/memstore"
)

func TestRoundTripSequential(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10})
	const size = 4 << 20
	v, err := env.e.CreateVolume(ctx, "vol-1", size)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	model := make([]byte, size)
	type snap struct {
		id  string
		img []byte
	}
	var snaps []snap
	for round := range 5 {
		for range 60 {
			randomWrite(t, rng, v, model)
		}
		switch round {
		case 2: // trim and zero across block boundaries, including data blocks
			if err := v.Trim(ctx, 4096*10+100, 4096*7); err != nil {
				t.Fatal(err)
			}
			clear(model[4096*10+100 : 4096*17+100])
			if err := v.WriteZeroes(ctx, 1<<20, 1<<20); err != nil {
				t.Fatal(err)
			}
			clear(model[1<<20 : 2<<20])
		case 3: // grow by a non-block multiple
			if err := v.Resize(ctx, size+4096*300+512); err != nil {
				t.Fatal(err)
			}
			model = append(model, make([]byte, 4096*300+512)...)
			if err := v.Resize(ctx, 4096); !errors.Is(err, ErrShrink) {
				t.Fatalf("shrink: got %v, want ErrShrink", err)
			}
			for range 20 {
				randomWrite(t, rng, v, model)
			}
		}
		if got := image(t, v); !bytes.Equal(got, model) {
			t.Fatalf("round %d: volume differs from model at %d", round, firstDiff(got, model))
		}
		env.clk.Advance(time.Hour)
		si, err := env.e.Snapshot(ctx, "vol-1", fmt.Sprintf("s%d", round))
		if err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		if si.Size != int64(len(model)) {
			t.Fatalf("snapshot size %d, want %d", si.Size, len(model))
		}
		snaps = append(snaps, snap{si.ID, slices.Clone(model)})
	}
	list, err := env.e.ListSnapshots(ctx, "vol-1")
	if err != nil || len(list) != len(snaps) {
		t.Fatalf("ListSnapshots: %d entries, err %v; want %d", len(list), err, len(snaps))
	}
	for i, s := range snaps {
		if list[i].ID != s.id {
			t.Errorf("list[%d] = %s, want %s (oldest first)", i, list[i].ID, s.id)
		}
		checkSnapshot(t, env, s.id, s.img)
		if _, err := env.e.VerifySnapshot(ctx, s.id); err != nil {
			t.Errorf("VerifySnapshot(%s): %v", s.id, err)
		}
	}
	// The engine persists across Close/Open.
	if err := env.e.Close(); err != nil {
		t.Fatal(err)
	}
	e2, err := Open(ctx, env.dir, env.chunks, env.blobs, Options{Catalogue: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	env.e = e2
	defer e2.Close()
	if e2.BlockSize() != 4<<10 {
		t.Fatalf("reopened block size %d", e2.BlockSize())
	}
	v2, err := e2.OpenVolume(ctx, "vol-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := image(t, v2); !bytes.Equal(got, model) {
		t.Fatal("reopened volume differs")
	}
	if n := v2.DirtyBlocks(); n != 0 {
		t.Fatalf("clean reopen after snapshot: %d dirty blocks, want 0", n)
	}
	if _, err := Open(ctx, env.dir, env.chunks, env.blobs, Options{BlockSize: 64 << 10, Catalogue: memstore.New()}); !errors.Is(err, ErrBlockSize) {
		t.Fatalf("reopen with other block size: %v, want ErrBlockSize", err)
	}
}

// TestConcurrentWritersDuringSnapshot runs writers throughout several
// snapshots. The test hooks pause the writers exactly at the swap and capture
// the image then; each snapshot must equal its image byte for byte.
func TestConcurrentWritersDuringSnapshot(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10, CBWMemory: 16 << 10})
	const size = 8 << 20
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	gate := captureAtSwap(t, env, v)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				select {
				case <-stop:
					return
				default:
				}
				gate.RLock()
				switch rng.IntN(10) {
				case 0:
					off := rng.Int64N(size/4096) * 4096
					_ = v.Trim(ctx, off, min(4096*int64(1+rng.IntN(4)), size-off))
				default:
					randomWrite(t, rng, v, nil)
				}
				gate.RUnlock()
			}
		}()
	}
	type snap struct {
		id  string
		img []byte
	}
	var snaps []snap
	var cbw int64
	for i := range 6 {
		// Let the writers dirty some blocks first.
		for v.DirtyBlocks() < 200 {
			time.Sleep(time.Millisecond)
		}
		si, err := env.e.Snapshot(ctx, "vol", fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatal(err)
		}
		cbw += si.Stats.CBWBlocks
		snaps = append(snaps, snap{si.ID, gate.captured})
	}
	close(stop)
	wg.Wait()
	t.Logf("copy-before-write blocks over %d snapshots: %d", len(snaps), cbw)
	for _, s := range snaps {
		checkSnapshot(t, env, s.id, s.img)
	}
}

// TestCopyBeforeWrite overwrites every block the snapshot has taken before
// it reads any of them (from the after-swap hook, so deterministically) and
// with a tiny CBW memory budget so most copies spill to the side file.
func TestCopyBeforeWrite(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10, CBWMemory: 3 * 4 << 10})
	v, err := env.e.CreateVolume(ctx, "vol", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	model := make([]byte, 1<<20)
	for range 100 {
		randomWrite(t, rng, v, model)
	}
	want := slices.Clone(model)
	dirty := v.DirtyBlocks()
	env.e.hooks.afterSwap = func(string) {
		// Overwrite everything, partially and wholly, and trim a range.
		for off := int64(0); off < 1<<20; off += 4096 {
			p := bytes.Repeat([]byte{0xEE}, 1000)
			if _, err := v.WriteAt(p, off+100); err != nil {
				t.Error(err)
			}
		}
		if err := v.Trim(ctx, 64<<10, 64<<10); err != nil {
			t.Error(err)
		}
	}
	si, err := env.e.Snapshot(ctx, "vol", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if si.Stats.CBWBlocks != dirty {
		t.Errorf("CBW blocks = %d, want %d (every taken block)", si.Stats.CBWBlocks, dirty)
	}
	checkSnapshot(t, env, "s1", want)
	env.e.hooks.afterSwap = nil
	// The writes made during the snapshot belong to the next one.
	after := image(t, v)
	if _, err := env.e.Snapshot(ctx, "vol", "s2"); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, env, "s2", after)
}

func TestIncrementalCost(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{}) // 64 KiB blocks
	const size = 32 << 20
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		if _, err := v.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	s1, err := env.e.Snapshot(ctx, "vol", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if s1.Stats.BlocksRead != size/DefaultBlockSize {
		t.Fatalf("first snapshot read %d blocks, want %d", s1.Stats.BlocksRead, size/DefaultBlockSize)
	}
	const k = 5
	changed := []int64{3, 100, 101, 300, 511}
	for _, b := range changed {
		if _, err := v.WriteAt([]byte{1, 2, 3}, b*DefaultBlockSize+17); err != nil {
			t.Fatal(err)
		}
	}
	puts0, gets0 := env.chunks.puts.Load(), env.chunks.gets.Load()
	s2, err := env.e.Snapshot(ctx, "vol", "s2")
	if err != nil {
		t.Fatal(err)
	}
	puts, gets := env.chunks.puts.Load()-puts0, env.chunks.gets.Load()-gets0
	// 512 blocks = 2 pages; blocks 3,100,101 in page 0 and 300,511 in page 1.
	if s2.Stats.BlocksRead != k || s2.Stats.BlocksStored != k {
		t.Errorf("incremental snapshot read %d / stored %d blocks, want %d", s2.Stats.BlocksRead, s2.Stats.BlocksStored, k)
	}
	if want := int64(k + 2 + 1); puts != want { // blocks + changed pages + record
		t.Errorf("incremental snapshot did %d Puts, want %d", puts, want)
	}
	if want := int64(1 + 2); gets != want { // parent record + 2 parent pages
		t.Errorf("incremental snapshot did %d Gets, want %d", gets, want)
	}
	// No change at all: nothing read, every page reused.
	s3, err := env.e.Snapshot(ctx, "vol", "s3")
	if err != nil {
		t.Fatal(err)
	}
	if s3.Stats.BlocksRead != 0 || s3.Stats.PagesWritten != 0 || s3.Stats.PagesReused != 2 {
		t.Errorf("unchanged snapshot stats %+v, want no reads, no pages written, 2 reused", s3.Stats)
	}
	d, err := env.e.Diff(ctx, "s1", "s2")
	if err != nil {
		t.Fatal(err)
	}
	want := []Extent{
		{Offset: 3 * DefaultBlockSize, Length: DefaultBlockSize},
		{Offset: 100 * DefaultBlockSize, Length: 2 * DefaultBlockSize},
		{Offset: 300 * DefaultBlockSize, Length: DefaultBlockSize},
		{Offset: 511 * DefaultBlockSize, Length: DefaultBlockSize},
	}
	if !slices.Equal(d, want) {
		t.Errorf("Diff(s1, s2) = %v, want %v", d, want)
	}
	if d, err := env.e.Diff(ctx, "s2", "s3"); err != nil || len(d) != 0 {
		t.Errorf("Diff(s2, s3) = %v, %v; want none", d, err)
	}
}

func TestDiffAndDeleteMiddle(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10})
	const size = 4 << 20 // 1024 blocks, 4 pages
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	write := func(blocks ...int64) {
		for _, b := range blocks {
			p := bytes.Repeat([]byte{byte(b%250 + 1)}, 4096)
			if _, err := v.WriteAt(p, b*4096); err != nil {
				t.Fatal(err)
			}
			copy(model[b*4096:], p)
		}
	}
	write(0, 1, 2, 700)
	s1, _ := env.e.Snapshot(ctx, "vol", "a")
	img1 := slices.Clone(model)
	write(1, 2, 3, 900, 1023)
	if err := v.Trim(ctx, 700*4096, 4096); err != nil { // data → hole
		t.Fatal(err)
	}
	clear(model[700*4096 : 701*4096])
	write(2) // same contents as before: not a change
	s2, err := env.e.Snapshot(ctx, "vol", "b")
	if err != nil {
		t.Fatal(err)
	}
	img2 := slices.Clone(model)
	write(500)
	s3, _ := env.e.Snapshot(ctx, "vol", "c")
	img3 := slices.Clone(model)

	got, err := env.e.Diff(ctx, s1.ID, s2.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Block 1 and 2 were rewritten with the same bytes (same chunk ID).
	want := []Extent{{3 * 4096, 4096, false}, {700 * 4096, 4096, false}, {900 * 4096, 4096, false}, {1023 * 4096, 4096, false}}
	if !slices.Equal(got, want) {
		t.Errorf("Diff(a, b) = %v, want %v", got, want)
	}
	got, _ = env.e.Diff(ctx, s1.ID, s3.ID)
	want = []Extent{{3 * 4096, 4096, false}, {500 * 4096, 4096, false}, {700 * 4096, 4096, false}, {900 * 4096, 4096, false}, {1023 * 4096, 4096, false}}
	if !slices.Equal(got, want) {
		t.Errorf("Diff(a, c) = %v, want %v", got, want)
	}

	if err := env.e.DeleteSnapshot(ctx, s2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.StatSnapshot(ctx, s2.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted snapshot: %v, want ErrNotFound", err)
	}
	if err := env.e.DeleteSnapshot(ctx, s2.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v, want ErrNotFound", err)
	}
	_ = img2
	checkSnapshot(t, env, s1.ID, img1)
	checkSnapshot(t, env, s3.ID, img3)
	if got, _ := env.e.Diff(ctx, s1.ID, s3.ID); !slices.Equal(got, want) {
		t.Errorf("Diff after delete = %v", got)
	}
}

// TestMarkLiveAndVerify checks that MarkLive marks exactly what restores
// need and that VerifySnapshot finds a corrupt chunk.
func TestMarkLiveAndVerify(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10})
	v, _ := env.e.CreateVolume(ctx, "vol", 2<<20)
	rng := rand.New(rand.NewPCG(9, 9))
	for range 50 {
		randomWrite(t, rng, v, nil)
	}
	s1, _ := env.e.Snapshot(ctx, "vol", "s1")
	img1 := image(t, v)
	for range 50 {
		randomWrite(t, rng, v, nil)
	}
	s2, _ := env.e.Snapshot(ctx, "vol", "s2")
	img2 := image(t, v)

	live := func() map[chunk.ID]bool {
		m := map[chunk.ID]bool{}
		if err := env.e.MarkLive(ctx, func(id chunk.ID) { m[id] = true }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	// Sweep everything unmarked, as a GC would, then restore.
	sweep := func(m map[chunk.ID]bool) int {
		env.chunks.mu.Lock()
		defer env.chunks.mu.Unlock()
		n := 0
		for id := range env.chunks.m {
			if !m[id] {
				delete(env.chunks.m, id)
				n++
			}
		}
		return n
	}
	sweep(live())
	checkSnapshot(t, env, s1.ID, img1)
	checkSnapshot(t, env, s2.ID, img2)

	// Deleting s1 frees its unique chunks; s2 (also the volume's base) stays.
	if err := env.e.DeleteSnapshot(ctx, s1.ID); err != nil {
		t.Fatal(err)
	}
	if n := sweep(live()); n == 0 {
		t.Error("deleting s1 freed no chunks")
	}
	checkSnapshot(t, env, s2.ID, img2)
	// The volume's base is pinned even when its snapshot is deleted, so the
	// next incremental snapshot is still complete.
	if err := env.e.DeleteSnapshot(ctx, s2.ID); err != nil {
		t.Fatal(err)
	}
	sweep(live())
	for range 10 {
		randomWrite(t, rng, v, nil)
	}
	s3, err := env.e.Snapshot(ctx, "vol", "s3")
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, env, s3.ID, image(t, v))

	res, err := env.e.VerifySnapshot(ctx, s3.ID)
	if err != nil || res.Chunks == 0 {
		t.Fatalf("VerifySnapshot: %+v, %v", res, err)
	}
	r, _ := env.e.loadRecord(ctx, s3.Record)
	page, _ := env.e.loadPage(ctx, r, 0)
	var victim chunk.ID
	for _, id := range page {
		if !id.IsZero() {
			victim = id
			break
		}
	}
	env.chunks.corrupt(victim)
	res, err = env.e.VerifySnapshot(ctx, s3.ID)
	if !errors.Is(err, ErrCorrupt) || len(res.Problems) != 1 || res.Problems[0].ID != victim {
		t.Fatalf("VerifySnapshot after corruption: %+v, %v; want one problem with chunk %s", res, err, victim.Short())
	}
}

func TestExtents(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10})
	v, _ := env.e.CreateVolume(ctx, "vol", 1<<20)
	if _, err := v.WriteAt(bytes.Repeat([]byte{1}, 8192), 16384); err != nil {
		t.Fatal(err)
	}
	got, err := v.Extents(ctx, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := []Extent{{0, 16384, true}, {16384, 8192, false}, {24576, 1<<20 - 24576, true}}
	if !slices.Equal(got, want) {
		t.Errorf("volume extents %v, want %v", got, want)
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s"); err != nil {
		t.Fatal(err)
	}
	r, _ := env.e.OpenSnapshot(ctx, "s")
	got, err = r.Extents(ctx, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("snapshot extents %v, want %v", got, want)
	}
	if _, err := v.WriteAt([]byte{1}, 1<<20); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("write past end: %v, want ErrOutOfRange", err)
	}
	if _, err := env.e.CreateVolume(ctx, "vol", 1<<20); !errors.Is(err, ErrExists) {
		t.Errorf("create twice: %v, want ErrExists", err)
	}
	if _, err := env.e.CreateVolume(ctx, "../x", 1<<20); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad ID: %v, want ErrInvalid", err)
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s"); !errors.Is(err, ErrExists) {
		t.Errorf("snapshot ID reuse: %v, want ErrExists", err)
	}
}

// TestRestoreLargeBlocks restores with the largest block size, where a
// restore worker's buffer holds a span of a page rather than a whole page
// (restoreBufBytes), with holes and a partial last block.
func TestRestoreLargeBlocks(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 20
	env := newTestEnv(t, Options{BlockSize: bs})
	size := int64(11*bs + 512*7) // a partial last block
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	if span := restoreBufBytes / bs; span >= 11 {
		t.Fatalf("a span of %d blocks covers the volume: the test needs more blocks", span)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	model := make([]byte, size)
	for _, b := range []int64{0, 1, 3, 4, 5, 8, 11} { // 2, 6, 7, 9, 10 stay holes
		n := min(int64(bs), size-b*bs)
		p := make([]byte, n)
		fillRandom(rng, p)
		p[0] = 1 // not a zero block
		if _, err := v.WriteAt(p, b*bs); err != nil {
			t.Fatal(err)
		}
		copy(model[b*bs:], p)
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s1"); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, env, "s1", model)
}

// failingWriter fails its failAt-th WriteAt (1-based) with errStop, or
// cancels the restore's context there instead; it records a WriteAt that
// comes after the restore returned, which would touch released buffers.
type failingWriter struct {
	writes   atomic.Int64
	failAt   int64
	cancel   context.CancelFunc
	returned atomic.Bool
	late     atomic.Int64
	// stopped is set once the failing call has cancelled the context;
	// afterStop counts the calls that began after that.
	stopped   atomic.Bool
	afterStop atomic.Int64
}

var errStop = errors.New("stop here")

func (w *failingWriter) WriteAt(p []byte, off int64) (int, error) {
	if w.returned.Load() {
		w.late.Add(1)
	}
	if w.stopped.Load() {
		w.afterStop.Add(1)
	}
	if w.writes.Add(1) == w.failAt {
		if w.cancel != nil {
			w.cancel()
			w.stopped.Store(true)
			return 0, context.Canceled
		}
		return 0, errStop
	}
	time.Sleep(time.Millisecond) // let the other workers get going
	return len(p), nil
}

// TestRestoreStopsCleanly stops full restores part way, by a write error
// and by cancellation: RestoreTo returns that error only after every
// worker has stopped writing (its buffers are released on return), and a
// later restore of the same snapshot is still exact.
func TestRestoreStopsCleanly(t *testing.T) {
	ctx := context.Background()
	// 2+restoreIODepth restore workers; 48 pages of 256 blocks, more
	// pages than workers.
	env := newTestEnv(t, Options{BlockSize: 4 << 10, Workers: 2})
	const size = 48 << 20
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	model := make([]byte, size)
	for off := int64(0); off < size; off += 96 << 10 { // data in every page
		p := make([]byte, 8<<10)
		fillRandom(rng, p)
		p[0] = 1
		if _, err := v.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], p)
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s1"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		cancel bool
		want   error
	}{{"write error", false, errStop}, {"cancelled", true, context.Canceled}} {
		t.Run(tc.name, func(t *testing.T) {
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			w := &failingWriter{failAt: 5}
			if tc.cancel {
				w.cancel = cancel
			}
			err := env.e.RestoreTo(rctx, "s1", w)
			w.returned.Store(true)
			if !errors.Is(err, tc.want) {
				t.Fatalf("RestoreTo: got %v, want %v", err, tc.want)
			}
			time.Sleep(20 * time.Millisecond)
			if n := w.late.Load(); n > 0 {
				t.Fatalf("%d writes after RestoreTo returned", n)
			}
			// 512 data runs in all. Once the context is cancelled, each
			// of the other 7 workers may still start the one write it
			// had checked the context for, and no more. Writes that begin
			// between the failing call and the cancellation reaching the
			// workers are counted only in the total: that window is as
			// long as the scheduler makes it (the failing call's own
			// return, for a write error), so the total is bounded only by
			// the restore not having finished.
			if n := w.afterStop.Load(); n > 7 {
				t.Fatalf("%d writes began after the cancellation: the restore did not stop", n)
			}
			if n := w.writes.Load(); n >= 512 {
				t.Fatalf("%d writes: the restore did not stop", n)
			}
		})
	}
	checkSnapshot(t, env, "s1", model)
}

// TestShortIndexPageIsFormatError stores a snapshot whose second index
// page has fewer entries than the record's size needs: a full restore and
// a read through the snapshot reader both fail with ErrFormat, naming the
// page, instead of restoring wrong data.
func TestShortIndexPageIsFormatError(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10})
	e := env.e
	data := bytes.Repeat([]byte{7}, int(e.bs))
	did, err := e.chunks.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	full := make([]chunk.ID, EntriesPerPage)
	for i := range full {
		full[i] = did
	}
	const nb = EntriesPerPage + 44
	storeSnapshot(t, e, "bad", nb*e.bs, [][]chunk.ID{full, full[:10]}) // page 1 should have 44

	err = e.RestoreTo(ctx, "bad", &writerAtBuf{b: make([]byte, nb*e.bs)})
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "index page 1") {
		t.Fatalf("RestoreTo: got %v, want ErrFormat for index page 1", err)
	}
	r, err := e.OpenSnapshot(ctx, "bad")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, e.bs)
	if _, err := r.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("read of block 0 (page 0 is sound): %v", err)
	}
	if _, err := r.ReadAt(buf, (EntriesPerPage+1)*e.bs); !errors.Is(err, ErrFormat) {
		t.Fatalf("read of a block of page 1: got %v, want ErrFormat", err)
	}
}
