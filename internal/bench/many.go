package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"coffer/internal/blockdev"
)

// Many disks at once: the image cut into manyDisks disks, in a fresh
// repository of their own, all backed up at the same moment (the top of
// the hour, when every policy's backup falls due), then all restored,
// manyRestores at a time. The same data as one disk, so the times compare
// with the one disk's full snapshot and restore.
const (
	manyDisks    = 8
	manyRestores = 4
)

// ManyDisks holds the figures of many disks at once.
type ManyDisks struct {
	Disks     int   `json:"disks"`
	DiskBytes int64 `json:"diskBytes"` // each
	// Backup: every disk's full snapshot started at once; Seconds until
	// the last one was committed.
	Backup Backup `json:"backup"`
	// Restore: every disk restored into a file, AtOnce at a time;
	// Seconds until the last one was durable, MiBps of all the disks
	// together. SHA256 is of the restored disks' SHA-256 sums, Match
	// that each disk equals its part of the image.
	//
	// With Options.RestoreRounds above 1 the restores at once run that
	// many times, each run in Restore.Runs, and Seconds and MiBps are
	// those of the median run; the other figures (Internals, the I/O
	// floor) are the first run's.
	AtOnce  int     `json:"restoresAtOnce"`
	Restore Restore `json:"restore"`
	// One is the one disk's full restore (the full restores' repository
	// read from the disk) run again in the same rounds, beside the
	// restores at once, the order swapped each round: what they are
	// judged against, measured in the same minutes, its Seconds and MiBps
	// those of its median run (nil with one round: the full restores'
	// figure is then the reference).
	One *Restore `json:"oneRestore,omitempty"`
	// RestoreIOFloor is the reads and writes of Restore replayed alone
	// (the disks' writes into one file, each disk at its offset in the
	// image): against the one disk's floor, what the many-disk
	// repository's layout costs the disk; against Restore, what the
	// restores add to it.
	RestoreIOFloor *IOFloor `json:"restoreIOFloor,omitempty"`
	// RestoreIOFloorAtOnce is the same reads and writes replayed as the
	// restores ran them: each restore's own into its own file with its
	// own fsync, AtOnce of them at a time (replayAtOnce). Against
	// Restore, what the restores add to their I/O as it was shaped;
	// against RestoreIOFloor, what that shape (several files, each
	// synced, the tail of the last ones) costs the disk.
	RestoreIOFloorAtOnce *IOFloor `json:"restoreIOFloorAtOnce,omitempty"`
}

