package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
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
