package blockdev

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/local"
	"coffer/internal/chunkstore"
	"coffer/internal/store/sqlite"
)

// newRealEngine opens an engine over what the server runs: the chunk store
// (zstd, BLAKE3) over the local blob store, with the SQLite chunk index and
// catalogue, all in a temporary directory.
func newRealEngine(tb testing.TB, opts Options) *Engine {
	e, _, _ := newRealEngineWith(tb, opts, nil)
	return e
}

// newRealEngineWith is newRealEngine with the chunk index wrapped by wrap
// (when not nil), and returns the blob store and the index the chunk
// store uses too.
func newRealEngineWith(tb testing.TB, opts Options, wrap func(chunkstore.Index) chunkstore.Index) (*Engine, *local.Store, chunkstore.Index) {
	tb.Helper()
	e, blobs, index, _ := newRealEngineDB(tb, opts, wrap, nil)
	return e, blobs, index
}

// newRealEngineDB is newRealEngineWith that also returns the SQLite store
// of the chunk index and catalogue (for its read pool's waits).
// The chunk store reads its blobs through wrapBlobs's store when it is
// not nil.
func newRealEngineDB(tb testing.TB, opts Options, wrap func(chunkstore.Index) chunkstore.Index, wrapBlobs func(*local.Store) blobstore.Store) (*Engine, *local.Store, chunkstore.Index, *sqlite.Store) {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	blobs, err := local.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		tb.Fatal(err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	var index chunkstore.Index = db.ChunkIndex()
	if wrap != nil {
		index = wrap(index)
	}
	var bs blobstore.Store = blobs
	if wrapBlobs != nil {
		bs = wrapBlobs(blobs)
	}
	cs, err := chunkstore.New(bs, index, chunkstore.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	opts.Catalogue = db
	e, err := Open(ctx, filepath.Join(dir, "engine"), cs, blobs, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close() })
	return e, blobs, index, db
}

// mixedImage returns size bytes in 1 MiB runs of incompressible data,
// text and zeroes in turn (a third each).
func mixedImage(size int) []byte {
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(2, 2))
	for off := 0; off < size; off += 1 << 20 {
		p := data[off:min(off+1<<20, size)]
		switch (off >> 20) % 3 {
		case 0:
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
		case 1:
			for i := range p {
				p[i] = "the quick brown fox jumps\n"[rng.IntN(26)]
			}
		}
	}
	return data
}

// cpuSeconds is the process's user and system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// TestReadMissServedFromFetch: a read of blocks not hydrated yet over the
// real chunk store (its batched path, which decompresses a chunk straight
// into the engine's buffer) hydrates them and is served from what it
// fetched: compressed, stored-raw and hole blocks, a read spanning a
// missing block and a hydrated one, a block with units written into it
// meanwhile (whose file holds more than the fetch), and the short last
// block; the volume is right before and after hydration, and the data
// blocks fetched are counted for the hydrator (hydration.fetched).
func TestReadMissServedFromFetch(t *testing.T) {
	ctx := context.Background()
	e := newRealEngine(t, Options{})
	bs := e.bs
	const size = 24<<16 + 4096 // 24 whole blocks and a short one
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(21, 22))
	for b := range int64(25) {
		blk := model[b*bs : min((b+1)*bs, size)]
		switch b % 3 {
		case 0: // incompressible: stored raw
			fillRandom(rng, blk)
		case 1: // text: compressed
			for i := range blk {
				blk[i] = "abcdefgh\n"[rng.IntN(9)]
			}
		} // case 2: a hole
	}
	src, err := e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	e.hooks.hydrator = func(ctx context.Context, vol string) {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	if _, err := e.Snapshot(ctx, "src", "s"); err != nil {
		t.Fatal(err)
	}
	v, err := e.RestoreVolume(ctx, "s", "dst")
	if err != nil {
		t.Fatal(err)
	}
	unit := bytes.Repeat([]byte{0xA5}, int(bs/writeUnits))
	for _, b := range []int64{4, 8} { // compressed, hole: units written before the read
		off := b*bs + 3*int64(len(unit))
		if _, err := v.WriteAt(unit, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], unit)
	}
	read := func(off, n int64) {
		t.Helper()
		got := make([]byte, n)
		if _, err := v.ReadAt(got, off); err != nil {
			t.Fatalf("read [%d, +%d): %v", off, n, err)
		}
		if i := firstDiff(got, model[off:off+n]); i >= 0 {
			t.Fatalf("read [%d, +%d) differs from the source at %d", off, n, off+int64(i))
		}
	}
	read(0, 4096)                    // raw
	read(bs+5000, 3000)              // compressed, mid-block
	read(2*bs+100, 100)              // hole
	read(bs+bs-512, 1024)            // the end of block 1 (hydrated now) and block 2's start
	read(3*bs+bs/2, bs)              // raw block 3's second half, compressed block 4 with written units
	read(8*bs, bs)                   // a hole with written units
	read(9*bs+bs-4096, 4096+bs+4096) // three blocks
	read(24*bs, size-24*bs)          // the short last block
	for _, b := range []int64{0, 1, 2, 3, 4, 8, 9, 10, 11, 24} {
		if !v.isHydrated(b) {
			t.Errorf("block %d, read, is not hydrated", b)
		}
	}
	// The hydrator hurries while reads fetch (its yield gate counts them):
	// the data blocks 0, 1, 3, 4, 9, 10 and 24, not the holes.
	if n := v.hyd.fetched.Load(); n != 7 {
		t.Errorf("%d fetches on the read path counted, want 7", n)
	}
	if n := v.Hydration().ReadFetched; n != 7 {
		t.Errorf("Hydration says the reads fetched %d blocks, want 7", n)
	}
	wantImage(t, v, model, "before hydration")
	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	wantImage(t, v, model, "after hydration")
}

