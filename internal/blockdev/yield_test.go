package blockdev

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"coffer/internal/clock"
)

// TestForeground checks the tracker of a volume's user: nothing seen is
// not recent; a touch is recent until foregroundWindow has passed.
func TestForeground(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	var f foreground
	if f.recent(t0) {
		t.Fatal("recent before any touch")
	}
	f.touch(t0)
	if !f.recent(t0) || !f.recent(t0.Add(foregroundWindow-time.Nanosecond)) {
		t.Fatal("not recent within the window")
	}
	if f.recent(t0.Add(foregroundWindow)) {
		t.Fatal("still recent after the window")
	}
}

// TestYieldGate: while the user is not active every job starts at once;
// while it is, one job runs at a time (a second waits for the first to
// end, or for its context), and the next starts only after a rest of
// yieldRest times the last job's duration, or once the user went away.
func TestYieldGate(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	var fg foreground
	g := newYieldGate(clk, &fg)

	d1, err := enterFull(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := enterFull(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	d1()
	d2()

	fg.touch(clk.Now())
	first, err := enterFull(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan func(), 1)
	enter := func() {
		go func() {
			d, err := enterFull(ctx, g)
			if err != nil {
				t.Error(err)
			}
			started <- d
		}()
	}
	waiting := func(what string) {
		t.Helper()
		select {
		case <-started:
			t.Fatalf("a job started %s", what)
		case <-time.After(50 * time.Millisecond): // it waits (a broken gate lets it through at once)
		}
	}
	enter()
	waiting("while the user was active and another job ran")
	first()
	second := <-started // and starts when the first ends: it took no time, so no rest
	if second == nil {
		t.Fatal("second job got no done function")
	}

	// While it runs, a waiting job gives up with its context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := enterFull(cctx, g); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v, want context.Canceled", err)
	}

	// The second job takes 10 ms: the next waits 20 ms more.
	clk.Advance(10 * time.Millisecond)
	fg.touch(clk.Now())
	second()
	enter()
	for clk.Pending() == 0 {
		time.Sleep(time.Millisecond) // until it rests on the clock's timer
	}
	clk.Advance(19 * time.Millisecond)
	fg.touch(clk.Now())
	waiting("before its rest ended")
	clk.Advance(time.Millisecond)
	third := <-started
	third()

	// A rest ends early once the user has gone away: the last job took
	// foregroundWindow, the rest would be twice that.
	fg.touch(clk.Now())
	fourth, err := enterFull(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(foregroundWindow)
	fg.touch(clk.Now())
	fourth()
	enter()
	for clk.Pending() == 0 {
		time.Sleep(time.Millisecond)
	}
	clk.Advance(foregroundWindow) // no touch since: the user is gone
	(<-started)()

	// Urgent work does not rest.
	urgent := true
	g.urgent = func() bool { return urgent }
	fg.touch(clk.Now())
	fifth, err := enterFull(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * time.Millisecond)
	fg.touch(clk.Now())
	fifth()
	sixth, err := enterFull(ctx, g) // at once, though the rest would be 20 ms
	if err != nil {
		t.Fatal(err)
	}
	sixth()
	g.urgent = nil

	// The user is gone: jobs start at once even while another runs.
	clk.Advance(foregroundWindow)
	d3, err := enterFull(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	d4, err := enterFull(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	d3()
	d4()
}

// TestPrefetchGivesWay checks that a snapshot reads ahead only runs of
// blocks it takes, each once, starting foregroundWindow after it began and
// not at all while the volume's user is active; the snapshot is the same
// either way.
func TestPrefetchGivesWay(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10, Workers: 2})
	const size = 4 << 20 // 4 index pages
	v, err := env.e.CreateVolume(ctx, "v", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	applyWrites(t, v, genWrites(41, 300, size, 16<<10), model)

	var ranges [][2]int64
	env.e.hooks.prefetch = func(vol string, lo, hi int64) { ranges = append(ranges, [2]int64{lo, hi}) }
	var advance atomic.Bool // each stored block moves the clock past the start
	env.e.hooks.blockStored = func(string, int64) {
		if advance.Load() {
			env.clk.Advance(foregroundWindow)
		}
	}

	// The writes above are recent on the test's clock, which stands
	// still: no read-ahead.
	if _, err := env.e.Snapshot(ctx, "v", "s1"); err != nil {
		t.Fatal(err)
	}
	if len(ranges) != 0 {
		t.Fatalf("read ahead %v while the user was active", ranges)
	}

	// Idle: runs of dirty blocks are read ahead once the snapshot has run
	// for the window. Pages 0 and 1 are dispatched before any block is
	// stored (page 1's read-ahead is asked for as page 0 starts); by the
	// time page 2 starts, all but the job queue's blocks of pages 0-1 are
	// stored, so page 3's read-ahead must have been asked for.
	applyWrites(t, v, genWrites(42, 60, size, 16<<10), model)
	want := dirtyRuns(v)
	env.clk.Advance(foregroundWindow)
	advance.Store(true)
	if _, err := env.e.Snapshot(ctx, "v", "s2"); err != nil {
		t.Fatal(err)
	}
	seen := map[[2]int64]bool{}
	for _, r := range ranges {
		if !slices.Contains(want, r) || seen[r] {
			t.Fatalf("read ahead %v: not a dirty run, or twice (dirty runs %v)", r, want)
		}
		if r[0] < 2*EntriesPerPage {
			t.Fatalf("read ahead %v within the first window (pages 0-1)", r)
		}
		seen[r] = true
	}
	for _, r := range want {
		if r[0] >= 3*EntriesPerPage && !seen[r] {
			t.Fatalf("page 3's dirty run %v was not read ahead (read ahead: %v)", r, ranges)
		}
	}
	checkSnapshot(t, env, "s2", model)
}

// dirtyRuns returns v's dirty blocks as runs [lo, hi) that do not cross an
// index page.
func dirtyRuns(v *Volume) [][2]int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	var runs [][2]int64
	nb := (v.size + v.bs - 1) / v.bs
	for b := int64(0); b < nb; {
		if !v.dirty.has(b) {
			b++
			continue
		}
		end := b + 1
		for end < nb && v.dirty.has(end) && end%EntriesPerPage != 0 {
			end++
		}
		runs = append(runs, [2]int64{b, end})
		b = end
	}
	return runs
}

// TestHydrationUnderForegroundReads restores a volume while a reader reads
// random blocks of it without pause, checking each against the snapshot:
// the test env's clock does not move, so after the first read the hydrator
// yields for good and runs one job at a time. Hydration must still end,
// and the volume must equal the snapshot.
func TestHydrationUnderForegroundReads(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10})
	const size = 16 << 20 // 16 index pages of 4 KiB blocks: 16 hydration jobs
	src, err := env.e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	applyWrites(t, src, genWrites(31, 600, size, 16<<10), model)
	if _, err := env.e.Snapshot(ctx, "src", "s"); err != nil {
		t.Fatal(err)
	}
	snap := slices.Clone(model)

	// The hydrator starts its jobs once the reader has read once.
	firstRead := make(chan struct{})
	env.e.hooks.hydrator = func(ctx context.Context, vol string) {
		select {
		case <-firstRead:
		case <-ctx.Done():
		}
	}
	v, err := env.e.RestoreVolume(ctx, "s", "dst")
	if err != nil {
		t.Fatal(err)
	}
	stop, readErr := make(chan struct{}), make(chan error, 1)
	reads := 0
	go func() {
		rng := rand.New(rand.NewPCG(3, 4))
		buf := make([]byte, 4<<10)
		for {
			select {
			case <-stop:
				readErr <- nil
				return
			default:
			}
			off := rng.Int64N(size/int64(len(buf))) * int64(len(buf))
			if _, err := v.ReadAt(buf, off); err != nil {
				readErr <- err
				return
			}
			if !bytes.Equal(buf, snap[off:off+int64(len(buf))]) {
				readErr <- errors.New("a read during hydration differs from the snapshot")
				return
			}
			if reads++; reads == 1 {
				close(firstRead)
			}
		}
	}()
	werr := v.WaitHydrated(ctx)
	close(stop)
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatal(werr)
	}
	if got := image(t, v); !bytes.Equal(got, snap) {
		t.Fatalf("hydrated volume differs from the snapshot at %d", firstDiff(got, snap))
	}
}

