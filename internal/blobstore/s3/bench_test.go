package s3_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sync/errgroup"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/local"
	"coffer/internal/blobstore/s3"
	"coffer/internal/blobstore/s3/s3test"
)

// BenchmarkReadRange reads a 32 MiB pack in ranged reads of 256 KiB to
// 4 MiB, in order (a restore's read of a pack's chunk runs), from
// versitygw on loopback, with and without read-ahead, and, as the
// reference of the same run, from the local directory store. Besides the time it reports the CPU milliseconds per
// MiB of this process (client-cpu-ms/MiB) and, for S3, of versitygw
// (server-cpu-ms/MiB), so that the cost can be judged on shared cores:
// compare the S3 figures with the local ones of the same run.
func BenchmarkReadRange(b *testing.B) {
	ctx := context.Background()
	const pack = 32 << 20
	data := randBytes(7, pack)
	stores := benchStores(ctx, b)
	for _, s := range stores {
		// Packs read in turn: none is read again while read-ahead
		// remembers its blocks (a restore reads a pack once).
		for _, p := range []string{"p0", "p1", "p2"} {
			if err := s.st.Put(ctx, p, data); err != nil {
				b.Fatal(err)
			}
		}
		for _, run := range []int64{256 << 10, 1 << 20, 4 << 20} {
			b.Run(fmt.Sprintf("%s/%dKiB", s.name, run>>10), func(b *testing.B) {
				rr := s.st.(blobstore.RangeReader)
				buf := make([]byte, run)
				self0, srv0, g0 := cpu(b, os.Getpid()), cpu(b, s.pid), getsOf(s.st)
				b.SetBytes(pack)
				i := 0
				for b.Loop() {
					p := fmt.Sprintf("p%d", i%3)
					i++
					for off := int64(0); off < pack; off += run {
						if _, err := rr.ReadRange(ctx, p, off, run, buf); err != nil {
							b.Fatal(err)
						}
					}
				}
				mib := float64(b.N) * pack / (1 << 20)
				reportGETs(b, s.st, g0)
				b.ReportMetric(float64(cpu(b, os.Getpid())-self0)/mib, "client-cpu-ms/MiB")
				if s.pid != 0 {
					b.ReportMetric(float64(cpu(b, s.pid)-srv0)/mib, "server-cpu-ms/MiB")
				}
			})
		}
	}
}

// BenchmarkRestorePattern reads 32 MiB packs as a restore's jobs do:
// eight at once, each taking the next 4 MiB stretch of the pack and
// reading it in two runs of 2 MiB, from versitygw with and without
// read-ahead and from the local directory (the reference of the run).
func BenchmarkRestorePattern(b *testing.B) {
	ctx := context.Background()
	const pack, span, run, jobs = 32 << 20, 4 << 20, 2 << 20, 8
	data := randBytes(8, pack)
	stores := benchStores(ctx, b)
	for _, s := range stores {
		for _, p := range []string{"p0", "p1", "p2"} {
			if err := s.st.Put(ctx, p, data); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(s.name, func(b *testing.B) {
			rr := s.st.(blobstore.RangeReader)
			self0, srv0, g0 := cpu(b, os.Getpid()), cpu(b, s.pid), getsOf(s.st)
			b.SetBytes(pack)
			i := 0
			for b.Loop() {
				p := fmt.Sprintf("p%d", i%3)
				i++
				var next atomic.Int64
				var g errgroup.Group
				for range jobs {
					g.Go(func() error {
						buf := make([]byte, run)
						for {
							at := next.Add(span) - span
							if at >= pack {
								return nil
							}
							for off := at; off < at+span; off += run {
								if _, err := rr.ReadRange(ctx, p, off, run, buf); err != nil {
									return err
								}
							}
						}
					})
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
			}
			mib := float64(b.N) * pack / (1 << 20)
			reportGETs(b, s.st, g0)
			b.ReportMetric(float64(cpu(b, os.Getpid())-self0)/mib, "client-cpu-ms/MiB")
			if s.pid != 0 {
				b.ReportMetric(float64(cpu(b, s.pid)-srv0)/mib, "server-cpu-ms/MiB")
			}
		})
	}
}

// getsOf returns the ranged GETs an S3 store has sent (0 for others).
// benchStore is one store a benchmark compares: its name, and the process
// ID of its server when it has one (0: this process).
type benchStore struct {
	name string
	st   blobstore.Store
	pid  int
}

// benchStores returns the stores the read benchmarks compare: the local
// directory (the reference of the run), and versitygw with and without
// read-ahead.
func benchStores(ctx context.Context, b *testing.B) []benchStore {
	b.Helper()
	srv := s3test.Start(b)
	loc, err := local.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	stores := []benchStore{{"local", loc, 0}}
	bucket := srv.NewBucket(b)
	for _, o := range []struct {
		name  string
		ahead int64
	}{{"s3", 0}, {"s3-no-read-ahead", -1}} {
		st, err := s3.Open(ctx, s3.Options{Bucket: bucket, Endpoint: srv.Endpoint, PathStyle: true, ReadAhead: o.ahead,
			Region: s3test.Region, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
		if err != nil {
			b.Fatal(err)
		}
		stores = append(stores, benchStore{o.name, st, srv.PID})
	}
	return stores
}

func getsOf(st blobstore.Store) int64 {
	if s, ok := st.(*s3.Store); ok {
		return s3.RangedGETs(s)
	}
	return 0
}

// reportGETs reports the ranged GETs per op since g0, for S3 stores.
func reportGETs(b *testing.B, st blobstore.Store, g0 int64) {
	if _, ok := st.(*s3.Store); ok {
		b.ReportMetric(float64(getsOf(st)-g0)/float64(b.N), "GETs/op")
	}
}

// cpu returns the user and system CPU milliseconds process pid has used
// (0 for pid 0).
func cpu(b *testing.B, pid int) int64 {
	if pid == 0 {
		return 0
	}
	if pid == os.Getpid() {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return ru.Utime.Nano()/1e6 + ru.Stime.Nano()/1e6
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th of the line, in clock ticks (100 per second).
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return (ut + st) * 10
}
