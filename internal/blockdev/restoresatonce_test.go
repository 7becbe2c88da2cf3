package blockdev

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// BenchmarkRestoresAtOnce is the 4-restores-at-once row of coffer bench
// in process, on the real chunk store, index and blob store: a 256 MiB
// image snapshotted as one disk and, cut in 8, as 8 disks of 32 MiB (the
// same data, a repository of its own), then, in each iteration, the one
// disk restored into a file (RestoreToFile, with its fsync) and the 8
// disks restored into 8 files 4 at a time, in alternating order. Every
// restored file is compared with its part of the image (not timed).
// Reported: throughput-ratio (the one restore's seconds ÷ the 8 disks'
// seconds, the row's ≥ 1× target; the same bytes), and each one's
// seconds and CPU-s.
func BenchmarkRestoresAtOnce(b *testing.B) {
	ctx := context.Background()
	const (
		size  = 256 << 20
		disks = 8
		at    = 4
	)
	img := mixedImage(size)
	snap := func(e *Engine, vol, s string, data []byte) {
		v, err := e.CreateVolume(ctx, vol, int64(len(data)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.WriteAt(data, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := e.Snapshot(ctx, vol, s); err != nil {
			b.Fatal(err)
		}
	}
	one := newRealEngine(b, Options{})
	snap(one, "src", "s", img)
	many := newRealEngine(b, Options{})
	part := size / disks
	for i := range disks {
		snap(many, fmt.Sprintf("d%d", i), fmt.Sprintf("s%d", i), img[i*part:(i+1)*part])
	}
	dir := b.TempDir()
	check := func(path string, want []byte) {
		got, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			b.Fatalf("%s differs from the image at byte %d", path, firstDiff(got, want))
		}
		if err := os.Remove(path); err != nil {
			b.Fatal(err)
		}
	}
	restoreOne := func() {
		p := filepath.Join(dir, "one.img")
		if err := one.RestoreToFile(ctx, "s", p); err != nil {
			b.Fatal(err)
		}
	}
	restoreMany := func() {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(at)
		for i := range disks {
			g.Go(func() error {
				return many.RestoreToFile(gctx, fmt.Sprintf("s%d", i), filepath.Join(dir, fmt.Sprintf("d%d.img", i)))
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
	}
	// what records, for each timed step of a round in the order they ran,
	// its minor page faults, the collector's cycles and its system CPU.
	var what string
	timed := func(f func()) (secs, cpu float64) {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		r0 := usage(b)
		cpu0, t0 := cpuSeconds(), time.Now()
		f()
		secs, cpu = time.Since(t0).Seconds(), cpuSeconds()-cpu0
		r1 := usage(b)
		runtime.ReadMemStats(&m1)
		what += fmt.Sprintf(" [%d minor faults, %d GCs, sys %.2f s]", r1.Minflt-r0.Minflt, m1.NumGC-m0.NumGC, time.Duration(r1.Stime.Nano()-r0.Stime.Nano()).Seconds())
		return secs, cpu
	}
	var oneS, oneCPU, manyS, manyCPU float64
	k := 0
	for b.Loop() {
		var s1, c1, s4, c4 float64
		what = ""
		if k%2 == 0 {
			s1, c1 = timed(restoreOne)
			s4, c4 = timed(restoreMany)
		} else {
			s4, c4 = timed(restoreMany)
			s1, c1 = timed(restoreOne)
		}
		first := "one"
		if k%2 == 1 {
			first = "4 at once"
		}
		// Each round's own figures, and which ran first: the one that
		// follows finds the other's files just written (the host's write
		// back, the file system's freed extents), so a ratio that moves
		// with the order is the machine's, not the restores'.
		b.Logf("round %d (%s first): one %.3f s (%.2f CPU-s), 4 at once %.3f s (%.2f CPU-s), throughput ratio %.2f;%s", k+1, first, s1, c1, s4, c4, s1/s4, what)
		k++
		oneS, oneCPU, manyS, manyCPU = oneS+s1, oneCPU+c1, manyS+s4, manyCPU+c4
		b.StopTimer()
		check(filepath.Join(dir, "one.img"), img)
		for i := range disks {
			check(filepath.Join(dir, fmt.Sprintf("d%d.img", i)), img[i*part:(i+1)*part])
		}
		b.StartTimer()
	}
	b.ReportMetric(oneS/manyS, "throughput-ratio")
	b.ReportMetric(oneS/float64(k), "s/one")
	b.ReportMetric(manyS/float64(k), "s/4-at-once")
	b.ReportMetric(oneCPU/float64(k), "CPU-s/one")
	b.ReportMetric(manyCPU/float64(k), "CPU-s/4-at-once")
}
