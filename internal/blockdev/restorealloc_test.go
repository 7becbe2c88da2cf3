package blockdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"coffer/internal/capacity"
	"coffer/internal/chunk"
	"coffer/internal/clock"
	"coffer/internal/directio"
	"coffer/internal/lowprio"
)

// TestAllocateData: allocateData reserves every run of consecutive data
// blocks of a batch of pages with one call, runs crossing from one page
// into the next included, and nothing of the holes: whole pages of holes
// (nil) and hole entries end runs, and the last run ends at the size of a
// partial last block.
func TestAllocateData(t *testing.T) {
	const bs = 4096
	const b0 = 2 // the batch's first page: offsets count from it
	data := chunk.ID{1}
	page := func(data ...[2]int) []chunk.ID { // entries with data in [lo, hi)
		p := make([]chunk.ID, EntriesPerPage)
		for _, r := range data {
			for i := r[0]; i < r[1]; i++ {
				p[i] = chunk.ID{byte(i), 1}
			}
		}
		return p
	}
	last := page([2]int{0, 100})[:100] // a short last page
	for i := range last {
		last[i] = data
	}
	pages := [][]chunk.ID{
		page([2]int{0, 10}, [2]int{11, EntriesPerPage}),
		nil, // holes only
		page([2]int{0, 5}),
		page([2]int{250, EntriesPerPage}),
		last,
	}
	nb := int64((b0+4)*EntriesPerPage + 100)
	rec := &record{BlockSize: bs, Size: nb*bs - 1000}
	first := int64(b0 * EntriesPerPage)
	want := []span{
		{first * bs, 10 * bs},
		{(first + 11) * bs, (EntriesPerPage - 11) * bs},
		{(first + 2*EntriesPerPage) * bs, 5 * bs},
		{(first + 3*EntriesPerPage + 250) * bs, rec.Size - (first+3*EntriesPerPage+250)*bs},
	}
	var got []span
	a := allocFunc(func(off, n int64) error { got = append(got, span{off, n}); return nil })
	if err := allocateData(a, rec, b0, pages); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("allocated %v, want %v", got, want)
	}

	full := allocFunc(func(off, n int64) error { return unix.ENOSPC })
	err := allocateData(full, rec, b0, pages)
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("allocation on a full file system: %v, want ENOSPC", err)
	}
}

// allocWriter is an io.WriterAt and an allocator that records both, and
// fails each allocation with fail (nil: none).
type allocWriter struct {
	writerAtBuf
	fail error

	mu        sync.Mutex
	allocated []span
	allocs    int
	// unallocated are the writes that were not inside a range allocated
	// before them.
	unallocated []span
}

func (w *allocWriter) allocate(off, n int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.allocs++
	if w.fail != nil {
		return &os.PathError{Op: "fallocate", Path: "test", Err: w.fail}
	}
	w.allocated = append(w.allocated, span{off, n})
	return nil
}

func (w *allocWriter) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	in := false
	for _, a := range w.allocated {
		in = in || (off >= a.off && off+int64(len(p)) <= a.off+a.n)
	}
	if !in {
		w.unallocated = append(w.unallocated, span{off, int64(len(p))})
	}
	w.mu.Unlock()
	return w.writerAtBuf.WriteAt(p, off)
}

