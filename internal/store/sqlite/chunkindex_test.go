package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

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
