package directio_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"coffer/internal/directio"
)

func TestBufferAligned(t *testing.T) {
	for _, n := range []int{0, 1, directio.Align - 1, directio.Align, 3*directio.Align + 5, 1 << 20} {
		b := directio.Buffer(n)
		if len(b) != n || cap(b) != n {
			t.Fatalf("Buffer(%d): len %d cap %d", n, len(b), cap(b))
		}
		if !directio.Aligned(b[:0], 0) {
			t.Fatalf("Buffer(%d) is not aligned", n)
		}
	}
	b := directio.Buffer(2 * directio.Align)
	for _, tc := range []struct {
		p    []byte
		off  int64
		want bool
	}{
		{b, 0, true}, {b, directio.Align, true}, {b, 1, false},
		{b[1 : directio.Align+1], 0, false}, {b[:directio.Align-1], 0, false}, {b[directio.Align:], 0, true},
	} {
		if got := directio.Aligned(tc.p, tc.off); got != tc.want {
			t.Errorf("Aligned(len %d, off %d) = %v, want %v", len(tc.p), tc.off, got, tc.want)
		}
	}
}

// TestMap checks memory from Map and MapHuge: the size asked, zeroed,
// aligned, writable, usable for a direct transfer, and released by Unmap;
// a size that is not positive is an error. MapHuge's size spans huge
// pages.
func TestMap(t *testing.T) {
	for _, c := range []struct {
		name string
		mapN func(int) ([]byte, error)
		n    int
	}{
		{"Map", directio.Map, 3*directio.Align + 100},
		{"MapHuge", directio.MapHuge, 5<<20 + 100},
	} {
		t.Run(c.name, func(t *testing.T) { testMap(t, c.mapN, c.n) })
	}
}

func testMap(t *testing.T, mapN func(int) ([]byte, error), n int) {
	for _, bad := range []int{0, -1} {
		if _, err := mapN(bad); err == nil {
			t.Errorf("size %d: no error", bad)
		}
	}
	b, err := mapN(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != n || !directio.Aligned(b[:0], 0) {
		t.Fatalf("size %d: len %d, aligned %v", n, len(b), directio.Aligned(b[:0], 0))
	}
	if !bytes.Equal(b, make([]byte, n)) {
		t.Fatal("memory is not zeroed")
	}
	for i := range b {
		b[i] = byte(i * 13)
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 3*directio.Align), 0o600); err != nil {
		t.Fatal(err)
	}
	buffered, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer buffered.Close()
	direct, err := directio.Open(path, os.O_RDWR)
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		t.Fatal(err)
	}
	if direct != nil {
		defer direct.Close()
	}
	if _, _, err := directio.WriteAt(direct, buffered, b, 0); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b) {
		t.Fatal("file differs from the mapped buffer written")
	}
	if err := directio.Unmap(b); err != nil {
		t.Fatal(err)
	}
}

// TestWriteReadDirect writes and reads a file directly where the file
// system allows it, and checks that refusal is errors.ErrUnsupported.
func TestWriteReadDirect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := directio.Open(path, os.O_RDWR)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("this file system refuses direct I/O: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := directio.Buffer(4 * directio.Align)
	for i := range w {
		w[i] = byte(i * 7)
	}
	if _, err := f.WriteAt(w, directio.Align); err != nil {
		t.Fatal(err)
	}
	r := directio.Buffer(5 * directio.Align)
	if n, err := f.ReadAt(r, 0); n != len(r) || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	if !bytes.Equal(r[directio.Align:], w) || !bytes.Equal(r[:directio.Align], make([]byte, directio.Align)) {
		t.Fatal("read back differs")
	}
}

// TestWriteAtSplits writes through WriteAt at every kind of alignment and
// checks the split and the file's bytes: whatever goes which way, the file
// holds exactly what was written.
func TestWriteAtSplits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	d, err := directio.Open(path, os.O_WRONLY)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("this file system refuses direct I/O: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	buf := directio.Buffer(64 << 10)
	for i := range buf {
		buf[i] = byte(i*13 + 1)
	}
	want := make([]byte, 1<<20)
	for _, c := range []struct{ off, from, n, direct int }{
		{0, 0, 64 << 10, 64 << 10},             // all direct
		{128 << 10, 0, 3*4096 + 100, 3 * 4096}, // direct prefix, buffered tail
		{256 << 10, 1, 8192, 0},                // unaligned memory: buffered
		{512<<10 + 512, 0, 8192, 0},            // unaligned offset: buffered
		{1<<20 - 5000, 0, 5000, 0},             // unaligned offset at the end
		{768 << 10, 4096, 4000, 0},             // under one block
	} {
		p := buf[c.from : c.from+c.n]
		dn, bn, err := directio.WriteAt(d, f, p, int64(c.off))
		if err != nil || dn+bn != len(p) || dn != c.direct {
			t.Fatalf("write %d at %d: direct %d buffered %d, %v; want direct %d", len(p), c.off, dn, bn, err, c.direct)
		}
		copy(want[c.off:], p)
	}
	if _, _, err := directio.WriteAt(nil, f, buf[:4096], 0); err != nil { // no direct descriptor
		t.Fatal(err)
	}
	copy(want, buf[:4096])
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("file differs from what was written")
	}
}

// TestTmpfsRefuses checks that a file system without direct I/O is
// reported as errors.ErrUnsupported (tmpfs on Linux), which is what makes
// callers fall back to buffered I/O.
func TestTmpfsRefuses(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "coffer-directio-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := directio.Open(path, os.O_RDWR)
	if err == nil {
		f.Close()
		t.Skip("this tmpfs takes direct I/O")
	}
	if !errors.Is(err, errors.ErrUnsupported) || !directio.Refused(err) {
		t.Fatalf("open on tmpfs: %v, want errors.ErrUnsupported", err)
	}
}