// TestRestoreAllocatesBeforeWriting: a restore into a writer that can
// allocate (RestoreToFile's) has every write land in a range allocated
// before it, over two batches of pages, with the holes left unallocated;
// a writer whose file system cannot allocate (errors.ErrUnsupported) is
// asked once and then written as it is, and one that is full fails the
// restore before anything is written.
func TestRestoreAllocatesBeforeWriting(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs, Workers: 2})
	batch := int64(pageBatch * EntriesPerPage * bs)
	size := 2*batch + 40*bs // three batches of pages, the last short
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	model := make([]byte, size)
	var data int64
	for _, r := range [][2]int64{{0, 3}, {5, 300}, {batch/bs - 2, batch/bs + 7}, {2*batch/bs + 1, 2*batch/bs + 40}} {
		p := make([]byte, (r[1]-r[0])*bs)
		for i := range p {
			p[i] = byte(rng.Uint32() | 1) // no zero block
		}
		if _, err := v.WriteAt(p, r[0]*bs); err != nil {
			t.Fatal(err)
		}
		copy(model[r[0]*bs:], p)
		data += int64(len(p))
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s1"); err != nil {
		t.Fatal(err)
	}

	w := &allocWriter{writerAtBuf: writerAtBuf{b: make([]byte, size)}}
	if err := env.e.RestoreTo(ctx, "s1", w); err != nil {
		t.Fatal(err)
	}
	if sum(w.b) != sum(model) {
		t.Fatalf("restored image differs at %d", firstDiff(w.b, model))
	}
	if len(w.unallocated) > 0 {
		t.Fatalf("%d writes outside the ranges allocated before them, the first %v (allocated: %v)", len(w.unallocated), w.unallocated[0], w.allocated)
	}
	var allocated int64
	for _, a := range w.allocated {
		allocated += a.n
	}
	if allocated != data {
		t.Fatalf("allocated %d bytes in %v, want the %d bytes of data", allocated, w.allocated, data)
	}

	unsupported := &allocWriter{writerAtBuf: writerAtBuf{b: make([]byte, size)}, fail: unix.EOPNOTSUPP}
	if err := env.e.RestoreTo(ctx, "s1", unsupported); err != nil {
		t.Fatalf("restore where allocation is unsupported: %v", err)
	}
	if sum(unsupported.b) != sum(model) || unsupported.allocs != 1 {
		t.Fatalf("restore where allocation is unsupported: image differs at %d, %d allocations (want 1)", firstDiff(unsupported.b, model), unsupported.allocs)
	}

	full := &allocWriter{writerAtBuf: writerAtBuf{b: make([]byte, size)}, fail: unix.ENOSPC}
	if err := env.e.RestoreTo(ctx, "s1", full); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("restore where allocation finds no space: %v, want ENOSPC", err)
	}
	if n := len(full.unallocated); n != 0 {
		t.Fatalf("restore where allocation finds no space wrote %d times", n)
	}
}

// TestRestoreToFileStaysSparse: RestoreToFile allocates the data blocks
// of its file before it writes them, and only those: the file holds the
// data's bytes on disk, not the holes'.
func TestRestoreToFileStaysSparse(t *testing.T) {
	ctx := context.Background()
	const bs = 64 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	const size = 256 << 20
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(5, 6))
	var data int64
	for _, b := range []int64{0, 1, 2, 100, 1000, 2000, 2001, 4095} {
		p := make([]byte, bs)
		fillRandom(rng, p)
		p[0] = 1
		if _, err := v.WriteAt(p, b*bs); err != nil {
			t.Fatal(err)
		}
		copy(model[b*bs:], p)
		data += bs
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s1"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "restored.img")
	if err := env.e.RestoreToFile(ctx, "s1", path); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sum(got) != sum(model) {
		t.Fatalf("restored file differs at %d", firstDiff(got, model))
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	// The extent tree may take a block or two beyond the data.
	if onDisk := st.Blocks * 512; onDisk < data || onDisk > data+64<<10 {
		t.Fatalf("the restored file takes %d bytes on disk, want the %d bytes of its data", onDisk, data)
	}
}

// TestRestoreFileAllocate: restoreFile.allocate reserves the range on
// disk, reading as zeros, without changing the file's size.
func TestRestoreFileAllocate(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(4 << 20); err != nil {
		t.Fatal(err)
	}
	err = restoreFile{f: f}.allocate(1<<20, 1<<20)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("no fallocate here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 4<<20 || st.Blocks*512 < 1<<20 {
		t.Fatalf("after allocating 1 MiB: size %d, %d bytes on disk; want 4 MiB and at least 1 MiB", st.Size, st.Blocks*512)
	}
	got := make([]byte, 1<<20)
	if _, err := f.ReadAt(got, 1<<20); err != nil {
		t.Fatal(err)
	}
	for i, c := range got {
		if c != 0 {
			t.Fatalf("allocated byte %d reads %#x, want 0", i, c)
		}
	}
}

// TestRestoreToFileSyncsAsItGoes: RestoreToFile fdatasyncs its file in the
// background as its direct writes pass each directio.SyncEvery bytes, before
// its final fsync, and the file comes out exact.
func TestRestoreToFileSyncsAsItGoes(t *testing.T) {
	ctx := context.Background()
	const bs = 64 << 10
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if d, err := directio.Open(probe, os.O_WRONLY); err != nil {
		t.Skipf("no direct I/O here: %v", err)
	} else {
		d.Close()
	}
	env := newTestEnv(t, Options{BlockSize: bs})
	const size = 3 * directio.SyncEvery
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(7, 8)), model)
	if _, err := v.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := env.e.Snapshot(ctx, "vol", "s1"); err != nil {
		t.Fatal(err)
	}
	var syncs int64 = -1
	env.e.hooks.restored = func(_ string, n int64) { syncs = n }
	path := filepath.Join(dir, "restored.img")
	if err := env.e.RestoreToFile(ctx, "s1", path); err != nil {
		t.Fatal(err)
	}
	if syncs < 1 {
		t.Fatalf("%d background fdatasyncs while %d bytes were written with direct I/O, want at least one (every %d)", syncs, size, directio.SyncEvery)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sum(got) != sum(model) {
		t.Fatalf("restored file differs at %d", firstDiff(got, model))
	}
}

