package blockdev

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"coffer/internal/chunk"
)

// procReadBytes is the process's read_bytes of /proc/self/io: bytes it
// caused to be read from a block device (page-cache hits not counted).
func procReadBytes(tb testing.TB) int64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		tb.Skipf("no /proc/self/io: %v", err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		var n int64
		if _, err := fmt.Sscanf(string(line), "read_bytes: %d", &n); err == nil {
			return n
		}
	}
	tb.Skip("no read_bytes in /proc/self/io")
	return 0
}

// residentShare is the share of the pages of f's range [off, off+n) in
// the page cache (mincore of a mapping: it reads nothing).
func residentShare(tb testing.TB, f *os.File, off, n int64) float64 {
	tb.Helper()
	m, err := unix.Mmap(int(f.Fd()), off, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		tb.Fatal(err)
	}
	defer unix.Munmap(m)
	ps := int64(os.Getpagesize())
	vec := make([]byte, (n+ps-1)/ps)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		tb.Fatal(e)
	}
	in := 0
	for _, v := range vec {
		in += int(v & 1)
	}
	return float64(in) / float64(len(vec))
}

// TestHydrationKeepsPages: the hydrator leaves the blocks it wrote in the
// page cache (in the folios of its own block-sized writes), so that the
// user's reads after hydration do not bring them back in read-ahead's
// large folios, into which every 4 KiB write costs several times more
// CPU (BenchmarkWriteAfterHydration, BenchmarkPlainRewrite); and the
// hydrated volume equals its snapshot, by hash. 32 MiB: several of the
// writeback's requests, each of which dropped what was written back
// before.
func TestHydrationKeepsPages(t *testing.T) {
	env := newTestEnv(t, Options{Workers: 2})
	e, ctx := env.e, context.Background()
	const size = 32 << 20
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(15, 2))
	for off := 0; off < size; off += int(e.bs) {
		fillRandom(rng, model[off:off+int(e.bs)])
		model[off] = 1 // no all-zero block: each is stored
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
	v, err := e.RestoreVolume(ctx, "s1", "r")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := v.WaitHydrated(wctx); err != nil {
		t.Fatal(err)
	}
	if err := v.f.Sync(); err != nil {
		t.Fatal(err)
	}
	if r := residentShare(t, v.f, 0, size); r < 0.99 {
		// Memory pressure may take some; not all of it.
		if r < 0.5 {
			t.Fatalf("%.0f%% of the hydrated volume's pages cached; want the hydrator's writes kept", 100*r)
		}
		t.Logf("%.0f%% of the hydrated volume's pages cached", 100*r)
	}
	if got := image(t, v); sum(got) != sum(model) {
		t.Fatalf("hydrated volume differs from the snapshot at byte %d", firstDiff(got, model))
	}
}

// afterHydEntries is the source of BenchmarkWriteAfterHydration: size
// bytes in runs of 1 MiB of data blocks (text-like, compressible) and 1
// MiB of holes, as the bench's image has data and holes.
func afterHydEntries(tb testing.TB, e *Engine, size int64) []chunk.ID {
	tb.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	entries := make([]chunk.ID, size/e.bs)
	per := (1 << 20) / e.bs
	blk := make([]byte, e.bs)
	for i := range entries {
		if (int64(i)/per)%2 == 1 {
			continue // a hole
		}
		for j := range blk {
			blk[j] = "abcdefgh \n"[rng.IntN(10)]
		}
		id, err := e.chunks.Put(context.Background(), blk)
		if err != nil {
			tb.Fatal(err)
		}
		entries[i] = id
	}
	return entries
}

// BenchmarkWriteAfterHydration: 4 KiB writes at random 4 KiB-aligned
// offsets of a 256 MiB volume (half data in 1 MiB runs, half holes),
// through the Volume's write path, after the volume was made:
//   - fresh: created and written with the source's data, synced;
//   - restored: restored from a snapshot of that data and hydrated alone;
//   - noreserve: the same, with preallocate's reservation punched out
//     before the first hydration job (the writes allocate).
//
// and then, after a sync, its pages as the volume's making left them,
// with the file read through in 1 MiB reads ("asleft": the pages not
// cached come back in read-ahead's large folios, as `coffer bench nbd`'s
// settleRun brings them), evicted (POSIX_FADV_DONTNEED), or evicted and
// read back ("readback"). Each write's offset is written twice: a first
// pass and a second ("primed") over the same offsets. Reports the
// process's CPU per write (getrusage; nothing else runs), and the bytes
// the process read from the device per write (/proc/self/io read_bytes),
// for each pass. Run with -benchtime 20000x.
func BenchmarkWriteAfterHydration(b *testing.B) {
	for _, mode := range []string{"fresh", "restored", "noreserve"} {
		for _, pages := range []string{"asleft", "evicted", "readback"} {
			b.Run(mode+"-"+pages, func(b *testing.B) {
				benchWriteAfterHydration(b, mode, pages)
			})
		}
	}
}

