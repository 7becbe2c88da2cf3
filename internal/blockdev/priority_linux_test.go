package blockdev

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"coffer/internal/lowprio"
)

// TestBackgroundWorkRunsLowered: a snapshot's workers and a hydration's
// store and write blocks on threads at lowprio.Nice() (the kernel's own
// account of the thread, getpriority), so that the user's connections get
// a core first.
func TestBackgroundWorkRunsLowered(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10, Workers: 2})
	const size = 64 << 12
	v, err := env.e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(7, 8)), p)
	if _, err := v.WriteAt(p, 0); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]map[int]int{} // work -> nice -> calls
	record := func(work string) {
		// getpriority's system call answers 20 - nice.
		prio, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[work] == nil {
			seen[work] = map[int]int{}
		}
		seen[work][20-prio]++
	}
	env.e.hooks.blockStored = func(string, int64) { record("snapshot") }
	if _, err := env.e.Snapshot(ctx, "src", "s"); err != nil {
		t.Fatal(err)
	}
	env.e.hooks.blockStored = nil
	env.e.hooks.hydrator = func(context.Context, string) { record("hydration") }
	dst, err := env.e.RestoreVolume(ctx, "s", "dst")
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, work := range []string{"snapshot", "hydration"} {
		if len(seen[work]) == 0 {
			t.Errorf("%s: no block seen", work)
		}
		for nice, n := range seen[work] {
			if nice != lowprio.Nice() {
				t.Errorf("%s: %d blocks on a thread at nice %d, want %d", work, n, nice, lowprio.Nice())
			}
		}
	}
}

// TestSnapshotSparesAP: while a snapshot's workers store blocks, the
// process runs one P more than before (lowprio.SpareP), and as many as
// before once the snapshot returns, failed or not.
func TestSnapshotSparesAP(t *testing.T) {
	ctx := context.Background()
	base := runtime.GOMAXPROCS(0)
	env := newTestEnv(t, Options{BlockSize: 4 << 10, Workers: base})
	const size = 64 << 12
	v, err := env.e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(7, 8)), p)
	if _, err := v.WriteAt(p, 0); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	procs := map[int]int{} // GOMAXPROCS -> blocks stored under it
	env.e.hooks.blockStored = func(string, int64) {
		mu.Lock()
		procs[runtime.GOMAXPROCS(0)]++
		mu.Unlock()
	}
	if _, err := env.e.Snapshot(ctx, "src", "s1"); err != nil {
		t.Fatal(err)
	}
	if len(procs) != 1 || procs[base+1] != 64 {
		t.Errorf("blocks stored by GOMAXPROCS %v, want all 64 at %d", procs, base+1)
	}
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Errorf("GOMAXPROCS %d after the snapshot, want %d", got, base)
	}
	// A snapshot that fails gives the P back too: its context is
	// cancelled after its first block, and the feed stops before the
	// next page (2 pages of blocks dirty).
	if err := v.Resize(ctx, 2*EntriesPerPage<<12); err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < 2*EntriesPerPage<<12; off += size {
		if _, err := v.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	env.e.hooks.blockStored = func(string, int64) { cancel() }
	if _, err := env.e.Snapshot(cctx, "src", "s2"); err == nil {
		t.Fatal("snapshot with its context cancelled succeeded")
	}
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Errorf("GOMAXPROCS %d after a failed snapshot, want %d", got, base)
	}
}
