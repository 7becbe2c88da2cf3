package blockdev

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteback: writes through writebackFile land in the file, early
// writeback is requested as the writebackEvery boundaries are crossed,
// and stop ends the goroutine.
func TestWriteback(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wb := startWriteback(f, true)
	w := writebackFile{f, wb}
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
