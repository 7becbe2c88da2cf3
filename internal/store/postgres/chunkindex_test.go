package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/chunkstore/indextest"
	"coffer/internal/store/postgres/pgtest"
)

func TestChunkIndexConformance(t *testing.T) {
	c := pgtest.Start(t)
	indextest.Run(t, func(t *testing.T) chunkstore.Index {
		return open(t, c.NewDatabase(t)).ChunkIndex()
	})
}

// TestChunkStoreOnPostgres runs the chunk store over a local directory and
// the PostgreSQL index, reopening both between steps.
func TestChunkStoreOnPostgres(t *testing.T) {
	url := pgtest.Start(t).NewDatabase(t)
	indextest.RunChunkStore(t, func(t *testing.T) chunkstore.Index { return open(t, url).ChunkIndex() })
}

// TestChunkIndexConcurrentAdds: batches that share chunks, added at once
// in different orders (as two backups of similar disks do), all land,
// without deadlocks surfacing to the caller.
func TestChunkIndexConcurrentAdds(t *testing.T) {
	ctx := context.Background()
	x := open(t, pgtest.Start(t).NewDatabase(t)).ChunkIndex()
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var es []chunkstore.Entry
			for i := range 300 {
				n := (i*7 + w*13) % 400 // overlapping sets, different orders
				es = append(es, chunkstore.Entry{ID: chunk.Hash([]byte(fmt.Sprint(n))), Pack: fmt.Sprintf("packs/%d", w),
					Offset: int64(i), Length: 1, RawLength: 1})
			}
			errs <- x.Add(ctx, es)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := x.Stats(ctx)
	if err != nil || st.Chunks != 400 {
		t.Fatalf("stats %+v %v, want 400 chunks", st, err)
	}
}
