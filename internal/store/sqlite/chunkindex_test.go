package sqlite_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"coffer/internal/blobstore/local"
	"coffer/internal/chunk"
	"coffer/internal/clock"

	"coffer/internal/chunkstore"
	"coffer/internal/chunkstore/indextest"
	"coffer/internal/store/sqlite"
)

func openDB(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestChunkIndexConformance(t *testing.T) {
	indextest.Run(t, func(t *testing.T) chunkstore.Index {
		return openDB(t, filepath.Join(t.TempDir(), "meta.db")).ChunkIndex()
	})
}

// TestChunkStoreOnSQLite runs the chunk store over a local directory and the
// SQLite index, reopening both between steps.
func TestChunkStoreOnSQLite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "meta.db")
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	open := func() *chunkstore.Store {
		blobs, err := local.Open(filepath.Join(dir, "blobs"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := chunkstore.New(blobs, openDB(t, dbPath).ChunkIndex(), chunkstore.Options{Clock: clk, PackSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	datas := map[chunk.ID][]byte{}
	s := open()
	for i := range 40 {
		d := bytes.Repeat([]byte(fmt.Sprintf("chunk %d ", i)), 1000+i)
		if i%2 == 1 {
			d = make([]byte, 8<<10)
			rand.Read(d)
		}
		id, err := s.Put(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		datas[id] = d
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(s *chunkstore.Store) {
		t.Helper()
		for id, d := range datas {
			got, err := s.Get(ctx, id)
			if err != nil || !bytes.Equal(got, d) {
				t.Fatalf("Get(%s): %v", id.Short(), err)
			}
		}
		rep, err := s.Verify(ctx, chunkstore.VerifyOptions{})
		if err != nil || !rep.OK() {
			t.Fatalf("Verify: %v %v", err, rep.Problems)
		}
	}
	// Flush durability: a new Store over a reopened database.
	s = open()
	check(s)
	st, err := s.Stats(ctx)
	if err != nil || st.Chunks != int64(len(datas)) || st.Packs < 2 {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	// RebuildIndex from the packs alone.
	db := openDB(t, dbPath)
	if err := db.ChunkIndex().Clear(ctx); err != nil {
		t.Fatal(err)
	}
	s = open()
	if err := s.RebuildIndex(ctx); err != nil {
		t.Fatal(err)
	}
	check(s)
	// GC: drop half of the chunks over two cycles.
	live := map[chunk.ID]bool{}
	n := 0
	for id := range datas {
		if n%2 == 0 {
			live[id] = true
		} else {
			delete(datas, id)
		}
		n++
	}
	mark := func(ctx context.Context, mark func(chunk.ID)) error {
		for id := range live {
			mark(id)
		}
		return nil
	}
	for range 2 {
		clk.Advance(10 * time.Hour)
		// A tiny rewrite threshold rewrites every pack with a dead chunk, so
		// the outcome does not depend on how map order spread the chunks.
		if _, err := s.GC(ctx, mark, chunkstore.GCOptions{RewriteThreshold: 1e-9}); err != nil {
			t.Fatal(err)
		}
	}
	s = open()
	check(s)
	if st, _ := s.Stats(ctx); st.Chunks != int64(len(live)) {
		t.Errorf("after GC %d chunks, want %d", st.Chunks, len(live))
	}
}
