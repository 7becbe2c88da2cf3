package blockdev

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

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

// TestWritebackDropsOnlyWhatItWrote: early writeback with drop leaves the
// cached pages of the rest of the file (a hydrating volume's user's) in
// the page cache; it used to drop the whole file's at every request.
func TestWritebackDropsOnlyWhatItWrote(t *testing.T) {
	const size = 64 << 20
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := bytes.Repeat([]byte{0x5A}, 1<<20)
	for off := int64(0); off < size; off += 1 << 20 {
		if _, err := f.WriteAt(block, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil { // clean, cached pages
		t.Fatal(err)
	}
	resident := func(off, n int64) float64 {
		t.Helper()
		m, err := unix.Mmap(int(f.Fd()), off, int(n), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(m)
		vec := make([]byte, (n+int64(os.Getpagesize())-1)/int64(os.Getpagesize()))
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatal(e)
		}
		in := 0
		for _, v := range vec {
			in += int(v & 1)
		}
		return float64(in) / float64(len(vec))
	}
	if r := resident(0, 16<<20); r < 0.99 {
		t.Skipf("only %.0f%% of a file just written is cached here", 100*r)
	}
	wb := startWriteback(f, true)
	w := restoreFile{f: f, wb: wb}
	for off := int64(32 << 20); off < 32<<20+3*writebackEvery; off += 1 << 20 {
		if _, err := w.WriteAt(block, off); err != nil {
			t.Fatal(err)
		}
	}
	wb.stop()
	if r := resident(0, 16<<20); r < 0.99 {
		t.Fatalf("%.0f%% of the first 16 MiB, which no one wrote, is still cached after the writeback of [32 MiB, 56 MiB); want all of it", 100*r)
	}
}
