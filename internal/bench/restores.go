package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"coffer/internal/clock"
)

// Restore rounds (`coffer bench restore`): the full-restore figures of Run
// measured again, several times, on the repositories a run kept (Keep), so
// that a change to the restore can be measured against the code before it
// on the same repository in alternate runs of the two binaries without
// building the image and taking the snapshots again.

// RestoreOptions configure RunRestores.
type RestoreOptions struct {
	// Dir is the working directory of a run made with Keep: its image
	// (disk.img, as changed by the run), Coffer's repository (coffer/)
	// and, when the run got that far, the many-disk repository
	// (coffer-many/).
	Dir string
	// Rounds is how many times each restore runs (default 3).
	Rounds int
	// Workers is the engine's parallelism (default GOMAXPROCS).
	Workers int
	// Settle is a pause after the sync before each timed run (Options).
	Settle time.Duration
	// NoFloors leaves out the I/O floors and qemu-img: each round is the
	// one restore and the many-disk restore, the two whose throughputs
	// are compared.
	NoFloors bool
	// Progress receives one line per step (nil: none).
	Progress io.Writer
	// Clock measures wall time (default clock.Real).
	Clock clock.Clock
}

// RestoreRound is one round of RunRestores.
type RestoreRound struct {
	// Restore is Coffer's full restore of the second snapshot with its
	// repository read from the disk, IOFloor its reads and writes replayed
	// alone (nil with NoFloors), Qemu the plain-copy floor (qemu-img convert + fsync, when on
	// PATH) and Many the many-disk restore (when Dir has its repository).
	Restore Restore    `json:"restore"`
	IOFloor *IOFloor   `json:"restoreIOFloor,omitempty"`
	Qemu    *Floor     `json:"qemuImgFloor,omitempty"`
	Many    *ManyDisks `json:"manyDisks,omitempty"`
	Load    string     `json:"loadAverage"` // at the round's end
}

// RestoreResult holds every round of RunRestores.
type RestoreResult struct {
	Dir          string         `json:"dir"`
	SizeBytes    int64          `json:"sizeBytes"`
	Cores        int            `json:"cores"`
	Workers      int            `json:"workers"`
	LoadStart    string         `json:"loadAverageStart"`
	LoadEnd      string         `json:"loadAverageEnd"`
	PeakRSSBytes int64          `json:"peakRSSBytes"`
	Rounds       []RestoreRound `json:"rounds"`
}

// RunRestores measures the full restore of the run kept in opts.Dir
// against its I/O floor, qemu-img convert + fsync and the many-disk
// restore, opts.Rounds times. Every restore is checked against the image;
// one that differs is an error.
func RunRestores(ctx context.Context, opts RestoreOptions) (RestoreResult, error) {
	if opts.Rounds <= 0 {
		opts.Rounds = 3
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("bench restore: %w", err)
	}
	image := filepath.Join(dir, "disk.img")
	fi, err := os.Stat(image)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("bench restore: %s is not a directory kept by coffer bench --keep: %w", dir, err)
	}
	r := &runner{opts: Options{Size: fi.Size(), Dir: dir, Workers: opts.Workers, Settle: opts.Settle, Progress: opts.Progress, Clock: opts.Clock},
		clk: opts.Clock, dir: dir, image: image, probe: &probe{clk: opts.Clock, disk: blockDevice(dir)}, noFloors: opts.NoFloors}
	r.res = &Result{SizeBytes: fi.Size(), Cores: runtime.NumCPU(), Workers: opts.Workers, Ratios: map[string]float64{}}
	out := RestoreResult{Dir: dir, SizeBytes: fi.Size(), Cores: r.res.Cores, Workers: opts.Workers, LoadStart: loadAverage()}
	pprof.Do(ctx, pprof.Labels("step", "restore rounds"), func(ctx context.Context) { err = r.restoreRounds(ctx, opts.Rounds, &out) })
	out.LoadEnd = loadAverage()
	out.PeakRSSBytes = r.probe.rss.overallPeak()
	if err != nil {
		return out, fmt.Errorf("bench restore: %w", err)
	}
	return out, nil
}