// BenchmarkReadMiss measures what a user's 4 KiB read costs when its block
// is not hydrated yet (the read fetches it: hydrate-on-read) against a
// read of a block in the volume's file (the same blocks of the source
// volume, cached), over the real chunk store, blob store and index: 16
// readers at once (an NBD connection's requests in flight) read each data
// block of a 192 MiB volume once, in random order, with the hydrator held.
// It reports the process's CPU-µs per read, which does not depend on what
// other tenants of the machine leave to the process.
func BenchmarkReadMiss(b *testing.B) {
	ctx := context.Background()
	e := newRealEngine(b, Options{})
	const size = 192 << 20
	src, img := snapshotOfImage(b, e, size)
	var data []int64 // the blocks that hold data
	for blk := int64(0); blk*e.bs < size; blk++ {
		if !isZero(img[blk*e.bs : (blk+1)*e.bs]) {
			data = append(data, blk)
		}
	}
	e.hooks.hydrator = func(ctx context.Context, vol string) { <-ctx.Done() } // held: reads hydrate
	const readers = 16
	rng := rand.New(rand.NewPCG(5, 6))
	// pass reads 4 KiB of every data block of v once, readers at a time,
	// and returns the CPU-seconds it took.
	pass := func(v *Volume) float64 {
		order := make(chan int64, len(data))
		for _, i := range rng.Perm(len(data)) {
			order <- data[i]
		}
		close(order)
		var wg sync.WaitGroup
		errs := make(chan error, readers)
		cpu0 := cpuSeconds()
		for range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 4<<10)
				for blk := range order {
					off := blk*e.bs + (blk*7)%16*int64(len(buf)) // some 4 KiB of the block
					if _, err := v.ReadAtContext(ctx, buf, off); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		cpu := cpuSeconds() - cpu0
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		return cpu
	}
	b.Run("miss", func(b *testing.B) {
		var cpu float64
		reads, k := 0, 0
		for b.Loop() {
			b.StopTimer()
			k++
			v, err := e.RestoreVolume(ctx, "s", fmt.Sprintf("r%d", k))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			cpu += pass(v)
			reads += len(data)
			b.StopTimer()
			if err := e.DeleteVolume(ctx, v.ID()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(cpu*1e6/float64(reads), "CPU-µs/read")
	})
	b.Run("hit", func(b *testing.B) {
		var cpu float64
		reads := 0
		for b.Loop() {
			cpu += pass(src)
			reads += len(data)
		}
		b.ReportMetric(cpu*1e6/float64(reads), "CPU-µs/read")
	})
}

// TestHydrationKeepsIndexPages: the reads of a hydrating volume find the
// source's index pages in the hydration's cache after their first load,
// for a source of more pages than the 64 the cache held (a 4 GiB disk
// has 256): a read of a block not hydrated yet then fetches its chunk
// and nothing else.
func TestHydrationKeepsIndexPages(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	const pages = 100
	const size = pages * EntriesPerPage * bs
	src, err := env.e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{7}, bs)
	for p := range int64(pages) { // block 0 of each page holds data
		if _, err := src.WriteAt(data, p*EntriesPerPage*bs); err != nil {
			t.Fatal(err)
		}
	}
	v, _, _ := restoreHeld(t, env, "src")
	buf := make([]byte, 512)
	for _, blk := range []int64{1, 0} { // a hole of each page, then its data block
		for p := range int64(pages) {
			if _, err := v.ReadAt(buf, (p*EntriesPerPage+blk)*bs); err != nil {
				t.Fatal(err)
			}
			if want := data[:len(buf)]; blk == 0 && !bytes.Equal(buf, want) {
				t.Fatalf("block 0 of page %d differs from the source", p)
			}
		}
	}
	c := v.hyd.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pages) != pages {
		t.Errorf("the hydration's cache holds %d of the %d index pages read", len(c.pages), pages)
	}
}

