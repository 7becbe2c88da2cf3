package blockdev

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"coffer/internal/testenv"
)

// volumeLeftovers lists what a failed create may have left: entries of the
// volumes directory and volume records.
func volumeLeftovers(t *testing.T, env *testEnv) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(env.dir, "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, "volumes/"+e.Name())
	}
	env.blobs.mu.Lock()
	for name := range env.blobs.m {
		out = append(out, "blob "+name)
	}
	env.blobs.mu.Unlock()
	return out
}

// Defect 3: a failure to size or sync the data file of a new volume was
// dropped (a shadowed err), so the volume was created with a 0-byte file.
// Now CreateVolume returns it and leaves nothing behind.
func TestCreateVolumeReturnsDataFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(h *testHooks, err error)
	}{
		{"truncate", func(h *testHooks, err error) { h.truncate = func(int64) error { return err } }},
		{"sync", func(h *testHooks, err error) { h.sync = func() error { return err } }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, Options{BlockSize: 4096})
			tc.set(&env.e.hooks, syscall.EIO)
			v, err := env.e.CreateVolume(context.Background(), "vol", 1<<20)
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("CreateVolume with a failing %s: got a volume (%v), error %v; want EIO", tc.name, v != nil, err)
			}
			if left := volumeLeftovers(t, env); len(left) != 0 {
				t.Errorf("a failed create left %v", left)
			}
			env.e.hooks = testHooks{}
			if _, err := env.e.CreateVolume(context.Background(), "vol", 1<<20); err != nil {
				t.Fatalf("create after the failure: %v", err)
			}
		})
	}
}

// A resize whose sync fails leaves the volume at its old size.
func TestResizeSyncFailureKeepsSize(t *testing.T) {
	env := newTestEnv(t, Options{BlockSize: 4096})
	ctx := context.Background()
	v, err := env.e.CreateVolume(ctx, "vol", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	env.e.hooks.sync = func() error { return syscall.EIO }
	if err := v.Resize(ctx, 2<<20); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Resize with a failing sync: %v, want EIO", err)
	}
	fi, err := v.f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if v.Size() != 1<<20 || fi.Size() != 1<<20 {
		t.Fatalf("after a failed resize: size %d, file %d bytes; want %d", v.Size(), fi.Size(), 1<<20)
	}
}

// On a real filesystem with a file-size limit (a small ext4, whose 1 KiB
// blocks cap a file at about 4 TiB; 16 TiB with 4 KiB blocks), a volume
// larger than the limit is refused at create, leaving nothing, and a
// resize across it is refused, leaving the volume as it was: same size,
// same data, still writable.
func TestVolumeLargerThanFilesystemLimit(t *testing.T) {
	mnt := testenv.SmallFilesystem(t, "ext4", 32<<20)
	env := &testEnv{chunks: newMemChunks(), blobs: newMemBlobs(), dir: mnt}
	e, err := Open(context.Background(), mnt, env.chunks, env.blobs, Options{BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	env.e = e
	ctx := context.Background()

	const huge = maxVolumeSize // 1 PiB: no ext4 holds it
	err = e.CheckSize(huge)
	var sl *SizeLimitError
	if !errors.As(err, &sl) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("CheckSize(1 PiB) on ext4: %v, want a *SizeLimitError", err)
	}
	if sl.Size != huge || sl.Limit < 1<<40 || sl.Limit >= huge || sl.Limit%512 != 0 {
		t.Fatalf("limit %+v: want a multiple of 512 between 1 TiB and 1 PiB", sl)
	}
	limit := sl.Limit
	if err := e.CheckSize(limit); err != nil {
		t.Fatalf("CheckSize(limit %d): %v", limit, err)
	}
	if err := e.CheckSize(limit + 512); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("CheckSize(limit+512): %v, want ErrTooLarge", err)
	}

	if _, err := e.CreateVolume(ctx, "big", limit+512); !errors.As(err, &sl) || sl.Limit != limit {
		t.Fatalf("CreateVolume over the limit: %v, want a *SizeLimitError with limit %d", err, limit)
	}
	if left := volumeLeftovers(t, env); len(left) != 0 {
		t.Errorf("a refused create left %v", left)
	}

	v, err := e.CreateVolume(ctx, "small", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0xAB}, 8192)
	if _, err := v.WriteAt(data, 4096); err != nil {
		t.Fatal(err)
	}
	if err := v.Resize(ctx, limit+512); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Resize across the limit: %v, want ErrTooLarge", err)
	}
	if v.Size() != 1<<20 {
		t.Fatalf("size after a refused resize: %d, want %d", v.Size(), 1<<20)
	}
	got := make([]byte, len(data))
	if _, err := v.ReadAt(got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("data after a refused resize: %v (equal %v)", err, bytes.Equal(got, data))
	}
	if _, err := v.WriteAt(data, 1<<20-8192); err != nil {
		t.Fatalf("write after a refused resize: %v", err)
	}
	if err := v.Resize(ctx, limit); err != nil {
		t.Fatalf("Resize to the limit: %v", err)
	}
	if _, err := v.WriteAt(data, limit-8192); err != nil {
		t.Fatalf("write at the end of a volume of the filesystem's largest size: %v", err)
	}
}