// TestRestoreVolumePreallocates: a new restored volume's file has the
// blocks of the source's data runs allocated before the hydrator writes
// any (preallocate), and none of its holes; a write into a block not
// hydrated yet and the hydration after it give the snapshot's contents
// with that write. With a capacity monitor that has no room for the
// runs, nothing is allocated ahead and hydration still completes.
func TestRestoreVolumePreallocates(t *testing.T) {
	const bs = 64 << 10
	for _, tc := range []struct {
		name string
		free int64 // the monitor's free bytes; 0: no monitor
		want bool  // the data runs allocated ahead
	}{
		{"room", 0, true},
		// Above the reserve (1 MiB) by 3 MiB: room for each hydration
		// job (a page's data blocks, at most 40 here), not for all 53.
		{"no room", 4 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{BlockSize: bs, Workers: 2}
			if tc.free > 0 {
				m := capacity.NewMonitor(clock.NewFake(time.Now()), 1<<20, t.TempDir())
				m.SetStatfs(func(string) (int64, int64, error) { return tc.free, 1 << 40, nil })
				opts.Space = m
			}
			env := newTestEnv(t, opts)
			e, ctx := env.e, context.Background()
			const nb = 3*EntriesPerPage + 10 // a short last page
			size := int64(nb*bs - 5120)      // and a partial last block
			model := make([]byte, size)
			rng := rand.New(rand.NewPCG(14, 1))
			// Data runs, one across a page's end, and the partial last
			// block; holes between.
			runs := [][2]int64{{0, 3}, {7, 8}, {EntriesPerPage - 2, EntriesPerPage + 5}, {2 * EntriesPerPage, 2*EntriesPerPage + 40}, {nb - 2, nb}}
			var data int64
			for _, r := range runs {
				lo, hi := r[0]*bs, min(r[1]*bs, size)
				fillRandom(rng, model[lo:hi])
				for b := lo; b < hi; b += bs {
					model[b] = 1 // no all-zero block: each is stored
				}
				data += hi - lo
			}
			src, err := e.CreateVolume(ctx, "src", size)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := src.WriteAt(model, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Snapshot(ctx, "src", "s1"); err != nil {
				t.Fatal(err)
			}
			reached, hold := holdHydrators(e)
			v, err := e.RestoreVolume(ctx, "s1", "r")
			if err != nil {
				t.Fatal(err)
			}
			<-reached // preallocate has run; no block is hydrated yet
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(e.volDir("r"), "data"), &st); err != nil {
				t.Fatal(err)
			}
			// The runs are 4 KiB-aligned but for the last one, which
			// ends at the file's end: allocated space is data rounded up
			// to a file-system block (plus an extent block at most).
			got := st.Blocks * 512
			if tc.want && (got < data || got > data+8192) {
				t.Errorf("before hydration: %d bytes allocated, want the %d of the data runs", got, data)
			}
			if !tc.want && got != 0 {
				t.Errorf("before hydration, without room: %d bytes allocated, want none", got)
			}
			// A write into a block not hydrated yet, inside a data run.
			w := make([]byte, 8192)
			fillRandom(rng, w)
			off := int64(2*EntriesPerPage+3)*bs + 4096
			if _, err := v.WriteAt(w, off); err != nil {
				t.Fatal(err)
			}
			copy(model[off:], w)
			close(hold)
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := v.WaitHydrated(wctx); err != nil {
				t.Fatal(err)
			}
			if got := image(t, v); sum(got) != sum(model) {
				t.Fatalf("hydrated volume differs from the snapshot with the write at byte %d", firstDiff(got, model))
			}
		})
	}
}

