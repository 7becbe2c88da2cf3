package bench

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"coffer/internal/blockdev"
	"coffer/internal/clock"
)

// The load part of RunNBD: a random workload on one connection while a
// full snapshot runs and while an instant restore of it hydrates.
//
// Its measure is a fixed window: the first N seconds (N = the fio
// runtime) of the workload from its first request, the background work
// started at that instant (the snapshot; the instant restore, whose
// hydration starts with it), against the same N seconds of the same fio job
// (the same seed: the same requests) on the same disk without the work:
// for a snapshot, on the loaded disk just before; for a hydration, on the
// restored disk once hydrated. Each window has its IOPS, p99 and the
// serving process's CPU per request, and the busy one says how far the
// work got by its end. A window of the same length for every build ranks
// builds by what the user gets; the measure before it, busy over the
// work's own duration, did not: a hydration that got faster shrank its
// window to its miss-heavy start (docs/design.md, "Session perf14o"). The
// old measure is still reported, labelled, for one session: busy over
// the work's duration, against 3 s idle (of the reference run for a
// snapshot, after the hydration ended in the same run for a hydration).

// idleWindow is the idle part of the old measure; settleWindow is skipped
// before it (the client's start, the end of hydration). windowMargin is
// how much longer than its window a reference run lasts: the window is
// cut from its latency log from the first request, a little after fio's
// own clock starts.
//
// primeRuns is how many windows long the unmeasured run before the
// loaded disk's first write reference is (loadRun).
const (
	primeRuns    = 3
	idleWindow   = 3 * time.Second
	settleWindow = 500 * time.Millisecond
	windowMargin = 500 * time.Millisecond
)

// loadWorkloads are the workloads measured during a snapshot and during
// hydration.
var loadWorkloads = []string{"randwrite-4k-qd32", "randread-4k-qd32"}

// underLoad measures each of loadWorkloads on one connection, Repeat
// times, while a full snapshot runs and while an instant restore of that
// snapshot hydrates, each run on a fresh Coffer stack; and, once, the
// snapshot and the hydration alone.
func (r *nbdRunner) underLoad(ctx context.Context) error {
	if err := r.alone(ctx); err != nil {
		return err
	}
	for _, name := range loadWorkloads {
		w, _ := workload(name)
		snap := NBDLoad{Workload: w.Name, During: "snapshot"}
		hyd := NBDLoad{Workload: w.Name, During: "hydration"}
		for range r.opts.Repeat {
			s, h, err := r.loadRun(ctx, w)
			if err != nil {
				return err
			}
			snap.Runs = append(snap.Runs, s)
			hyd.Runs = append(hyd.Runs, h)
		}
		for _, l := range []*NBDLoad{&snap, &hyd} {
			var old, fixed []float64
			for _, x := range l.Runs {
				old = append(old, x.Ratio)
				fixed = append(fixed, x.Window.Ratio)
			}
			l.MedianRatio, l.MedianWindowRatio = median(old), median(fixed)
			r.res.UnderLoad = append(r.res.UnderLoad, *l)
		}
	}
	return nil
}

// loadStack is a fresh Coffer stack with the image loaded into its volume
// "disk" through the NBD server, as a user would.
func (r *nbdRunner) loadStack(ctx context.Context, label string) (*runner, error) {
	r.runN++
	st := &runner{opts: Options{Workers: r.opts.Workers}, clk: r.clk, dir: filepath.Join(r.dir, fmt.Sprintf("%s-%03d", label, r.runN)), probe: &probe{clk: r.clk}}
	if err := os.Mkdir(st.dir, 0o700); err != nil {
		return nil, err
	}
	var err error
	if st.stack, err = st.openStack(ctx, filepath.Join(st.dir, "coffer")); err != nil {
		return st, err
	}
	vol, err := st.eng.CreateVolume(ctx, "disk", r.opts.Size)
	if err != nil {
		return st, err
	}
	st.vol = vol
	name := filepath.Base(st.dir)
	r.export(name, vol)
	defer r.unexport(name)
	if _, _, err := r.timedCopy(ctx, r.image, r.cofferURI(name)); err != nil {
		return st, err
	}
	if err := vol.Flush(ctx); err != nil {
		return st, err
	}
	unix.Sync()
	return st, nil
}

