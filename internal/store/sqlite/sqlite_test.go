package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"coffer/internal/store"
	"coffer/internal/store/sqlite"
	"coffer/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		path := filepath.Join(t.TempDir(), "meta.db")
		open := func() store.Store {
			s, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		return open(), open
	})
}
