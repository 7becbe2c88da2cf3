//go:build linux

package nbd_test

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

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
