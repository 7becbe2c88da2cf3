package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/store/sqlite"
)

// BenchmarkIndexLookup measures the SQLite chunk index's Lookup per chunk
// ID, one ID per call (what chunkstore.Put and Get do for every block) and
// in batches (what a page-at-a-time restore could do), over an index of
// 32 Ki chunks (a 4 GiB disk with half its blocks holding data).
func BenchmarkIndexLookup(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	x := db.ChunkIndex()
	const n = 32 << 10
	ids := make([]chunk.ID, n)
	var entries []chunkstore.Entry
	for i := range ids {
		binary.LittleEndian.PutUint64(ids[i][:], uint64(i)*0x9e3779b97f4a7c15+1)
		binary.LittleEndian.PutUint64(ids[i][8:], uint64(i))
		entries = append(entries, chunkstore.Entry{ID: ids[i], Pack: fmt.Sprintf("packs/%02x/p%d", i%256, i/1024),
			Offset: int64(i%1024) * 65536, Length: 65536, RawLength: 65536})
		if len(entries) == 1024 || i == n-1 {
			if err := x.Add(ctx, entries); err != nil {
				b.Fatal(err)
			}
			entries = entries[:0]
		}
	}
	for _, batch := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			i := 0
			for b.Loop() {
				lo := (i * batch) % (n - batch)
				m, err := x.Lookup(ctx, ids[lo:lo+batch])
				if err != nil || len(m) != batch {
					b.Fatalf("%d found, %v", len(m), err)
				}
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch)/1e3, "µs/id")
		})
	}
}
