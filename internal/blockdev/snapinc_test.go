package blockdev

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkIncrementalSnapshot measures the 1% snapshot of coffer bench on
// the real engine (zstd chunk store over the local blob store, SQLite chunk
// index and catalogue): a 1 GiB volume of mixed data, one full snapshot,
// then per iteration 1% of its blocks rewritten with random data at random
// (not timed), the blob store's files dropped from the page cache (not
// timed: in coffer bench the parent's packs were written with O_DIRECT, so
// its pages are read from the disk) and an incremental snapshot (timed:
// wall, and the process's CPU as cpu-ms/op).
func BenchmarkIncrementalSnapshot(b *testing.B) {
	ctx := context.Background()
	const size = 1 << 30
	e, blobs, _ := newRealEngineWith(b, Options{}, nil)
	v, err := e.CreateVolume(ctx, "vol", size)
	if err != nil {
		b.Fatal(err)
	}
	data := mixedImage(size)
	for off := 0; off < size; off += 64 << 20 {
		if _, err := v.WriteAt(data[off:off+64<<20], int64(off)); err != nil {
			b.Fatal(err)
		}
	}
	data = nil
	if _, err := e.Snapshot(ctx, "vol", "full"); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 4))
	bs := v.BlockSize()
	nb := int64(size) / bs
	i := 0
	var cpu time.Duration
	defer func() {
		if i > 0 {
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(i), "cpu-ms/op")
		}
	}()
	for b.Loop() {
		b.StopTimer()
		for range nb / 100 {
			randomWriteAt(b, rng, v, nil, rng.Int64N(nb)*bs, bs)
		}
		evictDir(b, blobs.Dir())
		r0 := usage(b)
		b.StartTimer()
		si, err := e.Snapshot(ctx, "vol", fmt.Sprintf("s%d", i))
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if si.Stats.BlocksRead < nb/100*9/10 || si.Stats.BlocksRead > nb/100 {
			b.Fatalf("snapshot read %d blocks, want about %d", si.Stats.BlocksRead, nb/100)
		}
		r1 := usage(b)
		cpu += time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
		i++
		b.StartTimer()
	}
}

// evictDir drops the pages of every file under dir from the page cache.
func evictDir(tb testing.TB, dir string) {
	tb.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
	if err != nil {
		tb.Fatal(err)
	}
}
