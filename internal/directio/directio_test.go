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
	if err := directio.SetDirect(f, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 3); err != nil { // unaligned: buffered now
		t.Fatal(err)
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
	g, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := directio.SetDirect(g, true); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("SetDirect on tmpfs: %v, want errors.ErrUnsupported", err)
	}
}