func (r *runner) restoreRounds(ctx context.Context, rounds int, out *RestoreResult) (err error) {
	// The kept run's restored copies: the rounds write them again.
	left, err := filepath.Glob(filepath.Join(r.dir, "restore-*.img"))
	if err != nil {
		return err
	}
	for _, p := range left {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("remove the kept run's restored copy: %w", err)
		}
	}
	r.logf("hashing the image")
	if r.res.Image.SHA256After, err = hashFile(ctx, r.image); err != nil {
		return err
	}
	if r.stack, err = r.openStack(ctx, filepath.Join(r.dir, "coffer")); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, r.stack.close()) }()
	var many *stack
	if _, serr := os.Stat(filepath.Join(r.dir, "coffer-many", "index.db")); serr == nil {
		st, err := r.openStack(ctx, filepath.Join(r.dir, "coffer-many"))
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, st.close()) }()
		many = &st
	}
	for i := range rounds {
		var rd RestoreRound
		if err := r.beforeTimed(ctx); err != nil {
			return err
		}
		if err := evictCached(r.repoFiles()...); err != nil {
			return err
		}
		reads, writes, err := r.cofferRestore(ctx, &rd.Restore, fmt.Sprintf("round %d, repository from disk", i+1), "", true)
		if err != nil {
			return err
		}
		if !rd.Restore.Match {
			return errors.New("the restore did not reproduce the image")
		}
		if !r.noFloors {
			if err := r.ioFloor(ctx, reads, writes); err != nil {
				return err
			}
			rd.IOFloor = r.res.Coffer.RestoreIOFloor
			r.res.Floor = nil
			if err := r.qemuCopy(ctx); err != nil {
				return err
			}
			rd.Qemu = r.res.Floor
		}
		if many != nil {
			rd.Many = &ManyDisks{Disks: manyDisks, DiskBytes: r.opts.Size / manyDisks, AtOnce: manyRestores}
			if err := r.manyRestore(ctx, *many, rd.Many, true, ""); err != nil {
				return err
			}
			if !rd.Many.Restore.Match {
				return errors.New("a restore of the many-disk step did not reproduce its part of the image")
			}
		}
		rd.Load = loadAverage()
		r.logf("round %d: %s", i+1, rd.summary())
		out.Rounds = append(out.Rounds, rd)
	}
	return nil
}

// summary is the round's figures as ratios against their references.
func (rd RestoreRound) summary() string {
	rs := rd.Restore
	s := fmt.Sprintf("restore %.2fs (CPU %.2fs, disk busy %.0f%%, %.1f reads in flight)", rs.Seconds, rs.Internals.CPUSeconds,
		100*rs.Internals.Machine.DiskBusy, rs.Internals.readsInFlight(rs.Seconds))
	if f := rd.IOFloor; f != nil {
		s += fmt.Sprintf(" ÷ I/O floor %.2fs (CPU %.2fs, disk busy %.0f%%%s) = %.2f×",
			f.Seconds, f.CPUSeconds, 100*f.Machine.DiskBusy, f.runsString(), ratio(rs.Seconds, f.Seconds))
	}
	if q := rd.Qemu; q != nil && q.SyncedSeconds > 0 {
		s += fmt.Sprintf("; ÷ qemu-img + fsync, image from disk %.2fs = %.2f×", q.SyncedSeconds, ratio(rs.Seconds, q.SyncedSeconds))
		if c := q.Cached; c.Seconds > 0 {
			s += fmt.Sprintf(" (image cached %.2fs = %.2f×)", c.Seconds+c.FsyncSeconds, ratio(rs.Seconds, c.Seconds+c.FsyncSeconds))
		}
	}
	if m := rd.Many; m != nil {
		mi := m.Restore.Internals
		s += fmt.Sprintf("; %d restores at once %.2fs (CPU %.2fs, %d reads of %s against one's %d of %s, %.1f reads in flight, disk busy %.0f%%), throughput ÷ one's = %.2f×",
			m.AtOnce, m.Restore.Seconds, mi.CPUSeconds, mi.BlobGets, sizeStr(mi.BlobGetBytes), rs.Internals.BlobGets, sizeStr(rs.Internals.BlobGetBytes),
			mi.readsInFlight(m.Restore.Seconds), 100*mi.Machine.DiskBusy, ratio(rs.Seconds, m.Restore.Seconds))
		if f := m.RestoreIOFloor; f != nil && rd.IOFloor != nil {
			s += fmt.Sprintf(", their I/O floor %.2fs (%.2f× one's; restores ÷ it = %.2f×)", f.Seconds, ratio(f.Seconds, rd.IOFloor.Seconds), ratio(m.Restore.Seconds, f.Seconds))
		}
		if f := m.RestoreIOFloorAtOnce; f != nil && rd.IOFloor != nil {
			s += fmt.Sprintf(", their I/O floor %d at a time %.2fs (throughput %.2f× one's floor; restores ÷ it = %.2f×)", m.AtOnce, f.Seconds, ratio(rd.IOFloor.Seconds, f.Seconds), ratio(m.Restore.Seconds, f.Seconds))
		}
	}
	return s + "; load " + rd.Load
}

