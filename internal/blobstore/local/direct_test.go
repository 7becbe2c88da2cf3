package local_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"coffer/internal/blobstore/local"
	"coffer/internal/directio"
)

// TestLargeObjectsRoundTrip writes objects around the direct-I/O size and
// alignment boundaries, from aligned and unaligned buffers, on the test's
// file system and on tmpfs (which refuses O_DIRECT on older kernels), and
// reads every one back byte for byte: whichever way Put writes, the object
// is the data.
func TestLargeObjectsRoundTrip(t *testing.T) {
	dirs := map[string]string{"tempdir": t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "coffer-local-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs["tmpfs"] = d
		}
	}
	const mib = 1 << 20
	sizes := []int{mib - 1, mib, mib + 1, mib + 4095, mib + 4096, 3*mib + 17, 8 * mib}
	rng := rand.New(rand.NewPCG(7, 7))
	backing := make([]byte, 8*mib+2*4096)
	for i := range backing {
		backing[i] = byte(rng.Uint32())
	}
	// start of a 4096-aligned window inside backing
	base := int((4096 - uintptr(unsafe.Pointer(&backing[0]))%4096) % 4096)
	ctx := context.Background()
	for fsName, dir := range dirs {
		s, err := local.Open(filepath.Join(dir, "blobs"))
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range sizes {
			for _, shift := range []int{0, 1, 512} {
				data := backing[base+shift : base+shift+size]
				name := fmt.Sprintf("packs/%d-%d", size, shift)
				if err := s.Put(ctx, name, data); err != nil {
					t.Fatalf("%s: put %s: %v", fsName, name, err)
				}
				got, err := s.Get(ctx, name)
				if err != nil {
					t.Fatalf("%s: get %s: %v", fsName, name, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("%s: %s: read back %d bytes, differ from the %d written", fsName, name, len(got), len(data))
				}
				// Ranged reads below and above the direct-read size, aligned
				// or not, up to the last byte.
				for _, r := range [][2]int{{0, size}, {1, 256 << 10}, {4096, 256<<10 - 1}, {size - 300<<10, 300 << 10}, {size/2 + 3, size - size/2 - 3}, {size - 1, 1}} {
					got, err := s.GetRange(ctx, name, int64(r[0]), int64(r[1]))
					if err != nil {
						t.Fatalf("%s: %s: get range %v: %v", fsName, name, r, err)
					}
					if !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
						t.Fatalf("%s: %s: range %v differs", fsName, name, r)
					}
				}
				// ReadRange into a caller's buffer: aligned and large enough
				// (the result lives in it), unaligned, or too small.
				aligned := directio.Buffer(size + 2*directio.Align)
				for _, buf := range [][]byte{aligned, make([]byte, size+1), make([]byte, 10)} {
					for _, r := range [][2]int{{0, size}, {4097, size - 4097}, {size - 1, 1}} {
						got, err := s.ReadRange(ctx, name, int64(r[0]), int64(r[1]), buf)
						if err != nil || !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
							t.Fatalf("%s: %s: read range %v into a %d-byte buffer: %v", fsName, name, r, len(buf), err)
						}
						at := uintptr(unsafe.Pointer(&got[0])) - uintptr(unsafe.Pointer(&buf[0]))
						if len(buf) == len(aligned) && at >= uintptr(len(buf)) {
							t.Fatalf("%s: %s: read range %v did not use the large aligned buffer", fsName, name, r)
						}
					}
				}
				if _, err := s.GetRange(ctx, name, int64(size-(256<<10)), 256<<10+1); err == nil {
					t.Fatalf("%s: %s: a range past the end did not fail", fsName, name)
				}
			}
		}
	}
}