// dropStack closes a stack made by loadStack and removes its files.
func (r *nbdRunner) dropStack(st *runner) error {
	err := st.closeStack()
	if rerr := os.RemoveAll(st.dir); err == nil {
		err = rerr
	}
	return err
}

func (r *nbdRunner) unexport(name string) {
	r.mu.Lock()
	delete(r.exports, name)
	r.mu.Unlock()
}

// alone times a full snapshot and the hydration of its instant restore
// with no client, the references for the runs under load.
func (r *nbdRunner) alone(ctx context.Context) error {
	st, err := r.loadStack(ctx, "alone")
	if err != nil {
		if st != nil {
			_ = r.dropStack(st)
		}
		return err
	}
	defer r.dropStack(st)
	if err := r.settleRun(ctx, st.dir); err != nil {
		return err
	}
	t0 := r.clk.Now()
	si, err := st.eng.Snapshot(ctx, "disk", "s1")
	if err != nil {
		return err
	}
	r.res.SnapshotAloneSeconds = r.since(t0)
	if err := r.settleRun(ctx, st.dir); err != nil {
		return err
	}
	if err := evictCached(st.repoFiles()...); err != nil { // as loadRun's hydration: from a cold repository
		return err
	}
	t0 = r.clk.Now()
	rv, err := st.eng.RestoreVolume(ctx, "s1", "restored")
	if err != nil {
		return err
	}
	if err := rv.WaitHydrated(ctx); err != nil {
		return err
	}
	r.res.HydrationAloneSeconds = r.since(t0)
	if err := rv.Close(); err != nil {
		return err
	}
	r.logf("alone: full snapshot %.2fs (%d blocks stored), hydration %.2fs", r.res.SnapshotAloneSeconds, si.Stats.BlocksStored, r.res.HydrationAloneSeconds)
	return nil
}

