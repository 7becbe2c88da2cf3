package location_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"coffer/internal/blobstore/location"
	"coffer/internal/blobstore/s3/s3test"
	"coffer/internal/directio"
)

// BenchmarkBlob measures pack uploads and chunk-run reads through the
// decorators on a local directory and on versitygw (posix backend, same
// disk, loopback) in the same run, so that their ratio can be read off:
//
//	go test -run '^$' -bench Blob ./internal/blobstore/location/
func BenchmarkBlob(b *testing.B) {
	ctx := context.Background()
	srv := s3test.Start(b)
	stores := []struct {
		name string
		loc  string
		opts location.Options
	}{
		{"local", b.TempDir(), location.Options{}},
		{"s3", "s3://" + srv.NewBucket(b) + "/bench", s3Options(srv, srv.Endpoint)},
	}
	const packSize = 32 << 20 // chunkstore.DefaultPackSize
	pack := make([]byte, packSize)
	rand.NewChaCha8([32]byte{1}).Read(pack)
	opened := make([]*location.Store, len(stores))
	for i, st := range stores {
		st.opts.S3.MultipartThreshold = 0 // the default: packs go up in one PUT
		s, err := location.Open(ctx, st.loc, st.opts)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Put(ctx, "read/pack", pack); err != nil {
			b.Fatal(err)
		}
		opened[i] = s
	}
	for _, par := range []int{1, 4} {
		for i, st := range stores {
			b.Run(fmt.Sprintf("put-32MiB-x%d/%s", par, st.name), func(b *testing.B) {
				s := opened[i]
				b.SetBytes(packSize)
				b.SetParallelism(par) // of GOMAXPROCS goroutines
				var n atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						// A few names in turn keep the disk use bounded.
						if err := s.Put(ctx, fmt.Sprintf("put/%d", n.Add(1)%8), pack); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
	for _, size := range []int64{64 << 10, 1 << 20, 8 << 20} {
		for i, st := range stores {
			b.Run(fmt.Sprintf("getrange-%dKiB/%s", size>>10, st.name), func(b *testing.B) {
				s := opened[i]
				buf := directio.Buffer(int(size) + 2*directio.Align)
				r := rand.New(rand.NewPCG(1, 2))
				b.SetBytes(size)
				for b.Loop() {
					off := r.Int64N(packSize - size)
					if _, err := s.ReadRange(ctx, "read/pack", off, size, buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