// WriteRestoreTable prints the rounds of RunRestores.
func WriteRestoreTable(w io.Writer, res RestoreResult) error {
	fmt.Fprintf(w, "coffer bench restore: %s, %.1f GiB disk, %d cores, %d workers; load %s at start, %s at end; peak RSS %.0f MiB\n\n",
		res.Dir, float64(res.SizeBytes)/(1<<30), res.Cores, res.Workers, res.LoadStart, res.LoadEnd, mib(res.PeakRSSBytes))
	for i, rd := range res.Rounds {
		if _, err := fmt.Fprintf(w, "round %d: %s\n", i+1, rd.summary()); err != nil {
			return err
		}
	}
	if len(res.Rounds) > 1 {
		if _, err := fmt.Fprintf(w, "medians of %d rounds: %s\n", len(res.Rounds), res.medians()); err != nil {
			return err
		}
	}
	return nil
}

// medians is each restore's median over the rounds and the ratios of
// those medians, as the full benchmark judges them.
func (res RestoreResult) medians() string {
	var one, floor, qemu, many, manyFloor []float64
	for _, rd := range res.Rounds {
		one = append(one, rd.Restore.Seconds)
		if rd.IOFloor != nil {
			floor = append(floor, rd.IOFloor.Seconds)
		}
		if rd.Qemu != nil && rd.Qemu.SyncedSeconds > 0 {
			qemu = append(qemu, rd.Qemu.SyncedSeconds)
		}
		if rd.Many != nil {
			many = append(many, rd.Many.Restore.Seconds)
			if f := rd.Many.RestoreIOFloorAtOnce; f != nil {
				manyFloor = append(manyFloor, f.Seconds)
			}
		}
	}
	r := median(one)
	s := fmt.Sprintf("restore %.2fs", r)
	if len(floor) > 0 {
		s += fmt.Sprintf(" ÷ I/O floor %.2fs = %.2f×", median(floor), ratio(r, median(floor)))
	}
	if len(qemu) > 0 {
		s += fmt.Sprintf("; ÷ qemu-img + fsync %.2fs = %.2f×", median(qemu), ratio(r, median(qemu)))
	}
	if len(many) > 0 {
		s += fmt.Sprintf("; restores at once %.2fs, throughput ÷ one's = %.2f×", median(many), ratio(r, median(many)))
		if len(manyFloor) > 0 && len(floor) > 0 {
			s += fmt.Sprintf("; their I/O floor at once %.2fs, its throughput ÷ one's floor = %.2f×, restores at once ÷ it = %.2f×",
				median(manyFloor), ratio(median(floor), median(manyFloor)), ratio(median(many), median(manyFloor)))
		}
	}
	return s
}