// loadRun runs w on a fresh stack: the reference (N seconds), again
// with a full snapshot started at its first request until the snapshot
// ends, and the reference again; then the reference on an instant restore
// of that snapshot hydrated beforehand (then deleted), w on an instant
// restore made at its first request until it is hydrated and 3.5 s more,
// and the reference again on that restore. Before each run every file of
// the stack is synced and its data cached and GOMAXPROCS is back at rest
// (settleRun); the busy hydration run (and the hydration alone) then
// starts with the repository's files evicted from the page cache, as a
// restore of an older backup finds them. For writes, an unmeasured run
// of the job (a prime) comes before each first reference: on the loaded
// disk, primeRuns windows long, so that no measured run writes a block
// for the first time; on the restore hydrated beforehand, made at the
// prime's first request and written until it is hydrated and N more, as
// the busy run's restore is.
// The busy run and both its references then find the same page-cache and
// file-system state.
func (r *nbdRunner) loadRun(ctx context.Context, w NBDWorkload) (snap, hyd NBDLoadRun, err error) {
	st, err := r.loadStack(ctx, "load")
	if err != nil {
		if st != nil {
			_ = r.dropStack(st)
		}
		return snap, hyd, err
	}
	defer func() {
		if derr := r.dropStack(st); err == nil {
			err = derr
		}
	}()
	n := r.opts.Runtime
	oldIdle := [2]time.Duration{settleWindow, settleWindow + idleWindow}
	settle := func() error { return r.settleRun(ctx, st.dir) }
	writes := w.RW != "randread"
	// prime runs j, unmeasured, after settle, and returns its requests.
	prime := func(j loadJob) (int, error) {
		if err := settle(); err != nil {
			return 0, err
		}
		p, err := r.runLoad(ctx, j)
		return len(p.samples), err
	}
	// reference runs w for n on v after settle; primed is the requests
	// of the prime before it, if any, for the log.
	reference := func(v *blockdev.Volume, primed int, marks ...time.Duration) (loadFio, error) {
		if err := settle(); err != nil {
			return loadFio{}, err
		}
		d := n
		for _, m := range marks {
			d = max(d, m)
		}
		ref, err := r.runLoad(ctx, loadJob{w: w, v: v, runtime: d + windowMargin, marks: append([]time.Duration{0, n}, marks...)})
		if err == nil && primed > 0 {
			r.logf("%s: the prime wrote %d requests before a reference of %d (%.0f%% of them rewrites)", w.Name, primed, len(ref.samples), 100*min(1, float64(primed)/float64(max(1, len(ref.samples)))))
		}
		return ref, err
	}

	// The loaded disk's prime runs primeRuns windows long, so that the
	// reference's requests, the same seeded sequence, fall within the
	// prime's even when the prime, whose writes are the first to their
	// blocks, is slower.
	var primed int
	if writes {
		if primed, err = prime(loadJob{w: w, v: st.vol, runtime: primeRuns*n + windowMargin}); err != nil {
			return snap, hyd, err
		}
	}
	before, err := reference(st.vol, primed, oldIdle[:]...)
	if err != nil {
		return snap, hyd, err
	}
	if err := settle(); err != nil {
		return snap, hyd, err
	}
	busy, err := r.runLoad(ctx, loadJob{w: w, v: st.vol, marks: []time.Duration{0, n},
		work: func(ctx context.Context) (string, error) {
			si, err := st.eng.Snapshot(ctx, "disk", "s1")
			return fmt.Sprintf("%d blocks read, %d copied before write (%s)", si.Stats.BlocksRead, si.Stats.CBWBlocks, sizeStr(si.Stats.CBWBytes)), err
		},
		progress: func() loadProgress {
			p := st.vol.SnapshotProgress()
			return loadProgress{Done: p.BlocksRead, Total: p.BlocksTotal, CBW: p.CBWBlocks, CBWBytes: p.CBWBytes,
				CBWSideBytes: p.CBWSideBytes, CBWSpilledBytes: p.CBWSpilledBytes}
		}})
	if err != nil {
		return snap, hyd, err
	}
	after, err := reference(st.vol, 0)
	if err != nil {
		return snap, hyd, err
	}
	snap = NBDLoadRun{Window: fixedWindow(busy, []loadFio{before, after}, n),
		Busy:   busy.window(busy.workStart, busy.workEnd, busy.workCPU),
		Idle:   before.window(before.first.Add(oldIdle[0]), before.first.Add(oldIdle[1]), [2]float64{before.cpu[oldIdle[0]], before.cpu[oldIdle[1]]}),
		Detail: fmt.Sprintf("snapshot %.2fs, %s", busy.workEnd.Sub(busy.workStart).Seconds(), busy.detail)}
	snap.Ratio = ratio(snap.Busy.IOPS, snap.Idle.IOPS)
	snapProcs := [3][2]int{before.procs, busy.procs, after.procs}

	// The reference before the hydration: a restore of the same snapshot,
	// hydrated, then deleted. For writes it is made at the first request
	// of a prime that writes until it is hydrated and n more, so that its
	// file takes the user's writes while it hydrates, as the busy run's
	// does: a restore hydrated alone and then written cost 48.5-53.5
	// CPU-µs per 4 KiB write against 14.4-20.8 on the busy run's restore
	// (docs/design.md, "Session perf14at").
	var pre *blockdev.Volume
	openPre := func() (*blockdev.Volume, error) {
		var err error
		pre, err = st.eng.RestoreVolume(ctx, "s1", "restored-ref")
		return pre, err
	}
	primed = 0
	if writes {
		primed, err = prime(loadJob{w: w, open: openPre, size: st.vol.Size(), after: []time.Duration{n},
			work: func(ctx context.Context) (string, error) { return "", pre.WaitHydrated(ctx) }})
	} else if _, err = openPre(); err == nil {
		err = pre.WaitHydrated(ctx)
	}
	if err == nil {
		before, err = reference(pre, primed)
	}
	if pre != nil {
		if derr := st.eng.DeleteVolume(ctx, "restored-ref"); err == nil {
			err = derr
		}
	}
	if err != nil {
		return snap, hyd, err
	}

	// The instant restore is made at the user's first request.
	var rv *blockdev.Volume
	defer func() {
		if rv != nil {
			rv.Close()
		}
	}()
	restore := func() (*blockdev.Volume, error) {
		var err error
		rv, err = st.eng.RestoreVolume(ctx, "s1", "restored")
		return rv, err
	}
	// The restore's source starts cold: an instant restore is mostly of
	// an older backup, whose packs and index the page cache no longer
	// holds (the full restore's headline figure is from disk too).
	if err := settle(); err != nil {
		return snap, hyd, err
	}
	if err := evictCached(st.repoFiles()...); err != nil {
		return snap, hyd, err
	}
	busy, err = r.runLoad(ctx, loadJob{w: w, open: restore, size: st.vol.Size(), marks: []time.Duration{0, n}, after: oldIdle[:],
		work: func(ctx context.Context) (string, error) { return "", rv.WaitHydrated(ctx) },
		progress: func() loadProgress {
			h := rv.Hydration()
			return loadProgress{Done: h.DoneBytes, Total: h.TotalBytes, ReadFetched: h.ReadFetched}
		}})
	if err != nil {
		return snap, hyd, err
	}
	if after, err = reference(rv, 0); err != nil {
		return snap, hyd, err
	}
	end := busy.workEnd
	hyd = NBDLoadRun{Window: fixedWindow(busy, []loadFio{before, after}, n),
		Busy:   busy.window(busy.workStart, end, busy.workCPU),
		Idle:   busy.window(end.Add(oldIdle[0]), end.Add(oldIdle[1]), [2]float64{busy.cpuAfter[oldIdle[0]], busy.cpuAfter[oldIdle[1]]}),
		Detail: fmt.Sprintf("hydration %.2fs", end.Sub(busy.workStart).Seconds())}
	hyd.Ratio = ratio(hyd.Busy.IOPS, hyd.Idle.IOPS)

	if w.RW == "randread" {
		// Nothing wrote: the snapshot and the restored volume hold the image.
		sum, err := hashReaderAt(ctx, rv, rv.Size())
		if err != nil {
			return snap, hyd, err
		}
		r.check(fmt.Sprintf("instant restore of a snapshot taken during %s, after hydration", w.Name), r.info.sha, sum)
		hyd.Match = matchWord(sum == r.info.sha)
	}
	for _, x := range []struct {
		during string
		run    NBDLoadRun
		procs  [3][2]int
	}{{"snapshot", snap, snapProcs}, {"hydration", hyd, [3][2]int{before.procs, busy.procs, after.procs}}} {
		f := x.run.Window
		r.logf("%s during %s: GOMAXPROCS at the first request and the end: reference before %v, busy %v, reference after %v", w.Name, x.during, x.procs[0], x.procs[1], x.procs[2])
		r.logf("%s: first %gs with a %s started at the first request %.0f IOPS (p99 %.2f ms, %.1f CPU-µs/request) vs without %.0f (p99 %.2f ms, %.1f CPU-µs/request; before %.0f at %.1f, after %.0f at %.1f: spread %.2f×): %.2f× (CPU per request %.2f×); %s",
			w.Name, f.Seconds, x.during, f.Busy.IOPS, f.Busy.P99Ms, f.Busy.CPUUsPerRequest, f.Ref.IOPS, f.Ref.P99Ms, f.Ref.CPUUsPerRequest,
			f.Refs[0].IOPS, f.Refs[0].CPUUsPerRequest, f.Refs[1].IOPS, f.Refs[1].CPUUsPerRequest, f.RefSpread, f.Ratio, f.CPURatio, f.progressText(x.during))
		o := x.run
		r.logf("%s: old measure: during %s %.0f IOPS (p99 %.2f ms, %.1f CPU-µs/request) vs idle %.0f (p99 %.2f ms, %.1f CPU-µs/request): %.2f×; %s",
			w.Name, x.during, o.Busy.IOPS, o.Busy.P99Ms, o.Busy.CPUUsPerRequest, o.Idle.IOPS, o.Idle.P99Ms, o.Idle.CPUUsPerRequest, o.Ratio, o.Detail)
	}
	return snap, hyd, nil
}

