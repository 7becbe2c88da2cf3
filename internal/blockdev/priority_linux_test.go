package blockdev

import (
	"context"
	"math/rand/v2"
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