// BenchmarkWriteUnhydrated: 4 KiB writes at random 4 KiB-aligned offsets
// of a restored 1 GiB volume none of whose blocks is hydrated (the
// hydrator held at its first job), into the file as preallocate leaves
// it ("allocated") and with that space punched out again ("hole": the
// sparse file of a restore without preallocate). Reports the process's
// CPU per write (getrusage: the writer's, with nothing else running),
// and the fdatasync of the writes after the loop per write (their
// writeback: delayed allocation, or unwritten extents converted). Run
// with -benchtime 20000x (80 MiB of 1 GiB: few pages written twice).
func BenchmarkWriteUnhydrated(b *testing.B) {
	for _, mode := range []string{"hole", "allocated"} {
		b.Run(mode, func(b *testing.B) {
			env := newTestEnv(b, Options{Workers: 2})
			e, ctx := env.e, context.Background()
			id, err := e.chunks.Put(ctx, make([]byte, e.bs)) // any data: never read here
			if err != nil {
				b.Fatal(err)
			}
			entries := make([]chunk.ID, (1<<30)/e.bs)
			for i := range entries {
				entries[i] = id
			}
			synthSnapshot(b, e, "s", entries)
			reached, hold := holdHydrators(e)
			v, err := e.RestoreVolume(ctx, "s", "r")
			if err != nil {
				b.Fatal(err)
			}
			defer close(hold)
			<-reached
			if mode == "hole" {
				if err := unix.Fallocate(int(v.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, v.size); err != nil {
					b.Fatal(err)
				}
			}
			if err := v.f.Sync(); err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			p := make([]byte, 4096)
			fillRandom(rng, p)
			p[0] = 1
			var r0, r1 unix.Rusage
			_ = unix.Getrusage(unix.RUSAGE_SELF, &r0)
			b.ResetTimer()
			for range b.N {
				if _, err := v.WriteAt(p, rng.Int64N(v.size/4096)*4096); err != nil {
					b.Fatal(err)
				}
			}
			_ = unix.Getrusage(unix.RUSAGE_SELF, &r1)
			t0 := time.Now()
			if err := unix.Fdatasync(int(v.f.Fd())); err != nil {
				b.Fatal(err)
			}
			sync := time.Since(t0)
			b.StopTimer()
			cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "cpu-µs/write")
			b.ReportMetric(float64(sync.Nanoseconds())/1e3/float64(b.N), "sync-µs/write")
		})
	}
}

