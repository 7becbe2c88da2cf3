package sqlite_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"coffer/internal/capacity"
	"coffer/internal/resource"
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

// TestOpenOwnerOnly: the database and its -wal and -shm files are created
// owner-only whatever the umask (SQLite alone would make them 0644).
func TestOpenOwnerOnly(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0o022))
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Object{Kind: "k", Key: "/a", Data: []byte("{}")}, store.PutOptions{})
	}); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		fi, err := os.Stat(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want -rw-------", filepath.Base(path+suffix), fi.Mode())
		}
	}
}

// TestWriterJournalsInMemory: the write connection keeps statement
// journals in memory (temp_store = MEMORY), which a chunk-index Add's
// multi-row upserts need, instead of a pwrite to a temporary file per
// page (docs/design.md, "Issue 14's figures").
func TestWriterJournalsInMemory(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mode int
	if err := s.DB().QueryRowContext(ctx, "PRAGMA temp_store").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != 2 { // 0 default (a file), 1 file, 2 memory
		t.Fatalf("writer's temp_store = %d, want 2 (memory)", mode)
	}
}

// A full database is the one no-space error: SQLite's SQLITE_FULL (here
// from max_page_count, as it comes from a full filesystem) is classified
// as capacity.ErrNoSpace, an HTTP 507 naming the database, and the store
// works again once there is room.
func TestFullDatabaseIsNoSpace(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var pages int64
	if err := s.DB().QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, pages+2)); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 64<<10)
	var full error
	for i := 0; i < 100 && full == nil; i++ {
		full = s.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Object{Kind: "k", Key: fmt.Sprintf("/o%d", i), Data: big}, store.PutOptions{})
		})
	}
	if !errors.Is(full, capacity.ErrNoSpace) {
		t.Fatalf("writes to a full database: got %v, want capacity.ErrNoSpace", full)
	}
	e := resource.AsError(full)
	if e == nil || e.Kind != resource.KindInsufficientStorage || e.Code != capacity.Code || !strings.Contains(e.Message, path) {
		t.Fatalf("error %#v: want kind InsufficientStorage, code %s, a message naming %s", e, capacity.Code, path)
	}
	if _, err := s.DB().ExecContext(ctx, `PRAGMA max_page_count = 1000000`); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Object{Kind: "k", Key: "/after", Data: big}, store.PutOptions{})
	}); err != nil {
		t.Fatalf("write after space returned: %v", err)
	}
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
