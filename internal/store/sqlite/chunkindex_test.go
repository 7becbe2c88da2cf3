package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"coffer/internal/chunk"
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
	dbPath := filepath.Join(t.TempDir(), "meta.db")
	indextest.RunChunkStore(t, func(t *testing.T) chunkstore.Index {
		return openDB(t, dbPath).ChunkIndex()
	})
}

// TestChunkIndexLookupRangeChecked: a row whose stored length does not fit
// an entry's uint32 (a damaged index) fails the lookup instead of coming
// back truncated.
func TestChunkIndexLookupRangeChecked(t *testing.T) {
	ctx := context.Background()
	s := openDB(t, filepath.Join(t.TempDir(), "meta.db"))
	x := s.ChunkIndex()
	good, bad := chunk.Hash([]byte("good")), chunk.Hash([]byte("bad"))
	err := x.Add(ctx, []chunkstore.Entry{
		{ID: good, Pack: "packs/p", Offset: 4096, Length: 30000, RawLength: 65536, Compression: chunkstore.CompressionZstd},
		{ID: bad, Pack: "packs/p", Offset: 8192, Length: 30000, RawLength: 65536, Compression: chunkstore.CompressionZstd},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := x.Lookup(ctx, []chunk.ID{good})
	if e := got[good]; err != nil || e.Length != 30000 || e.RawLength != 65536 || e.Offset != 4096 || e.Pack != "packs/p" {
		t.Fatalf("Lookup = %+v, %v", got, err)
	}
	if _, err := s.DB().ExecContext(ctx, `UPDATE chunk_index SET raw_length = ? WHERE id = ?`, int64(1)<<32, bad[:]); err != nil {
		t.Fatal(err)
	}
	if got, err := x.Lookup(ctx, []chunk.ID{good, bad}); err == nil {
		t.Errorf("a raw length of 2^32 was looked up as %+v", got[bad])
	}
}