// TestSnapshotYieldsToUser: while the volume's user is active, a
// snapshot's workers store one block at a time (they all hashed and
// compressed at once, leaving the user's requests no core); idle, they
// work in parallel.
func TestSnapshotYieldsToUser(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10, Workers: 4})
	const size = 8 << 12 // 8 blocks
	v, err := env.e.CreateVolume(ctx, "v", size)
	if err != nil {
		t.Fatal(err)
	}
	// maxAtOnce runs a snapshot and returns the most workers seen storing
	// a block at the same time. Each waits (a bounded wait, not a
	// measurement) for another to join it.
	maxAtOnce := func(name string, idle bool) int64 {
		t.Helper()
		p := make([]byte, size)
		fillRandom(rand.New(rand.NewPCG(uint64(len(name)), 1)), p)
		p[0] = 1
		if _, err := v.WriteAt(p, 0); err != nil {
			t.Fatal(err)
		}
		if idle { // the test's clock stands still otherwise
			env.clk.Advance(foregroundWindow)
		}
		var in, most atomic.Int64
		joined := make(chan struct{}, 64)
		env.e.hooks.blockStored = func(string, int64) {
			n := in.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			if n > 1 {
				joined <- struct{}{}
			} else {
				select {
				case <-joined:
				case <-time.After(100 * time.Millisecond):
				}
			}
			in.Add(-1)
		}
		defer func() { env.e.hooks.blockStored = nil }()
		if _, err := env.e.Snapshot(ctx, "v", name); err != nil {
			t.Fatal(err)
		}
		return most.Load()
	}
	if n := maxAtOnce("active", false); n != 1 {
		t.Errorf("%d workers stored blocks at once while the user was active, want 1", n)
	}
	if n := maxAtOnce("idle", true); n < 2 {
		t.Errorf("%d worker(s) stored blocks at once while the user was idle, want several", n)
	}
}