// BenchmarkReadDuringHydration restores a 192 MiB volume (the real chunk
// store, index and blob store) while 16 readers read random 4 KiB of it
// without pause until it is hydrated, the hydrator running as it does for
// a user: the process's CPU-µs per read over the hydration (the reads'
// misses and the hydrator's work together) and the reads per second.
func BenchmarkReadDuringHydration(b *testing.B) {
	ctx := context.Background()
	e := newRealEngine(b, Options{})
	const size = 192 << 20
	snapshotOfImage(b, e, size)
	var cpu, secs float64
	reads, k := 0, 0
	for b.Loop() {
		k++
		cpu0, t0 := cpuSeconds(), time.Now()
		v, err := e.RestoreVolume(ctx, "s", fmt.Sprintf("r%d", k))
		if err != nil {
			b.Fatal(err)
		}
		stop := randomReaders(b, v, size, uint64(k))
		err = v.WaitHydrated(ctx)
		reads += stop()
		cpu += cpuSeconds() - cpu0
		secs += time.Since(t0).Seconds()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := e.DeleteVolume(ctx, v.ID()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(cpu*1e6/float64(reads), "CPU-µs/read")
	b.ReportMetric(float64(reads)/secs, "reads/s")
	b.ReportMetric(secs/float64(k), "s/hydration")
}

// TestHydratorSkipsBlocksReadMeanwhile: a hydration job that waited (at
// its yield gate, here in the test's hook) while the user's reads
// hydrated its blocks fetches none of them again.
func TestHydratorSkipsBlocksReadMeanwhile(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs, Workers: 1})
	const size = EntriesPerPage * bs // one index page: one job
	src, err := env.e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(23, 24)), model)
	if _, err := src.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	v, held, release := restoreHeld(t, env, "src")
	<-held // the job of the one page waits; reads hydrate every block
	if got := image(t, v); !bytes.Equal(got, model) {
		t.Fatalf("read differs from the source at %d", firstDiff(got, model))
	}
	gets := env.chunks.gets.Load()
	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	if n := env.chunks.gets.Load() - gets; n != 0 {
		t.Errorf("the hydrator read %d chunks of blocks the reads had hydrated", n)
	}
}