// procsPoll is how often waitRestProcs looks at GOMAXPROCS, and
// procsLimit how long it waits at most.
const (
	procsPoll  = 50 * time.Millisecond
	procsLimit = 15 * time.Second
)

// waitRestProcs waits, at most limit, until procs() (GOMAXPROCS) is at
// most rest, and reports whether it got there. lowprio raises GOMAXPROCS
// for a snapshot's work and for connections' threads (nbdcopy's four
// connections loading a disk) and lowers it only once they have needed
// fewer Ps for 10 s, so a run started within 10 s of them would begin
// with a P more than the run after it.
func waitRestProcs(ctx context.Context, clk clock.Clock, procs func() int, rest int, limit time.Duration) (bool, error) {
	end := clk.Now().Add(limit)
	for procs() > rest {
		if !clk.Now().Before(end) {
			return false, nil
		}
		if err := pause(ctx, clk, procsPoll); err != nil {
			return false, err
		}
	}
	return true, nil
}

// settleRun brings the load part to the state each of its runs starts
// from: every file under dir settled (settleTree) and GOMAXPROCS back at
// what it was when the bench started (waitRestProcs).
func (r *nbdRunner) settleRun(ctx context.Context, dir string) error {
	if err := settleTree(ctx, dir); err != nil {
		return err
	}
	ok, err := waitRestProcs(ctx, r.clk, func() int { return runtime.GOMAXPROCS(0) }, r.restProcs, procsLimit)
	if err == nil && !ok {
		r.logf("GOMAXPROCS still %d after %s (%d at the start)", runtime.GOMAXPROCS(0), procsLimit, r.restProcs)
	}
	return err
}