// TestYieldGateUrgentWhenCounted: a gate told of a count of what the
// user's requests pay for the work being behind (urgentWhenCounted) skips
// its rest after the count grew since its last rest, and rests as ever
// otherwise.
func TestYieldGateUrgentWhenCounted(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	var fg foreground
	var fetched atomic.Int64
	g := newYieldGate(clk, &fg)
	g.urgentWhenCounted(&fetched)
	// job runs one job of 10 ms while the user is active and reports
	// whether the next one then started without resting.
	job := func(grow bool) (rested bool) {
		t.Helper()
		fg.touch(clk.Now())
		d, err := enterFull(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(10 * time.Millisecond)
		fg.touch(clk.Now())
		if grow {
			fetched.Add(1)
		}
		d()
		started := make(chan func(), 1)
		go func() {
			d, err := enterFull(ctx, g)
			if err != nil {
				t.Error(err)
			}
			started <- d
		}()
		select {
		case d := <-started:
			d()
			return false
		case <-time.After(50 * time.Millisecond):
		}
		for clk.Pending() == 0 {
			time.Sleep(time.Millisecond)
		}
		clk.Advance(2 * 10 * time.Millisecond) // the rest: twice the job
		(<-started)()
		return true
	}
	if !job(false) {
		t.Errorf("the first job (nothing counted) was not followed by a rest")
	}
	if job(true) {
		t.Errorf("a job during which the count grew was followed by a rest")
	}
	if !job(false) {
		t.Errorf("a job during which the count stayed was not followed by a rest")
	}
}

// enterFull enters g and returns the function that ends the job as one
// that had its core all along: it spent its wall time of the work's share.
func enterFull(ctx context.Context, g *yieldGate) (func(), error) {
	j, err := g.enter(ctx)
	if err != nil {
		return nil, err
	}
	return func() { j.end(g.clk.Now().Sub(j.start)) }, nil
}

// TestYieldGateMinimumShare: under constant user activity, with every
// lowered job starved (it waits 50 ms of wall time for 0.1 ms of its
// thread's CPU, as a nice-19 thread does beside a user who keeps the
// cores busy), the work still gets its minimum share of a core: the jobs
// it is owed run at the user's priority and, with the lowered jobs' CPU,
// add up to minShare of the wall time.
func TestYieldGateMinimumShare(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC))
	var fg foreground
	g := newYieldGate(clk, &fg)
	var cpu time.Duration // the lowered thread's CPU clock
	g.threadCPU = func() time.Duration { return cpu }
	atNormal := false
	g.atNormal = func(fn func() error) error {
		atNormal = true
		defer func() { atNormal = false }()
		return fn()
	}
	var owedJobs, loweredJobs int
	var share time.Duration // the work's CPU: owed jobs' wall time, lowered jobs' CPU
	job := func() error {
		fg.touch(clk.Now())
		if atNormal {
			owedJobs++
			clk.Advance(time.Millisecond)
			share += time.Millisecond
		} else {
			loweredJobs++
			clk.Advance(50 * time.Millisecond)
			cpu += 100 * time.Microsecond
			share += 100 * time.Microsecond
		}
		fg.touch(clk.Now())
		return nil
	}
	const span = 20 * time.Second
	start := clk.Now()
	fg.touch(start)
	done := make(chan error, 1)
	go func() {
		for clk.Now().Sub(start) < span {
			if err := g.do(ctx, job); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	// The user stays active while the work rests: the clock moves on a
	// millisecond at a time whenever the work waits on a timer.
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished = true
		default:
			if clk.Pending() == 0 {
				time.Sleep(50 * time.Microsecond) // the work is in a job
				continue
			}
			fg.touch(clk.Now())
			clk.Advance(time.Millisecond)
		}
	}
	elapsed := clk.Now().Sub(start)
	got := float64(share) / float64(elapsed)
	t.Logf("%v: %d jobs owed, %d lowered; share %.3f of a core", elapsed, owedJobs, loweredJobs, got)
	if got < 0.9*minShare {
		t.Errorf("the work got %.3f of a core under constant user activity, want at least %.2f", got, minShare)
	}
	if loweredJobs == 0 {
		t.Error("no job ran lowered: the gate ran everything at the user's priority")
	}
}