// BenchmarkHydrate restores a 192 MiB volume (the real chunk store, index
// and blob store) and lets the hydrator fill it with no user: the
// process's CPU-µs per data block hydrated, and the seconds a hydration
// took.
func BenchmarkHydrate(b *testing.B) {
	ctx := context.Background()
	e := newRealEngine(b, Options{})
	const size = 192 << 20
	_, img := snapshotOfImage(b, e, size)
	data := 0
	for blk := int64(0); blk*e.bs < size; blk++ {
		if !isZero(img[blk*e.bs : (blk+1)*e.bs]) {
			data++
		}
	}
	var cpu, secs float64
	k := 0
	for b.Loop() {
		k++
		cpu0, t0 := cpuSeconds(), time.Now()
		v, err := e.RestoreVolume(ctx, "s", fmt.Sprintf("r%d", k))
		if err != nil {
			b.Fatal(err)
		}
		err = v.WaitHydrated(ctx)
		cpu += cpuSeconds() - cpu0
		secs += time.Since(t0).Seconds()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := e.DeleteVolume(ctx, v.ID()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(cpu*1e6/float64(k*data), "CPU-µs/block")
	b.ReportMetric(secs/float64(k), "s/hydration")
}

// snapshotOfImage writes mixedImage(size) to a new volume "src" of e and
// snapshots it as "s"; it returns the volume and the image.
func snapshotOfImage(tb testing.TB, e *Engine, size int) (*Volume, []byte) {
	tb.Helper()
	ctx := context.Background()
	img := mixedImage(size)
	src, err := e.CreateVolume(ctx, "src", int64(size))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := src.WriteAt(img, 0); err != nil {
		tb.Fatal(err)
	}
	if _, err := e.Snapshot(ctx, "src", "s"); err != nil {
		tb.Fatal(err)
	}
	return src, img
}

// BenchmarkReadHydrationWindow is BenchmarkReadDuringHydration on a fixed
// window, as coffer bench nbd measures (docs/design.md "Session
// perf14s"): 16 readers read random 4 KiB of a 192 MiB volume without
// pause for the first 500 ms from the instant it is restored, then for
// 500 ms once it is hydrated. Reported: the reads in the first window ÷
// those in the second (window-ratio), the process's CPU-µs per read in
// the first, the share of the volume hydrated at its end, and the blocks
// the reads fetched in it.
//
// COFFER_BENCH_HYDRATION_SIZE (e.g. 1GiB, 2GiB) replaces the 192 MiB
// image, whose hydration ends inside the window (the ratio then ties
// near 0.5 whatever changes), by one of that size in coffer bench nbd's
// shape (snapshotOfBenchShape), whose hydration outlasts the window as
// the 4 GiB bench's does.
func BenchmarkReadHydrationWindow(b *testing.B) {
	ctx := context.Background()
	var x *countingIndex
	e, blobs, _, db := newRealEngineDB(b, Options{}, func(i chunkstore.Index) chunkstore.Index {
		x = &countingIndex{Index: i}
		return x
	}, nil)
	size := int64(192 << 20)
	const window = 500 * time.Millisecond
	if s := os.Getenv("COFFER_BENCH_HYDRATION_SIZE"); s != "" {
		// The shape of coffer bench nbd's image, at a size whose
		// hydration outlasts the window (192 MiB ends inside it).
		n, err := parseBenchSize(s)
		if err != nil {
			b.Fatal(err)
		}
		snapshotOfBenchShape(b, e, n)
		size = n
	} else {
		snapshotOfImage(b, e, int(size))
	}
	var ratio, cpuPerRead, hydrated, fetched, busyReads, refReads float64
	var lookups, dbWaits, dbWaitMs, diskReads, diskReadMs, diskReadMiB float64
	k := 0
	readFor := func(v *Volume, seed uint64) int {
		stop := randomReaders(b, v, size, seed)
		time.Sleep(window)
		return stop()
	}
	for b.Loop() {
		k++
		if os.Getenv("PERF14AI_WARM") != "" {
			filepath.Walk(os.Getenv("PERF14AI_WARM_DIR"), func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() && strings.Contains(p, "/blobs/") {
					os.ReadFile(p)
				}
				return nil
			})
		}
		// Every run starts with no pack in the page cache, as coffer
		// bench nbd's one restore does (packs are written with O_DIRECT):
		// the read-ahead of one run would serve the next from memory.
		evictDir(b, blobs.Dir())
		cpu0 := cpuSeconds()
		l0, s0, d0 := x.calls.Load(), db.ReadDB().Stats(), diskStats(b.TempDir())
		v, err := e.RestoreVolume(ctx, "s", fmt.Sprintf("r%d", k))
		if err != nil {
			b.Fatal(err)
		}
		busy := readFor(v, uint64(k))
		cpu := cpuSeconds() - cpu0
		l1, s1, d1 := x.calls.Load(), db.ReadDB().Stats(), diskStats(b.TempDir())
		lookups += float64(l1 - l0)
		dbWaits += float64(s1.WaitCount - s0.WaitCount)
		dbWaitMs += float64(s1.WaitDuration-s0.WaitDuration) / 1e6
		diskReads += float64(d1.reads - d0.reads)
		diskReadMiB += float64(d1.sectors-d0.sectors) * 512 / (1 << 20)
		if d1.reads > d0.reads {
			diskReadMs += float64(d1.readMs-d0.readMs) / float64(d1.reads-d0.reads)
		}
		h := v.Hydration()
		if err := v.WaitHydrated(ctx); err != nil {
			b.Fatal(err)
		}
		ref := readFor(v, uint64(k))
		ratio += float64(busy) / float64(max(ref, 1))
		busyReads += float64(busy)
		refReads += float64(ref)
		cpuPerRead += cpu * 1e6 / float64(max(busy, 1))
		if h.Hydrating {
			hydrated += float64(h.DoneBytes) / float64(h.TotalBytes)
			fetched += float64(h.ReadFetched)
		} else {
			hydrated++
		}
		b.StopTimer()
		if err := e.DeleteVolume(ctx, v.ID()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(k)
	b.ReportMetric(ratio/n, "window-ratio")
	b.ReportMetric(busyReads/n, "window-reads")
	b.ReportMetric(refReads/n, "ref-reads")
	b.ReportMetric(cpuPerRead/n, "CPU-µs/read")
	b.ReportMetric(hydrated/n, "hydrated")
	b.ReportMetric(fetched/n, "fetched")
	b.ReportMetric(lookups/n, "lookups")
	b.ReportMetric(dbWaits/n, "db-waits")
	b.ReportMetric(dbWaitMs/n, "db-wait-ms")
	b.ReportMetric(diskReads/n, "disk-reads")
	b.ReportMetric(diskReadMiB/n, "disk-read-MiB")
	b.ReportMetric(diskReadMs/n, "ms/disk-read")
}

// parseBenchSize parses a size such as 1GiB, 512MiB or 1073741824.
func parseBenchSize(s string) (int64, error) {
	num, shift := s, 0
	for _, u := range []struct {
		suf   string
		shift int
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if strings.HasSuffix(s, u.suf) {
			num, shift = strings.TrimSuffix(s, u.suf), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, KiB, MiB or GiB", s)
	}
	return n << shift, nil
}

// snapshotOfBenchShape writes an image of size bytes (a multiple of
// 1 MiB) shaped like coffer bench's (internal/bench, planSegments): 1–8
// MiB segments, half of the bytes zeros, a third compressible text and a
// sixth random, the kinds drawn by what is left of each one's budget so
// that they interleave across the disk, to a new volume "src" of e, 8 MiB
// at a time, and snapshots it as "s".
func snapshotOfBenchShape(tb testing.TB, e *Engine, size int64) {
	tb.Helper()
	ctx := context.Background()
	src, err := e.CreateVolume(ctx, "src", size)
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(14, 14))
	const mib = 1 << 20
	budget := [3]int64{size / 2 / mib, size / 3 / mib, 0} // zeros, text, random (MiB)
	budget[2] = size/mib - budget[0] - budget[1]
	buf := make([]byte, 8*mib)
	for off := int64(0); off < size; {
		left := budget[0] + budget[1] + budget[2]
		pick, k := rng.Int64N(left), 0
		for pick >= budget[k] {
			pick -= budget[k]
			k++
		}
		n := min(int64(1+rng.IntN(8)), budget[k])
		budget[k] -= n
		p := buf[:n*mib]
		switch k {
		case 0:
			off += n * mib // a hole: never written
			continue
		case 1:
			const text = "the quick brown fox jumps over the lazy dog\n"
			for i := 0; i < len(p); i += 8 {
				r := rng.Uint64()
				for j := range 8 {
					p[i+j] = text[byte(r>>(8*j))%byte(len(text))]
				}
			}
		case 2:
			for i := 0; i < len(p); i += 8 {
				binary.LittleEndian.PutUint64(p[i:], rng.Uint64())
			}
		}
		if _, err := src.WriteAt(p, off); err != nil {
			tb.Fatal(err)
		}
		off += n * mib
	}
	if _, err := e.Snapshot(ctx, "src", "s"); err != nil {
		tb.Fatal(err)
	}
}

// diskIO is a block device's read counters (/proc/diskstats).
type diskIO struct{ reads, sectors, readMs int64 }

// diskStats returns the read counters of the device that holds dir (its
// whole disk when dir is on a partition the table lists by name), or
// zeroes where /proc/diskstats cannot say.
func diskStats(dir string) diskIO {
	var st syscall.Stat_t
	if syscall.Stat(dir, &st) != nil {
		return diskIO{}
	}
	maj, min := (st.Dev>>8)&0xfff|(st.Dev>>32)&^0xfff, st.Dev&0xff|(st.Dev>>12)&^0xff
	data, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		return diskIO{}
	}
	for line := range strings.Lines(string(data)) {
		var ma, mi uint64
		var name string
		var d diskIO
		var merged int64
		if _, err := fmt.Sscan(line, &ma, &mi, &name, &d.reads, &merged, &d.sectors, &d.readMs); err == nil && ma == maj && mi == min {
			return d
		}
	}
	return diskIO{}
}

// randomReaders starts 16 goroutines reading random 4 KiB pages of the
// first size bytes of v, as a user's random reads at queue depth 16, with
// offsets drawn from seed; the returned stop ends them and returns how
// many reads they completed.
func randomReaders(b *testing.B, v *Volume, size int64, seed uint64) (stop func() int) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var n atomic.Int64
	for i := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			buf := make([]byte, 4<<10)
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := v.ReadAtContext(b.Context(), buf, rng.Int64N(size/4096)*4096); err != nil {
					b.Error(err)
					return
				}
				n.Add(1)
			}
		})
	}
	return func() int {
		close(done)
		wg.Wait()
		return int(n.Load())
	}
}
