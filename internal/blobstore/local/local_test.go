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
	"coffer/internal/capacity"
	"coffer/internal/resource"
	"coffer/internal/testenv"
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

// A Put that finds the filesystem full fails with the one no-space error
// (capacity.ErrNoSpace, an HTTP 507 naming the chunk store), stays a
// permanent error, leaves no temporary file, and Put works again once
// space is back.
func TestPutOnFullFilesystem(t *testing.T) {
	mnt := testenv.SmallFilesystem(t, "tmpfs", 4<<20)
	s, err := local.Open(filepath.Join(mnt, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "packs/a", []byte("before")); err != nil {
		t.Fatal(err)
	}
	filler := testenv.Fill(t, mnt)
	err = s.Put(ctx, "packs/b", make([]byte, 1<<20))
	if !errors.Is(err, capacity.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("put on a full filesystem: %v, want capacity.ErrNoSpace wrapping ENOSPC", err)
	}
	var perm interface{ Permanent() bool }
	if !errors.As(err, &perm) || !perm.Permanent() {
		t.Errorf("no-space error %v is not permanent", err)
	}
	if e := resource.AsError(err); e == nil || e.Kind != resource.KindInsufficientStorage || !strings.Contains(e.Message, s.Dir()) {
		t.Errorf("error %v: want an InsufficientStorage error naming %s", err, s.Dir())
	}
	ents, _ := os.ReadDir(filepath.Dir(s.Path("packs/b")))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "packs/b", make([]byte, 1<<20)); err != nil {
		t.Fatalf("put after space returned: %v", err)
	}
	if b, err := s.Get(ctx, "packs/a"); err != nil || string(b) != "before" {
		t.Fatalf("object written before the filesystem filled: %q, %v", b, err)
	}
}
