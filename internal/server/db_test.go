package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"coffer/internal/store/location"
)

// TestOpenDB: --db names where the metadata lives. A sqlite:/// URL puts
// the database there instead of DATA/metadata.db, and a restart on the
// same --db finds the same tenant; an unknown scheme is refused with an
// error that names it and not the password.
func TestOpenDB(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	db := filepath.Join(t.TempDir(), "meta", "coffer.db")
	if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
		t.Fatal(err)
	}
	open := func(loc string) (*Server, error) {
		return Open(ctx, Config{DataDir: dir, Listen: "127.0.0.1:0", NBDListen: "127.0.0.1:0", DB: loc,
			Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))})
	}
	s, err := open("sqlite://" + db)
	if err != nil {
		t.Fatal(err)
	}
	tenant := s.Admin.TenantID
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("--db sqlite://%s: %v", db, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("DATA/metadata.db with --db elsewhere: %v", err)
	}
	s, err = open(db) // a path names the same file
	if err != nil {
		t.Fatal(err)
	}
	if s.IDs.TenantID != tenant {
		t.Errorf("restart on the same --db: tenant %s, want %s", s.IDs.TenantID, tenant)
	}
	s.Close()

	_, err = open("mysql://coffer:hunter2@db/coffer")
	if !errors.Is(err, location.ErrUnknownScheme) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("--db mysql://…: %v, want an unknown scheme without the password", err)
	}
}