// BenchmarkWriteDuringHydration: BenchmarkWriteUnhydrated with the
// hydrator running (the engine's clock, the yield gate as in use): 4 KiB
// writes at random 4 KiB-aligned offsets of a 1 GiB restored volume from
// the restore on, the file as preallocate leaves it ("allocated") or
// punched out before the first hydration job ("hole"). Reports the
// process's CPU per write (the writer's and the hydrator's: see
// hydrated-%, the share of the blocks hydrated by the loop's end), and
// checks the volume against the snapshot with the writes, by hash, once
// hydrated.
func BenchmarkWriteDuringHydration(b *testing.B) {
	for _, mode := range []string{"hole", "allocated"} {
		b.Run(mode, func(b *testing.B) {
			env := newTestEnv(b, Options{Workers: 2, Clock: clock.Real{}})
			e, ctx := env.e, context.Background()
			rng := rand.New(rand.NewPCG(1, 3))
			blk := make([]byte, e.bs)
			for i := range blk {
				blk[i] = "abcdefgh \n"[rng.IntN(10)] // compresses, as text does
			}
			id, err := e.chunks.Put(ctx, blk)
			if err != nil {
				b.Fatal(err)
			}
			const size = 1 << 30
			entries := make([]chunk.ID, size/e.bs)
			for i := range entries {
				entries[i] = id
			}
			synthSnapshot(b, e, "s", entries)
			model := make([]byte, size)
			for off := 0; off < size; off += len(blk) {
				copy(model[off:], blk)
			}
			var once sync.Once
			ready := make(chan struct{})
			e.hooks.hydrator = func(ctx context.Context, vol string) {
				once.Do(func() { <-ready })
			}
			v, err := e.RestoreVolume(ctx, "s", "r")
			if err != nil {
				b.Fatal(err)
			}
			if mode == "hole" {
				// Wait for preallocate (the first job's hook holds the
				// hydrator), then undo it.
				for {
					var st unix.Stat_t
					if err := unix.Fstat(int(v.f.Fd()), &st); err != nil {
						b.Fatal(err)
					}
					if st.Blocks*512 >= size {
						break
					}
					time.Sleep(time.Millisecond)
				}
				if err := unix.Fallocate(int(v.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, size); err != nil {
					b.Fatal(err)
				}
			}
			p := make([]byte, 4096)
			var r0, r1 unix.Rusage
			runtime.LockOSThread() // the writer's own CPU: its thread's
			defer runtime.UnlockOSThread()
			_ = unix.Getrusage(unix.RUSAGE_SELF, &r0)
			w0 := lowprio.ThreadCPU()
			b.ResetTimer()
			close(ready)
			for range b.N {
				fillRandom(rng, p[:64]) // some bytes differ per write
				off := rng.Int64N(size/4096) * 4096
				if _, err := v.WriteAt(p, off); err != nil {
					b.Fatal(err)
				}
				copy(model[off:], p)
			}
			w1 := lowprio.ThreadCPU()
			_ = unix.Getrusage(unix.RUSAGE_SELF, &r1)
			b.StopTimer()
			h := v.Hydration()
			cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "cpu-µs/write")
			b.ReportMetric(float64((w1-w0).Nanoseconds())/1e3/float64(b.N), "writer-cpu-µs/write")
			b.ReportMetric(100*float64(h.DoneBytes)/float64(h.TotalBytes), "hydrated-%")
			if err := v.WaitHydrated(ctx); err != nil {
				b.Fatal(err)
			}
			if got := image(b, v); sum(got) != sum(model) {
				b.Fatalf("hydrated volume differs from the snapshot with the writes at byte %d", firstDiff(got, model))
			}
		})
	}
}

// TestReadMissKeepsTheReserve: a read of a block not hydrated yet keeps
// the block it fetched only while that leaves the free-space reserve, as
// the hydrator's jobs do. Below it the read is served from the snapshot
// and the block stays unhydrated, so that reads of a restored disk whose
// hydration stalled cannot fill the filesystem that metadata writes (a
// grant's revocation) need; once space is back, a read keeps its block.
func TestReadMissKeepsTheReserve(t *testing.T) {
	const bs = 64 << 10
	var free atomic.Int64
	free.Store(1 << 40)
	m := capacity.NewMonitor(clock.NewFake(time.Now()), 1<<20, t.TempDir())
	m.SetStatfs(func(string) (int64, int64, error) { return free.Load(), 1 << 40, nil })
	env := newTestEnv(t, Options{BlockSize: bs, Workers: 2, Space: m})
	e, ctx := env.e, context.Background()
	model := make([]byte, 8*bs)
	fillRandom(rand.New(rand.NewPCG(15, 1)), model)
	src, err := e.CreateVolume(ctx, "src", int64(len(model)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Snapshot(ctx, "src", "s1"); err != nil {
		t.Fatal(err)
	}
	free.Store(1<<20 + bs/2) // above the reserve, but not by a block
	reached, hold := holdHydrators(e)
	defer close(hold)
	v, err := e.RestoreVolume(ctx, "s1", "r")
	if err != nil {
		t.Fatal(err)
	}
	<-reached
	got := make([]byte, 4096)
	if _, err := v.ReadAt(got, 3*bs+512); err != nil {
		t.Fatalf("read below the reserve: %v", err)
	}
	if !bytes.Equal(got, model[3*bs+512:3*bs+512+4096]) {
		t.Fatal("read below the reserve differs from the snapshot")
	}
	if v.isHydrated(3) {
		t.Fatal("a read below the reserve kept its block")
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(e.volDir("r"), "data"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks != 0 {
		t.Fatalf("%d bytes allocated in the restored file below the reserve, want none", st.Blocks*512)
	}
	free.Store(1 << 40)
	if _, err := v.ReadAt(got, 3*bs+512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, model[3*bs+512:3*bs+512+4096]) || !v.isHydrated(3) {
		t.Fatal("a read with room again did not keep its block, or read wrong")
	}
}