func benchWriteAfterHydration(b *testing.B, mode, pages string) {
	const size = 256 << 20
	env := newTestEnv(b, Options{Workers: 2})
	e, ctx := env.e, context.Background()
	var v *Volume
	if mode == "fresh" {
		entries := afterHydEntries(b, e, size)
		var err error
		if v, err = e.CreateVolume(ctx, "v", size); err != nil {
			b.Fatal(err)
		}
		for i, id := range entries {
			if id.IsZero() {
				continue
			}
			data, err := e.chunks.Get(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := v.WriteAt(data, int64(i)*e.bs); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		synthSnapshot(b, e, "s", afterHydEntries(b, e, size))
		reached, hold := holdHydrators(e)
		var err error
		if v, err = e.RestoreVolume(ctx, "s", "r"); err != nil {
			b.Fatal(err)
		}
		<-reached // preallocate has run
		if mode == "noreserve" {
			if err := unix.Fallocate(int(v.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, size); err != nil {
				b.Fatal(err)
			}
		}
		close(hold)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		if err := v.WaitHydrated(wctx); err != nil {
			b.Fatal(err)
		}
	}
	fd := int(v.f.Fd())
	if err := unix.Fsync(fd); err != nil {
		b.Fatal(err)
	}
	if pages != "asleft" {
		if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
			b.Fatal(err)
		}
	}
	if pages != "evicted" {
		buf := make([]byte, 1<<20)
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := v.f.ReadAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	p := make([]byte, 4096)
	fillRandom(rng, p)
	p[0] = 1
	offs := make([]int64, b.N)
	for i := range offs {
		offs[i] = rng.Int64N(size/4096) * 4096
	}
	b.ResetTimer()
	for _, name := range []string{"", "primed-"} {
		var r0, r1 unix.Rusage
		_ = unix.Getrusage(unix.RUSAGE_SELF, &r0)
		rd0 := procReadBytes(b)
		for _, off := range offs {
			if _, err := v.WriteAt(p, off); err != nil {
				b.Fatal(err)
			}
		}
		_ = unix.Getrusage(unix.RUSAGE_SELF, &r1)
		rd1 := procReadBytes(b)
		cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
		b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), name+"cpu-µs/write")
		b.ReportMetric(float64(rd1-rd0)/float64(b.N), name+"read-B/write")
	}
}

// BenchmarkPlainRewrite is BenchmarkWriteAfterHydration's floor on a
// plain file, without the volume: a 256 MiB file fallocated and written
// in 64 KiB pwrites (as the hydrator writes into preallocate's
// reservation), fsynced and its pages dropped (POSIX_FADV_DONTNEED), then
// brought back into the page cache as a user would bring it: not at all
// ("evicted"), by 1 MiB reads (read-ahead: large folios), or by writes of
// 4 KiB, 64 KiB or 1 MiB (folios of the writes' size); then 4 KiB pwrites
// at random aligned offsets. Reports CPU per 4 KiB write (getrusage).
func BenchmarkPlainRewrite(b *testing.B) {
	const size = 256 << 20
	for _, mode := range []string{"evicted", "read-1m", "read-1m-random", "write-4k", "write-64k", "write-1m"} {
		b.Run(mode, func(b *testing.B) {
			f, err := os.Create(b.TempDir() + "/f")
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			fd := int(f.Fd())
			if err := unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 0, size); err != nil {
				b.Skipf("fallocate: %v", err)
			}
			buf := make([]byte, 1<<20)
			for i := range buf {
				buf[i] = byte(i*7 + 1)
			}
			pass := func(n int, read bool) {
				for off := int64(0); off < size; off += int64(n) {
					var err error
					if read {
						_, err = f.ReadAt(buf[:n], off)
					} else {
						_, err = f.WriteAt(buf[:n], off)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			pass(64<<10, false)
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
				b.Fatal(err)
			}
			var q0, q1 unix.Rusage
			_ = unix.Getrusage(unix.RUSAGE_SELF, &q0)
			switch mode {
			case "read-1m":
				pass(1<<20, true)
			case "read-1m-random":
				if err := unix.Fadvise(fd, 0, 0, unix.FADV_RANDOM); err != nil {
					b.Fatal(err)
				}
				pass(1<<20, true)
			case "write-4k":
				pass(4<<10, false)
			case "write-64k":
				pass(64<<10, false)
			case "write-1m":
				pass(1<<20, false)
			}
			_ = unix.Getrusage(unix.RUSAGE_SELF, &q1)
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			offs := make([]int64, b.N)
			for i := range offs {
				offs[i] = rng.Int64N(size/4096) * 4096
			}
			p := buf[:4096]
			var r0, r1 unix.Rusage
			_ = unix.Getrusage(unix.RUSAGE_SELF, &r0)
			b.ResetTimer()
			for _, off := range offs {
				if _, err := f.WriteAt(p, off); err != nil {
					b.Fatal(err)
				}
			}
			_ = unix.Getrusage(unix.RUSAGE_SELF, &r1)
			b.StopTimer()
			cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "cpu-µs/write")
			load := time.Duration(q1.Utime.Nano() + q1.Stime.Nano() - q0.Utime.Nano() - q0.Stime.Nano())
			b.ReportMetric(float64(load.Nanoseconds())/1e3/float64(size>>20), "load-cpu-µs/MiB")
		})
	}
}