// settleTree settles every regular file under roots in the page cache,
// as settleCached does (synced, data cached, holes not): the state each
// run of the load part starts from. Files that vanish meanwhile are
// skipped.
func settleTree(ctx context.Context, roots ...string) error {
	unix.Sync()
	buf := make([]byte, 1<<20)
	for _, root := range roots {
		err := walkExisting(root, func(p string, d fs.DirEntry) error {
			if !d.Type().IsRegular() {
				return nil
			}
			if err := settleFile(ctx, p, buf); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("settle %s in the page cache: %w", p, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// perRequestUs is cpu seconds per request, in µs (0 without requests).
func perRequestUs(cpu float64, requests int) float64 {
	if requests == 0 {
		return 0
	}
	return cpu * 1e6 / float64(requests)
}

// loadJob is one fio run of the load part: a workload on one connection
// to a volume, from a fresh start of fio.
type loadJob struct {
	w NBDWorkload
	v *blockdev.Volume
	// open, if set instead of v, makes the volume at the first request;
	// size is its size.
	open func() (*blockdev.Volume, error)
	size int64
	// runtime is how long fio runs without work.
	runtime time.Duration
	// work, if set, starts at the first request; fio then runs until it
	// has ended and the last of after has passed.
	work func(context.Context) (detail string, err error)
	// marks are instants from the first request, after those from the
	// work's end, at which the process's CPU time is read (and, at marks,
	// progress, the work's progress).
	marks, after []time.Duration
	progress     func() loadProgress
}

// loadProgress is how far background work had got at an instant.
type loadProgress struct {
	Done, Total int64 // blocks read of those taken (snapshot); bytes in the file of the disk's (hydration)
	CBW         int64 // blocks copied before write (snapshot)
	CBWBytes    int64 // bytes they copied (snapshot)
	// Of them, bytes the writers put in the side file themselves, and
	// bytes the snapshot moved there from memory (snapshot).
	CBWSideBytes, CBWSpilledBytes int64
	ReadFetched                   int64 // blocks the user's reads fetched (hydration)
	Ended                         bool  // the work had ended
}

func (p loadProgress) fraction() float64 {
	switch {
	case p.Ended:
		return 1
	case p.Total <= 0:
		return 0
	}
	return float64(p.Done) / float64(p.Total)
}

// loadFio is what runLoad measured.
type loadFio struct {
	samples   []latSample
	first     time.Time     // when the export saw the first request
	firstSent time.Duration // when fio sent it, from its job's start
	cpu       map[time.Duration]float64
	cpuAfter  map[time.Duration]float64
	progress  map[time.Duration]loadProgress
	// The work's start (the first request) and end, the process's CPU
	// time then, and its detail.
	workStart, workEnd time.Time
	workCPU            [2]float64
	detail             string
	// procs is GOMAXPROCS at the first request and at fio's end.
	procs [2]int
}

// at maps a time of the server's clock to fio's log clock.
func (l loadFio) at(t time.Time) time.Duration { return t.Sub(l.first) + l.firstSent }

// window returns the figures of the requests completed in [from, to)
// (server clock, from the first request at the earliest), with the
// process's CPU time at its ends.
func (l loadFio) window(from, to time.Time, cpu [2]float64) windowFigures {
	w := window(l.samples, max(l.at(from), l.firstSent), l.at(to))
	w.CPUUsPerRequest = perRequestUs(cpu[1]-cpu[0], w.Requests)
	return w
}

// runLoad runs j.
func (r *nbdRunner) runLoad(ctx context.Context, j loadJob) (loadFio, error) {
	out := loadFio{cpu: map[time.Duration]float64{}, cpuAfter: map[time.Duration]float64{}, progress: map[time.Duration]loadProgress{}}
	r.runN++
	name := fmt.Sprintf("under-load-%03d", r.runN)
	b := &volumeBackend{v: j.v, clk: r.clk, open: j.open, size: j.size}
	r.exportBackend(name, b)
	defer r.unexport(name)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopFio := func() { stopOnce.Do(func() { close(stop) }) }
	defer stopFio()
	logPrefix := r.fioOut(j.w.Name + "-lat")
	fj := fioJob{URI: r.cofferURI(name), RW: j.w.RW, BS: j.w.BS, IODepth: j.w.IODepth, Conns: 1, Size: b.Size(),
		Runtime: j.runtime, Seed: r.opts.Seed + 3, LatLog: logPrefix}
	if j.work != nil {
		fj.Runtime, fj.Stop = time.Hour, stop
	}
	type fioResult struct {
		f   FioFigures
		err error
	}
	fioDone := make(chan fioResult, 1)
	go func() {
		f, err := runFio(ctx, r.fio, logPrefix+".json", fj)
		if err != nil {
			cancel() // no request may ever come
		}
		fioDone <- fioResult{f, err}
	}()
	first, err := b.firstRequest(ctx)
	if err != nil {
		select {
		case fr := <-fioDone:
			if fr.err != nil {
				return out, fr.err
			}
		default:
		}
		return out, err
	}
	out.first, out.procs[0] = first, runtime.GOMAXPROCS(0)
	workDone := make(chan struct{})
	var workErr error
	if j.work != nil {
		out.workStart, out.workCPU[0] = r.clk.Now(), processCPU()
		go func() {
			defer close(workDone)
			out.detail, workErr = j.work(ctx)
			out.workEnd, out.workCPU[1] = r.clk.Now(), processCPU()
		}()
	} else {
		close(workDone)
	}
	ended := func() bool {
		select {
		case <-workDone:
			return j.work != nil
		default:
			return false
		}
	}
	for _, m := range sortedDurations(j.marks) {
		if err := pauseUntil(ctx, r.clk, first.Add(m)); err != nil {
			return out, err
		}
		out.cpu[m] = processCPU()
		if j.progress != nil {
			p := j.progress()
			p.Ended = ended()
			out.progress[m] = p
		}
	}
	<-workDone
	if workErr != nil {
		return out, workErr
	}
	if j.work != nil {
		for _, a := range sortedDurations(j.after) {
			if err := pauseUntil(ctx, r.clk, out.workEnd.Add(a)); err != nil {
				return out, err
			}
			out.cpuAfter[a] = processCPU()
		}
		stopFio()
	}
	fr := <-fioDone
	out.procs[1] = runtime.GOMAXPROCS(0)
	if fr.err != nil {
		return out, fr.err
	}
	if out.samples, err = readLatLogs(logPrefix); err != nil {
		return out, err
	}
	// fio's log times count from its job's start; its first request was
	// sent when the export saw its first request.
	out.firstSent = -1
	for _, s := range out.samples {
		if d := s.done - s.lat; out.firstSent < 0 || d < out.firstSent {
			out.firstSent = d
		}
	}
	if out.firstSent < 0 {
		return out, errors.New("fio logged no request")
	}
	return out, nil
}

func sortedDurations(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// pauseUntil waits until t on clk, or until ctx ends.
func pauseUntil(ctx context.Context, clk clock.Clock, t time.Time) error {
	if d := t.Sub(clk.Now()); d > 0 {
		return pause(ctx, clk, d)
	}
	return ctx.Err()
}

// fixedWindow is the fixed-window measure of a run of work (busy) against
// its references (refs: the same job run before and after it without the
// work): the first n of each from its first request.
func fixedWindow(busy loadFio, refs []loadFio, n time.Duration) NBDWindow {
	w := NBDWindow{Seconds: n.Seconds(),
		Busy: busy.window(busy.first, busy.first.Add(n), [2]float64{busy.cpu[0], busy.cpu[n]})}
	for _, ref := range refs {
		w.Refs = append(w.Refs, ref.window(ref.first, ref.first.Add(n), [2]float64{ref.cpu[0], ref.cpu[n]}))
	}
	w.Ref, w.RefSpread = refPair(w.Refs)
	w.Ratio = ratio(w.Busy.IOPS, w.Ref.IOPS)
	w.CPURatio = ratio(w.Ref.CPUUsPerRequest, w.Busy.CPUUsPerRequest)
	p0, p1 := busy.progress[0], busy.progress[n]
	w.ProgressStart, w.ProgressEnd = p0.fraction(), p1.fraction()
	if p1.Ended {
		w.EndedSeconds = busy.workEnd.Sub(busy.first).Seconds()
	} else {
		w.CBWBlocks, w.CBWBytes, w.CBWSideBytes, w.CBWSpilledBytes = p1.CBW, p1.CBWBytes, p1.CBWSideBytes, p1.CBWSpilledBytes
		w.ReadFetched = p1.ReadFetched - p0.ReadFetched
	}
	return w
}

// refPair combines reference windows into one: their requests over their
// seconds (the mean IOPS of windows of one length), the mean of their p50
// and p99, the highest maximum, and their CPU per request weighted by
// their requests; and returns with it their highest IOPS ÷ their lowest
// (0 when one has none).
func refPair(refs []windowFigures) (windowFigures, float64) {
	var c windowFigures
	var cpu float64
	lo, hi := -1.0, 0.0
	for _, f := range refs {
		c.Seconds += f.Seconds
		c.Requests += f.Requests
		c.P50Ms += f.P50Ms / float64(len(refs))
		c.P99Ms += f.P99Ms / float64(len(refs))
		c.MaxMs = max(c.MaxMs, f.MaxMs)
		cpu += f.CPUUsPerRequest * float64(f.Requests)
		if lo < 0 || f.IOPS < lo {
			lo = f.IOPS
		}
		hi = max(hi, f.IOPS)
	}
	if c.Seconds > 0 {
		c.IOPS = float64(c.Requests) / c.Seconds
	}
	if c.Requests > 0 {
		c.CPUUsPerRequest = cpu / float64(c.Requests)
	}
	return c, ratio(hi, lo)
}

// refsText is the references' IOPS, "before / after (spread×)".
func (w NBDWindow) refsText() string {
	var s []string
	for _, f := range w.Refs {
		s = append(s, fmt.Sprintf("%.0f", f.IOPS))
	}
	return fmt.Sprintf("%s (%.2f×)", strings.Join(s, " / "), w.RefSpread)
}

// progressText says how far the work got in the window.
func (w NBDWindow) progressText(during string) string {
	what := "blocks read"
	if during == "hydration" {
		what = "hydrated"
	}
	s := fmt.Sprintf("%s %.0f%% → %.0f%%", what, 100*w.ProgressStart, 100*w.ProgressEnd)
	if w.EndedSeconds > 0 {
		return s + fmt.Sprintf(" (%s ended at %.2fs)", during, w.EndedSeconds)
	}
	if during == "hydration" {
		return s + fmt.Sprintf(", %d blocks fetched by reads", w.ReadFetched)
	}
	return s + fmt.Sprintf(", %d copied before write (%s; %s written to the side file by writers, %s moved there)",
		w.CBWBlocks, sizeStr(w.CBWBytes), sizeStr(w.CBWSideBytes), sizeStr(w.CBWSpilledBytes))
}
