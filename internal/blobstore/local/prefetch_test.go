package local_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/local"
	"coffer/internal/directio"
)

// resident returns how many of the pages of [off, off+n) of the file at
// path are in the page cache (mincore of a mapping of it).
func resident(t *testing.T, path string, off, n int64) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pg := int64(os.Getpagesize())
	lo := off &^ (pg - 1)
	m, err := unix.Mmap(int(f.Fd()), lo, int(off+n-lo), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (int64(len(m))+pg-1)/pg)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	k := 0
	for _, v := range vec {
		k += int(v & 1)
	}
	return k
}

// TestPrefetchReadsAhead: Prefetch of a range of an object not in the page
// cache (written with O_DIRECT, or dropped) brings that range into it, and
// only that range, before it returns; it changes no byte; a missing
// object is ErrNotFound.
// Skipped where the file system keeps the object's pages whatever is
// asked (tmpfs).
func TestPrefetchReadsAhead(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := local.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var _ blobstore.Prefetcher = s
	data := directio.Buffer(4 << 20)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	if err := s.Put(ctx, "packs/x", data); err != nil {
		t.Fatal(err)
	}
	path := s.Path("packs/x")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	f.Close()
	const off, n = 1<<20 + 4096, 512 << 10
	if k := resident(t, path, 0, int64(len(data))); k > 0 {
		t.Skipf("%d pages of the object stay in the page cache after DONTNEED on this file system", k)
	}
	if err := s.Prefetch(ctx, "packs/x", off, n); err != nil {
		t.Fatal(err)
	}
	// Prefetch returns once the read ahead has reached the range's last
	// page (it reads that page, which waits for its I/O): every page
	// before it is then in the cache.
	pg := int64(os.Getpagesize())
	if k, want := resident(t, path, off, n-pg), int((n-pg)/pg); k != want {
		t.Errorf("%d of the range's first %d pages in the page cache when Prefetch returned", k, want)
	}
	if k := resident(t, path, 3<<20, 1<<20); k != 0 {
		t.Errorf("%d pages of the last MiB, never hinted, in the page cache", k)
	}
	got, err := s.GetRange(ctx, "packs/x", off, n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != data[off+i] {
			t.Fatalf("byte %d of the prefetched range differs", off+i)
		}
	}
	if err := s.Prefetch(ctx, "packs/none", 0, 4096); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Prefetch of a missing object: %v, want ErrNotFound", err)
	}
}
