//go:build linux

package nbd_test

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"coffer/internal/nbd/nbdtest"
	"coffer/internal/testenv"
)

// randomImage writes size bytes of incompressible, non-sparse data.
func randomImage(b *testing.B, size int64) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "random.raw")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.NewChaCha8([32]byte{9}), size); err != nil {
		b.Fatal(err)
	}
	return path
}

func reportMiBps(b *testing.B, bytes int64, d time.Duration) {
	b.ReportMetric(float64(bytes)/(1<<20)/d.Seconds(), "MiB/s")
}

// BenchmarkNbdcopy measures nbdcopy sequential write (file to export) and
// read (export to file) throughput against a sparse-file backend, next to a
// plain file-to-file copy of the same data on this machine:
//
//	go test ./internal/nbd -run '^$' -bench Nbdcopy -benchtime 3x
func BenchmarkNbdcopy(b *testing.B) {
	testenv.NeedProgram(b, "nbdcopy")
	const size = 512 << 20
	src := randomImage(b, size)
	f := fileBackend(b, size)
	ex := &exports{}
	ex.add("bench", f, false)
	addr, _ := startServer(b, ex, nil)
	uri := nbdURI(addr, "bench")
	out := filepath.Join(b.TempDir(), "out.raw")

	b.Run("write", func(b *testing.B) {
		b.SetBytes(size)
		start := time.Now()
		for b.Loop() {
			run(b, "nbdcopy", "--flush", src, uri)
		}
		reportMiBps(b, size*int64(b.N), time.Since(start))
	})
	b.Run("read", func(b *testing.B) {
		b.SetBytes(size)
		start := time.Now()
		for b.Loop() {
			run(b, "nbdcopy", uri, out)
		}
		reportMiBps(b, size*int64(b.N), time.Since(start))
	})
	b.Run("read-to-null", func(b *testing.B) {
		b.SetBytes(size)
		start := time.Now()
		for b.Loop() {
			run(b, "nbdcopy", uri, "null:")
		}
		reportMiBps(b, size*int64(b.N), time.Since(start))
	})
	b.Run("raw-file-copy", func(b *testing.B) {
		b.SetBytes(size)
		start := time.Now()
		for b.Loop() {
			in, err := os.Open(src)
			if err != nil {
				b.Fatal(err)
			}
			o, err := os.Create(out)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(o, in); err != nil {
				b.Fatal(err)
			}
			if err := o.Sync(); err != nil {
				b.Fatal(err)
			}
			in.Close()
			o.Close()
		}
		reportMiBps(b, size*int64(b.N), time.Since(start))
	})
}

// BenchmarkShortConnections measures a short connection beyond the
// first: with one connection open, each op dials, negotiates, writes
// 4 KiB, disconnects and waits until the server has ended the
// connection. Besides the time per connection it reports the
// stop-the-world pauses other than the collector's per connection and
// their time (runtime/metrics): a plain connection's reader thread
// raises GOMAXPROCS when it brings the threads to a number not reached
// in the last few seconds (lowprio.SyscallThreadP, which lowers it only
// once fewer have been there for a while), and a GOMAXPROCS change stops
// the world: 2 pauses per connection when each end lowered it at once.
//
//	go test ./internal/nbd -run '^$' -bench ShortConnections -cpu 2
func BenchmarkShortConnections(b *testing.B) {
	ex := &exports{}
	ex.add("rw", fileBackend(b, 16<<20), false)
	addr, _ := startServer(b, ex, nil)
	held, err := nbdtest.Dial(b.Context(), addr, "rw", nbdtest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer held.Close()
	block := make([]byte, 4096)
	if _, err := held.WriteAt(block, 0); err != nil { // transmitting
		b.Fatal(err)
	}
	released := func() int {
		ex.mu.Lock()
		defer ex.mu.Unlock()
		return ex.released
	}
	pauses0, secs0 := otherPauses()
	for b.Loop() {
		ended := released() + 1
		c, err := nbdtest.Dial(b.Context(), addr, "rw", nbdtest.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.WriteAt(block, 4096); err != nil {
			b.Fatal(err)
		}
		if err := c.Disconnect(); err != nil {
			b.Fatal(err)
		}
		for released() < ended {
			runtime.Gosched()
		}
	}
	pauses1, secs1 := otherPauses()
	b.ReportMetric(float64(pauses1-pauses0)/float64(b.N), "stw/conn")
	b.ReportMetric((secs1-secs0)*1e6/float64(b.N), "stw-µs/conn")
}

// otherPauses returns how many stop-the-world pauses other than the
// collector's the process has had, and their total time (each counted at
// its histogram bucket's lower bound).
func otherPauses() (n uint64, secs float64) {
	s := []metrics.Sample{{Name: "/sched/pauses/total/other:seconds"}}
	metrics.Read(s)
	h := s[0].Value.Float64Histogram()
	for i, c := range h.Counts {
		n += c
		if lo := h.Buckets[i]; lo > 0 {
			secs += float64(c) * lo
		}
	}
	return n, secs
}
