package blockdev

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"coffer/internal/capacity"
	"coffer/internal/clock"
	"coffer/internal/store/memstore"
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
	e, err := Open(context.Background(), mnt, env.chunks, env.blobs, Options{BlockSize: 4096, Catalogue: memstore.New()})
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

// waitFor polls cond until it holds (goroutines of the engine reach a
// state), failing the test after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Defect 5: a restored volume whose hydration finds the filesystem full
// stalls visibly (Hydration().Stalled, the no-space error, a change
// notification) instead of failing reads: reads are served from the
// snapshot meanwhile. When space is back it resumes by itself at the next
// retry and ends with the snapshot's exact contents.
func TestHydrationStallsOnFullFilesystemAndResumes(t *testing.T) {
	mnt := testenv.SmallFilesystem(t, "tmpfs", 16<<20)
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	chunks, blobs := newMemChunks(), newMemBlobs()
	e, err := Open(context.Background(), mnt, chunks, blobs, Options{BlockSize: 4096, Clock: clk, HydrationRetry: time.Minute, Catalogue: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	const size = 4 << 20
	src, err := e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(1, 2)), want)
	if _, err := src.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Snapshot(ctx, "src", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := e.DeleteVolume(ctx, "src"); err != nil {
		t.Fatal(err)
	}

	_, hold := holdHydrators(e)
	v, err := e.RestoreVolume(ctx, "s1", "r")
	if err != nil {
		t.Fatal(err)
	}
	changed := v.HydrationChanged()
	filler := testenv.Fill(t, mnt)
	close(hold)
	<-changed
	st := v.Hydration()
	if !st.Hydrating || !st.Stalled || !errors.Is(st.Err, capacity.ErrNoSpace) {
		t.Fatalf("hydration on a full filesystem: %+v, want stalled with capacity.ErrNoSpace", st)
	}
	if !strings.Contains(st.Err.Error(), "disk volume r") {
		t.Errorf("stall error %q does not name the volume", st.Err)
	}
	got := make([]byte, size)
	if _, err := v.ReadAt(got, 0); err != nil {
		t.Fatalf("read of a volume whose hydration is stalled: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read while stalled differs from the snapshot at byte %d", firstDiff(got, want))
	}
	if _, err := v.ReadAt(got[:1000], 4096*7+100); err != nil || !bytes.Equal(got[:1000], want[4096*7+100:4096*7+1100]) {
		t.Fatalf("unaligned read while stalled: %v", err)
	}

	changed = v.HydrationChanged()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hydrator's retry timer", func() bool { return clk.Pending() > 0 })
	clk.Advance(time.Minute)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := v.WaitHydrated(wctx); err != nil {
		t.Fatalf("hydration after space returned: %v", err)
	}
	select {
	case <-changed:
	default:
		t.Error("no change notification when hydration resumed")
	}
	if st := v.Hydration(); st.Hydrating || st.Stalled || st.Err != nil {
		t.Fatalf("after resuming: %+v", st)
	}
	clear(got)
	if _, err := v.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("hydrated volume: %v, equal %v", err, bytes.Equal(got, want))
	}
}
