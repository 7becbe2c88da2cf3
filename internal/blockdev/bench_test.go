package blockdev

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/trace"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"coffer/internal/blobstore/mem"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/store/memstore"
)

// synthSnapshot stores a snapshot whose block table is entries, without a
// volume, and returns its ID.
func synthSnapshot(tb testing.TB, e *Engine, id string, entries []chunk.ID) {
	nb := int64(len(entries))
	pages := make([][]chunk.ID, pagesFor(nb))
	for p := range pages {
		pages[p] = entries[p*EntriesPerPage : min((p+1)*EntriesPerPage, len(entries))]
	}
	storeSnapshot(tb, e, id, nb*e.bs, pages)
}

// storeSnapshot stores a snapshot of size bytes, without a volume, whose
// index pages hold pages as they are (a test may make them inconsistent
// with size).
func storeSnapshot(tb testing.TB, e *Engine, id string, size int64, pages [][]chunk.ID) {
	ctx := context.Background()
	rec := &record{Size: size, BlockSize: e.bs, Volume: "synth", Pages: make([]chunk.ID, len(pages))}
	for p, entries := range pages {
		pid, err := e.chunks.Put(ctx, encodePage(entries))
		if err != nil {
			tb.Fatal(err)
		}
		rec.Pages[p] = pid
	}
	rid, err := e.chunks.Put(ctx, encodeRecord(rec))
	if err != nil {
		tb.Fatal(err)
	}
	if err := e.commitSnapshot(ctx, nil, SnapshotInfo{ID: id, Volume: "synth", Size: rec.Size, BlockSize: e.bs, Record: rid}, nil); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkDiff diffs the manifests of two snapshots of a 1 TiB volume
// (16 Mi blocks of 64 KiB, 65536 pages) that differ in 1000 scattered
// blocks: the cost follows the differing pages, not the volume size.
func BenchmarkDiff(b *testing.B) {
	env := newTestEnv(b, Options{})
	const nb = 1 << 24
	rng := rand.New(rand.NewPCG(1, 1))
	a := make([]chunk.ID, nb)
	for i := range a {
		if i%4 != 0 {
			binaryID(&a[i], uint64(i))
		}
	}
	synthSnapshot(b, env.e, "a", a)
	for range 1000 {
		binaryID(&a[rng.IntN(nb)], rng.Uint64()|1<<63)
	}
	synthSnapshot(b, env.e, "b", a)
	ctx := context.Background()
	b.ResetTimer()
	var n int
	for b.Loop() {
		d, err := env.e.Diff(ctx, "a", "b")
		if err != nil {
			b.Fatal(err)
		}
		n = len(d)
	}
	b.ReportMetric(float64(n), "ranges")
}

// usage is the process's resource usage so far.
func usage(tb testing.TB) unix.Rusage {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru
}

func binaryID(id *chunk.ID, x uint64) {
	for i := range 8 {
		id[i] = byte(x >> (8 * i))
	}
	id[31] = 1
}

// BenchmarkSnapshot measures a full snapshot of a 64 MiB volume with mixed
// data (a third incompressible, a third text, a third zero) into the real
// chunk store (zstd) over an in-memory blob store, using all cores.
func BenchmarkSnapshot(b *testing.B) {
	for _, bs := range []int64{64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("bs=%dKiB", bs>>10), func(b *testing.B) {
			benchSnapshot(b, bs)
		})
	}
}

func benchSnapshot(b *testing.B, bs int64) {
	ctx := context.Background()
	const size = 64 << 20
	data := mixedImage(size)
	b.SetBytes(size)
	i := 0
	var cpu time.Duration // the process's, during the snapshots
	var vcsw int64        // the threads' waits (voluntary context switches)
	defer func() {
		if i > 0 {
			b.ReportMetric(float64(cpu.Milliseconds())/float64(i), "cpu-ms/op")
			b.ReportMetric(float64(vcsw)/float64(i), "waits/op")
		}
	}()
	for b.Loop() {
		b.StopTimer()
		blobs := mem.New()
		cs, err := chunkstore.New(blobs, chunkstore.NewMemIndex(), chunkstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		e, err := Open(ctx, b.TempDir(), cs, blobs, Options{BlockSize: bs, Catalogue: memstore.New()})
		if err != nil {
			b.Fatal(err)
		}
		v, err := e.CreateVolume(ctx, "vol", size)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.WriteAt(data, 0); err != nil {
			b.Fatal(err)
		}
		r0 := usage(b)
		b.StartTimer()
		trace.WithRegion(ctx, "snapshot", func() { _, err = e.Snapshot(ctx, "vol", fmt.Sprintf("s%d", i)) })
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		r1 := usage(b)
		cpu += time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
		vcsw += r1.Nvcsw - r0.Nvcsw
		e.Close()
		i++
		b.StartTimer()
	}
}
