package local_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/blobtest"
	"coffer/internal/blobstore/local"
)

func open(t *testing.T) *local.Store {
	t.Helper()
	s, err := local.Open(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Store { return open(t) })
}

// TestFilesAreOwnerOnlyReadOnlyAndNoTempLeft: objects are read-only and,
// like the directories that hold them, owner-only whatever the umask.
func TestFilesAreOwnerOnlyReadOnlyAndNoTempLeft(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0o022))
	s := open(t)
	ctx := context.Background()
	if err := s.Put(ctx, "packs/ab/x", []byte("data")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Path("packs/ab/x"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o400 {
		t.Errorf("object mode %v, want -r-------- (read-only, owner-only)", fi.Mode())
	}
	for _, d := range []string{"", "packs", "packs/ab"} {
		fi, err := os.Stat(s.Path(d))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("directory %q mode %v, want drwx------", d, fi.Mode())
		}
	}
	ents, err := os.ReadDir(filepath.Dir(s.Path("packs/ab/x")))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestTempFilesNotListed(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if err := s.Put(ctx, "d/a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	// A crash between create and rename leaves a temporary file.
	if err := os.WriteFile(filepath.Join(filepath.Dir(s.Path("d/a")), ".tmp-123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := s.List(ctx, "", func(in blobstore.Info) error { names = append(names, in.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "d/a" {
		t.Errorf("List = %v, want [d/a]", names)
	}
}

func TestInvalidNames(t *testing.T) {
	s := open(t)
	for _, name := range []string{"", "../x", "a//b", "a/./b", "/abs", "a/.tmp-x", "sp ace", "a\\b"} {
		if err := s.Put(context.Background(), name, nil); !errors.Is(err, local.ErrInvalidName) {
			t.Errorf("Put(%q) error = %v, want ErrInvalidName", name, err)
		}
	}
}

func TestPermanentErrors(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: permission bits are not enforced")
	}
	s := open(t)
	if err := os.Chmod(s.Dir(), 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(s.Dir(), 0o755) })
	err := s.Put(context.Background(), "x", []byte("x"))
	var p interface{ Permanent() bool }
	if !errors.As(err, &p) || !p.Permanent() {
		t.Fatalf("Put in read-only dir: %v, want a permanent error", err)
	}
}
