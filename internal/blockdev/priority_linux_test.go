package blockdev

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

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
	p := make([]byte, 64<<12)
	fillRandom(rand.New(rand.NewPCG(7, 8)), p)
	volumeOf(t, env, "src", p)
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

// TestSnapshotGetsItsShareUnderUserActivity: a snapshot whose user stays
// active and whose lowered jobs starve (each takes 50 ms of the test's
// clock) still moves: the jobs it is owed (minShare) store their blocks
// at the user's priority, the others on lowered threads; its progress is
// reported as it goes, and the snapshot is the volume's contents.
func TestSnapshotGetsItsShareUnderUserActivity(t *testing.T) {
	if lowprio.Nice() == 0 {
		t.Skip("the background work is not lowered")
	}
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10, Workers: 2})
	const nb = 64
	model := make([]byte, nb<<12)
	fillRandom(rand.New(rand.NewPCG(9, 10)), model)
	v := volumeOf(t, env, "src", model)
	var mu sync.Mutex
	seen := map[int]int{} // nice -> blocks stored
	var badProgress []SnapshotProgress
	env.e.hooks.blockStored = func(string, int64) {
		prio, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
		if err != nil {
			t.Error(err)
			return
		}
		nice := 20 - prio
		p := v.SnapshotProgress()
		mu.Lock()
		seen[nice]++
		if !p.Running || p.BlocksTotal != nb || p.BlocksRead < 1 || p.BlocksRead > nb {
			badProgress = append(badProgress, p)
		}
		mu.Unlock()
		// The user is active all along; a lowered job waited long for
		// its core.
		v.fg.touch(env.clk.Now())
		if nice == lowprio.Nice() {
			env.clk.Advance(50 * time.Millisecond)
		} else {
			env.clk.Advance(time.Millisecond)
		}
		v.fg.touch(env.clk.Now())
	}
	// While the snapshot rests, the user stays active and the clock moves.
	stop := keepActive(v, env, time.Millisecond)
	_, err := env.e.Snapshot(ctx, "src", "s")
	stop()
	env.e.hooks.blockStored = nil
	if err != nil {
		t.Fatal(err)
	}
	if p := v.SnapshotProgress(); p.Running {
		t.Errorf("progress after the snapshot: %+v, want none running", p)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("blocks stored by nice value: %v", seen)
	if seen[startNice(t)] == 0 {
		t.Errorf("no block stored at the user's priority (nice %d): %v", startNice(t), seen)
	}
	if seen[lowprio.Nice()] == 0 {
		t.Errorf("no block stored on a lowered thread: %v", seen)
	}
	if len(badProgress) > 0 {
		t.Errorf("progress while storing: %+v, want running, %d blocks in all, read at least 1", badProgress[0], nb)
	}
	checkSnapshot(t, env, "s", model)
}

// startNice is the nice value of the test's own thread: the user's.
func startNice(t *testing.T) int {
	t.Helper()
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	return 20 - prio
}

// TestSnapshotSparesAP: while a snapshot's workers store blocks, the
// process runs one P more than before (lowprio.SpareP), and as many as
// before once the snapshot returns, failed or not.
func TestSnapshotSparesAP(t *testing.T) {
	ctx := context.Background()
	base := runtime.GOMAXPROCS(0)
	env := newTestEnv(t, Options{BlockSize: 4 << 10, Workers: base})
	p := make([]byte, 64<<12)
	fillRandom(rand.New(rand.NewPCG(7, 8)), p)
	v := volumeOf(t, env, "src", p)
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
	for off := int64(0); off < 2*EntriesPerPage<<12; off += int64(len(p)) {
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

// TestSnapshotRestsWhileWritesCopy: while the volume's user is active, a
// snapshot rests between its blocks (yieldRest times the block's time on
// the engine's clock) also when the user's writes copy pieces for it: a
// 4 KiB copy costs a write far less than the snapshot's block costs the
// cores (docs/design.md, "Session perf14ak"). Each job here spends 1 ms
// of its thread's CPU time and of the test's clock, more than the work's
// share (minShare) accrues, so no job is owed; the snapshot still
// finishes, equal to the volume at its start.
func TestSnapshotRestsWhileWritesCopy(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10, Workers: 2})
	const nb = 64
	model := make([]byte, nb<<12)
	fillRandom(rand.New(rand.NewPCG(11, 12)), model)
	v := volumeOf(t, env, "src", model)
	page := make([]byte, 4<<10)
	fillRandom(rand.New(rand.NewPCG(13, 14)), page)
	const job = time.Millisecond
	var mu sync.Mutex
	var starts []time.Time // each job's start on the test's clock
	var copied []bool      // whether the user's write in it copied a block
	env.e.hooks.blockStored = func(string, int64) {
		now := env.clk.Now()
		v.fg.touch(now)
		mu.Lock()
		i := len(starts)
		starts = append(starts, now)
		mu.Unlock()
		// The user writes a block the snapshot has not read yet (the
		// workers take blocks in order): the write copies it first.
		before := v.SnapshotProgress().CBWBlocks
		if b := int64(nb - 1 - i); b > nb/2 {
			if _, err := v.WriteAt(page, b<<12); err != nil {
				t.Error(err)
			}
		}
		cp := v.SnapshotProgress().CBWBlocks > before
		for c0 := lowprio.ThreadCPU(); lowprio.ThreadCPU()-c0 < job; {
		}
		env.clk.Advance(job)
		v.fg.touch(env.clk.Now())
		mu.Lock()
		copied = append(copied, cp)
		mu.Unlock()
	}
	// While the snapshot rests, the user stays active and the clock moves.
	stop := keepActive(v, env, 100*time.Microsecond)
	v.fg.touch(env.clk.Now())
	_, err := env.e.Snapshot(ctx, "src", "s")
	stop()
	env.e.hooks.blockStored = nil
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	copies, rushed := 0, 0
	for i := 1; i < len(starts); i++ {
		if !copied[i-1] {
			continue
		}
		copies++
		if gap := starts[i].Sub(starts[i-1]); gap < (1+yieldRest)*job {
			rushed++
			if rushed == 1 {
				t.Errorf("block %d started %v after the one before, whose write copied a block; want at least %v (the job and its rest)", i, gap, (1+yieldRest)*job)
			}
		}
	}
	t.Logf("%d jobs, %d after a copy, %d of them without their rest", len(starts), copies, rushed)
	if copies == 0 {
		t.Error("no write copied a block for the snapshot")
	}
	checkSnapshot(t, env, "s", model)
}

// keepActive keeps v's user active and moves env's fake clock by step
// whenever a timer waits on it (a snapshot's rest), until the returned
// stop is called; stop returns once the loop has ended.
func keepActive(v *Volume, env *testEnv, step time.Duration) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			default:
			}
			v.fg.touch(env.clk.Now())
			if env.clk.Pending() > 0 {
				env.clk.Advance(step)
			} else {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}
