package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"coffer/internal/blobstore"
)

func openTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustRange(t *testing.T, s *Store, name string, off, n int64, want []byte) {
	t.Helper()
	got, err := s.GetRange(context.Background(), name, off, n)
	if err != nil {
		t.Fatalf("GetRange(%s): %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("GetRange(%s) = %q, want %q", name, got, want)
	}
}

// TestFDCacheDeletedAndReplaced: a cached descriptor is never used for an
// object that was deleted or replaced, whether by this Store or behind its
// back (another process).
func TestFDCacheDeletedAndReplaced(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	for _, n := range []string{"packs/aa/1", "packs/aa/2", "packs/aa/3", "packs/aa/4"} {
		if err := s.Put(ctx, n, []byte("0123456789-"+n)); err != nil {
			t.Fatal(err)
		}
		mustRange(t, s, n, 2, 3, []byte("234"))
	}
	if got := s.openCount(); got != 4 {
		t.Fatalf("%d files open, want 4", got)
	}
	// Deleted by this Store.
	if err := s.Delete(ctx, "packs/aa/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRange(ctx, "packs/aa/1", 0, 1); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("GetRange of a deleted pack: %v", err)
	}
	// Deleted behind the Store's back.
	if err := os.Remove(s.Path("packs/aa/2")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRange(ctx, "packs/aa/2", 0, 1); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("GetRange of a pack removed by another process: %v", err)
	}
	if got := s.openCount(); got != 2 {
		t.Fatalf("%d files open after two packs were deleted, want 2", got)
	}
	// Replaced by this Store.
	if err := s.Put(ctx, "packs/aa/3", []byte("abcdefghij")); err != nil {
		t.Fatal(err)
	}
	mustRange(t, s, "packs/aa/3", 2, 3, []byte("cde"))
	// Replaced behind the Store's back (rename over it, as a Put would).
	tmp := filepath.Join(t.TempDir(), "new")
	if err := os.WriteFile(tmp, []byte("ABCDEFGHIJ"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.Path("packs/aa/4")); err != nil {
		t.Fatal(err)
	}
	mustRange(t, s, "packs/aa/4", 2, 3, []byte("CDE"))
	// A range beyond the (cached) size is still refused.
	if _, err := s.GetRange(ctx, "packs/aa/4", 8, 5); err == nil {
		t.Fatal("GetRange beyond the end succeeded")
	}
	if err := s.Close(); err != nil || s.openCount() != 0 {
		t.Fatalf("Close: %v, %d open", err, s.openCount())
	}
	mustRange(t, s, "packs/aa/4", 0, 2, []byte("AB"))
}

// TestFDCacheBoundedAndConcurrent: at most openFiles descriptors stay open
// while many goroutines read, replace and delete objects.
func TestFDCacheBoundedAndConcurrent(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	const objects = 3 * openFiles
	name := func(i int) string { return fmt.Sprintf("packs/%02x/%d", i%7, i) }
	content := func(i, gen int) []byte { return []byte(fmt.Sprintf("object %04d generation %04d", i, gen)) }
	for i := range objects {
		if err := s.Put(ctx, name(i), content(i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for k := range 400 {
				i := (k*7 + w*13) % objects
				b, err := s.GetRange(ctx, name(i), 0, int64(len(content(i, 0))))
				if errors.Is(err, blobstore.ErrNotFound) && i%10 == 0 {
					continue // deleted by the writer below
				}
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.HasPrefix(b, []byte(fmt.Sprintf("object %04d generation", i))) {
					t.Errorf("read %q for object %d", b, i)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := 0; i < objects; i += 5 {
			if i%10 == 0 {
				if err := s.Delete(ctx, name(i)); err != nil {
					t.Error(err)
				}
				continue
			}
			if err := s.Put(ctx, name(i), content(i, 1)); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if n := s.openCount(); n > openFiles {
		t.Fatalf("%d files open, bound %d", n, openFiles)
	}
	for i := range objects {
		want := content(i, 0)
		switch {
		case i%10 == 0:
			if _, err := s.GetRange(ctx, name(i), 0, 1); !errors.Is(err, blobstore.ErrNotFound) {
				t.Fatalf("deleted object %d: %v", i, err)
			}
			continue
		case i%5 == 0:
			want = content(i, 1)
		}
		mustRange(t, s, name(i), 0, int64(len(want)), want)
	}
}