// many runs the many-disk step in a fresh stack in DIR/coffer-many,
// removed at the end unless Keep.
func (r *runner) many(ctx context.Context) (err error) {
	out := &ManyDisks{Disks: manyDisks, DiskBytes: r.opts.Size / manyDisks, AtOnce: manyRestores}
	r.res.Coffer.Many = out
	base := filepath.Join(r.dir, "coffer-many")
	st, err := r.openStack(ctx, base)
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, st.close())
		if !r.opts.Keep {
			err = errors.Join(err, os.RemoveAll(base))
		}
	}()
	names := make([]string, manyDisks)
	vols := make([]*blockdev.Volume, manyDisks)
	defer func() {
		for _, v := range vols {
			if v != nil {
				err = errors.Join(err, v.Close())
			}
		}
	}()
	for i := range names {
		names[i] = fmt.Sprintf("disk%d", i)
		if vols[i], err = r.loadVolume(ctx, st.eng, names[i], int64(i)*out.DiskBytes, out.DiskBytes); err != nil {
			return err
		}
	}

	// Backups, all at once.
	if err := r.beforeTimed(ctx); err != nil {
		return err
	}
	m := r.probe.start()
	t0 := r.clk.Now()
	g, gctx := errgroup.WithContext(ctx)
	for i, name := range names {
		g.Go(func() error {
			_, err := st.eng.Snapshot(gctx, name, fmt.Sprintf("s%d", i))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	b := &out.Backup
	b.Seconds = r.since(t0)
	bin := m.stop(r.res.Cores)
	b.Internals, b.MiBps = &bin, r.mibps(b.Seconds)
	if b.StoredBytes, err = diskUsageOf(st.repoFiles()...); err != nil {
		return err
	}
	r.logf("%d disks of %s backed up at once: %.2fs (%.0f MiB/s of disk together), repository %.1f MiB; CPU %.0f%% of %d cores; %s",
		manyDisks, sizeStr(out.DiskBytes), b.Seconds, b.MiBps, mib(b.StoredBytes), 100*bin.CPUUtilization, r.res.Cores, bin.Machine)

	// Restores, manyRestores at a time, repository read from the disk.
	for _, v := range vols {
		err = errors.Join(err, v.Close())
	}
	vols = nil
	if err != nil || r.opts.BackupOnly {
		return err
	}
	return r.manyRounds(ctx, st, out)
}

// manyRounds restores the many disks RestoreRounds times, each round
// beside a run of the one disk's restore (the order swapped every round,
// each run after beforeTimed and the eviction of what it reads), and
// keeps the median of each, so that neither one slow or fast minute of
// the disk nor the order of the two decides their ratio. The restores at
// once's I/O floor is replayed after the first round only.
func (r *runner) manyRounds(ctx context.Context, st stack, out *ManyDisks) error {
	if r.opts.RestoreRounds <= 1 {
		return r.manyRestore(ctx, st, out, true, "")
	}
	out.One = &Restore{}
	many := func(round int) error {
		if round == 1 {
			if err := r.manyRestore(ctx, st, out, true, ""); err != nil {
				return err
			}
			out.Restore.Runs = append(out.Restore.Runs, RestoreRun{Seconds: out.Restore.Seconds})
			return nil
		}
		m := ManyDisks{Disks: out.Disks, DiskBytes: out.DiskBytes, AtOnce: out.AtOnce}
		if err := r.manyRestore(ctx, st, &m, false, roundSuffix(round)); err != nil {
			return err
		}
		for i := range m.Disks { // Keep keeps the first round's copies
			if err := removeRound(filepath.Join(r.dir, fmt.Sprintf("restore-many-%d%s.img", i, roundSuffix(round)))); err != nil {
				return err
			}
		}
		if !m.Restore.Match {
			out.Restore.Match = false
		}
		out.Restore.Runs = append(out.Restore.Runs, RestoreRun{Seconds: m.Restore.Seconds})
		return nil
	}
	one := func(round int) error {
		var o Restore
		suffix := "-beside-many" + roundSuffix(round)
		if err := r.coldRun(ctx, r.repoFiles(), func() error {
			_, _, err := r.cofferRestore(ctx, &o, fmt.Sprintf("beside the restores at once, round %d, repository from disk", round), suffix, false)
			return err
		}); err != nil {
			return err
		}
		if err := removeRound(filepath.Join(r.dir, "restore-coffer"+suffix+".img")); err != nil {
			return err
		}
		if !o.Match {
			return errors.New("the restore did not reproduce the image")
		}
		if round == 1 {
			*out.One = o
		}
		out.One.Runs = append(out.One.Runs, RestoreRun{Seconds: o.Seconds})
		return nil
	}
	for round := 1; round <= r.opts.RestoreRounds; round++ {
		first, second := many, one
		if round%2 == 0 {
			first, second = one, many
		}
		if err := first(round); err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		if err := second(round); err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
	}
	size := int64(out.Disks) * out.DiskBytes
	out.Restore.useMedian(size)
	out.One.useMedian(size)
	r.logf("%d restores at once and the one disk's restore beside them, medians of %d rounds: %.2fs (%s) and %.2fs (%s): throughput ÷ one's %.2f×",
		out.AtOnce, r.opts.RestoreRounds, out.Restore.Seconds, runsList(out.Restore.Runs), out.One.Seconds, runsList(out.One.Runs), ratio(out.One.Seconds, out.Restore.Seconds))
	return nil
}

// runsList formats runs' seconds (+ fsync) as "1.23, 4.56".
func runsList(runs []RestoreRun) string {
	v := make([]float64, len(runs))
	for i, run := range runs {
		v[i] = run.Seconds + run.FsyncSeconds
	}
	return floatList(v)
}

// manyRestore restores the disks of st's snapshots s0…s<Disks-1>
// (DiskBytes each), AtOnce at a time, with the repository read from the
// disk, checks each against its part of the image and records the
// figures in out.Restore; with floor (and floors not left out) it then
// replays their reads and writes alone (out.RestoreIOFloor). The restored
// disks are DIR/restore-many-<i><suffix>.img.
func (r *runner) manyRestore(ctx context.Context, st stack, out *ManyDisks, floor bool, suffix string) error {
	if err := r.beforeTimed(ctx); err != nil {
		return err
	}
	if err := evictCached(st.repoFiles()...); err != nil {
		return err
	}
	paths := make([]string, out.Disks)
	for i := range paths {
		paths[i] = filepath.Join(r.dir, fmt.Sprintf("restore-many-%d%s.img", i, suffix))
	}
	r.probe.trace.start()
	m := r.probe.start()
	t0 := r.clk.Now()
	var err error
	spans := make([][2]float64, len(paths)) // each restore's start and end, s after t0
	pprof.Do(ctx, pprof.Labels("restore", "many"), func(ctx context.Context) {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(out.AtOnce)
		for i, p := range paths {
			g.Go(func() error {
				spans[i][0] = r.since(t0)
				// Each restore's reads are told apart for the floor at once.
				err := st.eng.RestoreToFile(withTraceSlot(gctx, i+1), fmt.Sprintf("s%d", i), p)
				spans[i][1] = r.since(t0)
				return err
			})
		}
		err = g.Wait()
	})
	secs := r.since(t0)
	rin := m.stop(r.res.Cores)
	reads := r.probe.trace.stop()
	var writes []extent
	perWrites := make([][]extent, len(paths)) // each restore's, in its own file
	var each strings.Builder                  // each restore's time and data
	for i, p := range paths {
		if err != nil {
			break
		}
		var runs []extent
		runs, err = dataRuns(p, floorWriteMax)
		perWrites[i] = runs
		var data int64
		for _, w := range runs {
			writes = append(writes, extent{int64(i)*out.DiskBytes + w.off, w.n})
			data += w.n
		}
		fmt.Fprintf(&each, "; %d: %.2f-%.2fs, %s", i, spans[i][0], spans[i][1], sizeStr(data))
	}
	if err != nil {
		// No figures from a failed step; what was restored goes unless
		// Keep.
		for _, p := range paths {
			if r.opts.Keep {
				break
			}
			if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
		return err
	}
	rs := &out.Restore
	rs.Seconds, rs.Internals, rs.MiBps = secs, &rin, r.mibps(secs)
	if err := r.checkSlices(ctx, paths, out.DiskBytes, rs); err != nil {
		return err
	}
	r.logf("%d disks restored, %d at a time: %.2fs (%.0f MiB/s together), sha256 match %v; CPU %.0f%% of %d cores; %d reads (%s); %s",
		out.Disks, out.AtOnce, rs.Seconds, rs.MiBps, rs.Match, 100*rin.CPUUtilization, r.res.Cores, rin.BlobGets, sizeStr(rin.BlobGetBytes), rin.Machine)
	r.logf("the %d restores, from the first one's start (disk: start-end, data)%s", out.Disks, each.String())
	if r.noFloors || !floor {
		return nil
	}
	rr := probedBlobs{st.blobs, r.probe}
	fl, err := r.replayFloor(ctx, fmt.Sprintf("the %d restores", out.Disks), rr, st.repoFiles(), reads, writes, int64(out.Disks)*out.DiskBytes)
	if err != nil {
		return err
	}
	out.RestoreIOFloor = &fl
	atOnce, err := r.replayFloorAtOnce(ctx, fmt.Sprintf("the %d restores, %d at a time, each into its own file", out.Disks, out.AtOnce), rr, st.repoFiles(),
		bySlot(reads, out.Disks), perWrites, out.DiskBytes, out.AtOnce)
	if err != nil {
		return err
	}
	out.RestoreIOFloorAtOnce = &atOnce
	return nil
}

// checkSlices compares each restored file paths[i] with the bytes
// [i·n, (i+1)·n) of the image and removes it unless Keep.
func (r *runner) checkSlices(ctx context.Context, paths []string, n int64, out *Restore) error {
	img, err := os.Open(r.image)
	if err != nil {
		return err
	}
	defer img.Close()
	sums := sha256.New()
	out.Match = true
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	got := make([]string, len(paths))
	for i, p := range paths {
		g.Go(func() error {
			want := sha256.New()
			if err := hashExtents(gctx, img, int64(i)*n, int64(i+1)*n, want); err != nil {
				return fmt.Errorf("hash image part %d: %w", i, err)
			}
			sum, err := hashFile(gctx, p)
			if err != nil {
				return err
			}
			got[i] = sum
			if sum != hex.EncodeToString(want.Sum(nil)) {
				mu.Lock()
				out.Match = false
				mu.Unlock()
			}
			if !r.opts.Keep {
				return os.Remove(p)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, s := range got {
		sums.Write([]byte(s))
	}
	out.SHA256 = hex.EncodeToString(sums.Sum(nil))
	return nil
}
