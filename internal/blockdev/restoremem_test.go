package blockdev

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"
)

// TestRestoreMemoryFollowsData restores two disks holding the same 4 MiB
// of data, one of 64 MiB and one of 16 GiB (256 times larger, sparse),
// into files, and compares the heap bytes each RestoreToFile allocates: a
// restore's memory must follow the data, not the disk's size, so that a
// terabyte sparse disk restores in bounded memory. The bound is a ratio to
// the small disk, never a time.
func TestRestoreMemoryFollowsData(t *testing.T) {
	if testing.Short() {
		t.Skip("writes two sparse disks")
	}
	const (
		bs     = 64 << 10
		blocks = 64 // of data: 4 MiB
	)
	alloc := func(size int64) uint64 {
		ctx := context.Background()
		env := newTestEnv(t, Options{BlockSize: bs})
		v, err := env.e.CreateVolume(ctx, "vol", size)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		rng := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, bs)
		stride := size / blocks // the data spreads over the whole disk
		for i := range int64(blocks) {
			for j := range buf {
				buf[j] = byte(rng.Uint32())
			}
			if _, err := v.WriteAt(buf, i*stride); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := env.e.Snapshot(ctx, "vol", "s"); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "restored.img")
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		if err := env.e.RestoreToFile(ctx, "s", path); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&m1)
		return m1.TotalAlloc - m0.TotalAlloc
	}
	small := alloc(64 << 20)
	large := alloc(16 << 30)
	t.Logf("heap allocated by the restore: %d KiB for a 64 MiB disk, %d KiB for a 16 GiB disk (%.2fx)", small>>10, large>>10, float64(large)/float64(small))
	if large > 2*small {
		t.Errorf("restoring the same 4 MiB of data allocates %d KiB on a 16 GiB disk, %d KiB on a 64 MiB one: more than twice", large>>10, small>>10)
	}
}
