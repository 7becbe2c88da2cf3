package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"coffer/internal/blockdev"
)

// idleWindow is the idle part of each run under load: before the snapshot
// starts, after hydration ends. settleWindow is skipped before it (the
// client's start, the end of hydration).
const (
	idleWindow   = 3 * time.Second
	settleWindow = 500 * time.Millisecond
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
			var v []float64
			for _, x := range l.Runs {
				v = append(v, x.Ratio)
			}
			l.MedianRatio = median(v)
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
	t0 := r.clk.Now()
	si, err := st.eng.Snapshot(ctx, "disk", "s1")
	if err != nil {
		return err
	}
	r.res.SnapshotAloneSeconds = r.since(t0)
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

// loadRun runs w on a fresh stack: idle, then during a full snapshot; then
// on an instant restore of that snapshot while it hydrates, then idle.
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
	var si blockdev.SnapshotInfo
	snap, err = r.during(ctx, w, st.vol, func(ctx context.Context) (string, error) {
		var err error
		si, err = st.eng.Snapshot(ctx, "disk", "s1")
		return fmt.Sprintf("snapshot %%.2fs, %d blocks read, %d copied before write", si.Stats.BlocksRead, si.Stats.CBWBlocks), err
	}, true)
	if err != nil {
		return snap, hyd, err
	}
	rv, err := st.eng.RestoreVolume(ctx, "s1", "restored")
	if err != nil {
		return snap, hyd, err
	}
	defer rv.Close()
	hyd, err = r.during(ctx, w, rv, func(ctx context.Context) (string, error) {
		return "hydration %.2fs", rv.WaitHydrated(ctx)
	}, false)
	if err != nil {
		return snap, hyd, err
	}
	if w.RW == "randread" {
		// Nothing wrote: the snapshot and the restored volume hold the image.
		sum, err := hashReaderAt(ctx, rv, rv.Size())
		if err != nil {
			return snap, hyd, err
		}
		r.check(fmt.Sprintf("instant restore of a snapshot taken during %s, after hydration", w.Name), r.info.sha, sum)
		hyd.Match = matchWord(sum == r.info.sha)
	}
	r.logf("%s: during snapshot %.0f IOPS (p99 %.2f ms, %.1f CPU-µs/request) vs idle %.0f (p99 %.2f ms, %.1f CPU-µs/request): %.2f×; %s",
		w.Name, snap.Busy.IOPS, snap.Busy.P99Ms, snap.Busy.CPUUsPerRequest, snap.Idle.IOPS, snap.Idle.P99Ms, snap.Idle.CPUUsPerRequest, snap.Ratio, snap.Detail)
	r.logf("%s: during hydration %.0f IOPS (p99 %.2f ms, %.1f CPU-µs/request) vs idle %.0f (p99 %.2f ms, %.1f CPU-µs/request): %.2f×; %s",
		w.Name, hyd.Busy.IOPS, hyd.Busy.P99Ms, hyd.Busy.CPUUsPerRequest, hyd.Idle.IOPS, hyd.Idle.P99Ms, hyd.Idle.CPUUsPerRequest, hyd.Ratio, hyd.Detail)
	return snap, hyd, nil
}

// perRequestUs is cpu seconds per request, in µs (0 without requests).
func perRequestUs(cpu float64, requests int) float64 {
	if requests == 0 {
		return 0
	}
	return cpu * 1e6 / float64(requests)
}

// during runs w on v, one connection, while work runs: with idleFirst,
// work starts after an idle window; otherwise at once, and the idle window
// follows it. work returns a format for its detail with one %.2f verb, its
// seconds.
func (r *nbdRunner) during(ctx context.Context, w NBDWorkload, v *blockdev.Volume, work func(context.Context) (string, error), idleFirst bool) (NBDLoadRun, error) {
	var out NBDLoadRun
	r.runN++
	name := fmt.Sprintf("under-load-%03d", r.runN)
	b := r.export(name, v)
	defer r.unexport(name)
	stop := make(chan struct{})
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
		}
	}()
	logPrefix := r.fioOut(w.Name + "-lat")
	j := fioJob{URI: r.cofferURI(name), RW: w.RW, BS: w.BS, IODepth: w.IODepth, Conns: 1, Size: v.Size(),
		Runtime: time.Hour, Seed: r.opts.Seed + 3, LatLog: logPrefix, Stop: stop}
	type fioResult struct {
		f   FioFigures
		err error
	}
	fioDone := make(chan fioResult, 1)
	go func() {
		f, err := runFio(ctx, r.fio, logPrefix+".json", j)
		fioDone <- fioResult{f, err}
	}()
	first, err := b.firstRequest(ctx)
	if err != nil {
		return out, err
	}
	// The process's CPU time (the server's and the background work's) at
	// the ends of the idle and busy windows.
	var idleCPU [2]float64
	idle := func() error {
		if err := pause(ctx, r.clk, settleWindow); err != nil {
			return err
		}
		idleCPU[0] = processCPU()
		err := pause(ctx, r.clk, idleWindow)
		idleCPU[1] = processCPU()
		return err
	}
	if idleFirst {
		if err := idle(); err != nil {
			return out, err
		}
	}
	t0, busyCPU0 := r.clk.Now(), processCPU()
	detail, err := work(ctx)
	t1, busyCPU1 := r.clk.Now(), processCPU()
	if err != nil {
		return out, err
	}
	out.Detail = fmt.Sprintf(detail, t1.Sub(t0).Seconds())
	if !idleFirst {
		if err := idle(); err != nil {
			return out, err
		}
	}
	close(stop)
	stopped = true
	fr := <-fioDone
	if fr.err != nil {
		return out, fr.err
	}
	samples, err := readLatLogs(logPrefix)
	if err != nil {
		return out, err
	}
	// fio's log times count from its job's start; its first request was
	// sent when the export saw its first request.
	var firstSent time.Duration = -1
	for _, s := range samples {
		if d := s.done - s.lat; firstSent < 0 || d < firstSent {
			firstSent = d
		}
	}
	at := func(t time.Time) time.Duration { return t.Sub(first) + firstSent }
	busyFrom := max(at(t0), firstSent)
	out.Busy = window(samples, busyFrom, at(t1))
	if idleFirst {
		out.Idle = window(samples, at(t0)-idleWindow, at(t0))
	} else {
		out.Idle = window(samples, at(t1)+settleWindow, at(t1)+settleWindow+idleWindow)
	}
	out.Ratio = ratio(out.Busy.IOPS, out.Idle.IOPS)
	out.Busy.CPUUsPerRequest = perRequestUs(busyCPU1-busyCPU0, out.Busy.Requests)
	out.Idle.CPUUsPerRequest = perRequestUs(idleCPU[1]-idleCPU[0], out.Idle.Requests)
	return out, nil
}
