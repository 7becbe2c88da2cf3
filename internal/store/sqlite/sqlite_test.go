package sqlite_test

import (
	"context"
	"path/filepath"
	"slices"
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

// TestMigrationsApplied: a new database has every embedded migration
// applied, in order, and opening it again applies nothing twice.
func TestMigrationsApplied(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	want := sqlite.Migrations()
	if len(want) == 0 {
		t.Fatal("no embedded migrations")
	}
	for range 2 {
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Applied(ctx)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("applied %v, want %v", got, want)
		}
	}
}
