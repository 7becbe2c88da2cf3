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

// TestRestoreFileDirect: restoreFile writes the aligned part of a write
// directly and the rest buffered; whatever the split, the file holds
// exactly what was written.
func TestRestoreFileDirect(t *testing.T) {
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
	if err != nil {
		t.Skipf("no direct I/O here: %v", err)
	}
	defer d.Close()
	wb := startWriteback(f, false)
	w := restoreFile{f: f, direct: d, wb: wb}
	buf := directio.Buffer(64 << 10)
	for i := range buf {
		buf[i] = byte(i*13 + 1)
	}
	want := make([]byte, 1<<20)
	for _, c := range []struct{ off, from, n int }{
		{0, 0, 64 << 10},              // all direct
		{128 << 10, 0, 3*4096 + 100},  // direct prefix, buffered tail
		{256 << 10, 1, 8192},          // unaligned memory: buffered
		{512<<10 + 512, 0, 8192},      // unaligned offset: buffered
		{1<<20 - 5000, 0, 5000},       // the end of the file
		{768 << 10, 4096, 60<<10 - 7}, // aligned start inside the buffer
	} {
		p := buf[c.from : c.from+c.n]
		if n, err := w.WriteAt(p, int64(c.off)); n != len(p) || err != nil {
			t.Fatalf("write %d at %d: %d, %v", len(p), c.off, n, err)
		}
		copy(want[c.off:], p)
	}
	wb.stop()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("file differs from what was written")
	}
}
