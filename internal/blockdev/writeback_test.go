package blockdev

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"coffer/internal/directio"
)

// TestWriteback: buffered writes through restoreFile land in the file, early
// writeback is requested as the writebackEvery boundaries are crossed,
// and stop ends the goroutine.
func TestWriteback(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wb := startWriteback(f, true)
	w := restoreFile{f: f, wb: wb}
	block := bytes.Repeat([]byte{0xA5}, 1<<20)
	const n = 3 * writebackEvery / (1 << 20)
	for i := range n {
		if _, err := w.WriteAt(block, int64(i)<<20); err != nil {
			t.Fatal(err)
		}
	}
	wb.stop()
	if got := wb.written.Load(); got != n<<20 {
		t.Fatalf("written %d, want %d", got, n<<20)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 1<<20)
	if _, err := f.ReadAt(got, (n-1)<<20); err != nil || !bytes.Equal(got, block) {
		t.Fatalf("read back: %v", err)
	}
}

// TestRestoreFileDirect: restoreFile sends the aligned part of a write
// through the direct descriptor (directio.WriteAt, tested there) and counts
// only the buffered rest toward early writeback.
func TestRestoreFileDirect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := directio.Open(path, os.O_WRONLY)
	if err != nil {
		t.Skipf("no direct I/O here: %v", err)
	}
	defer d.Close()
	wb := startWriteback(f, false)
	w := restoreFile{f: f, direct: d, wb: wb}
	p := directio.Buffer(3*directio.Align + 100)
	for i := range p {
		p[i] = byte(i*13 + 1)
	}
	if n, err := w.WriteAt(p, directio.Align); n != len(p) || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	wb.stop()
	if got := wb.written.Load(); got != 100 {
		t.Fatalf("writeback counted %d bytes, want the 100 written buffered", got)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(make([]byte, directio.Align), p...); !bytes.Equal(got, want) {
		t.Fatal("file differs from what was written")
	}
}
