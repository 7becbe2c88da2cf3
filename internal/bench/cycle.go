package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"coffer/internal/blobstore/location"
	"coffer/internal/blobstore/metrics"
	"coffer/internal/blobstore/s3"
	"coffer/internal/blockdev"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
	"coffer/internal/store/sqlite"
)

// A cycle is the core of a backup's life on one blob store, on a fresh
// repository: load the image into a new volume (untimed), take a full
// snapshot, rewrite 1% of the disk, take an incremental snapshot, restore
// it into a file and check it against the image. Two modes run cycles:
//
//   - RunBlob runs them on the local directory and on another blob store
//     (s3://…), interleaved round by round, so that the second store's
//     figures are ratios of the first's measured in the same run, under
//     the same load;
//   - RunSweep runs them on disks of several sizes with the same share of
//     data, for the cost of a backup per GiB of disk.
//
// Both repeat every cycle Rounds times and report each figure's runs and
// median, with the load average around each run.

// CycleOptions configure RunBlob and RunSweep.
type CycleOptions struct {
	// Size and Data are the disk and its data for RunBlob (see Options).
	Size, Data int64
	// Sizes are the disk sizes of RunSweep; DataShare is the share of
	// each that holds data (default 1/16).
	Sizes     []int64
	DataShare float64
	// Blob is the location measured against the local directory by
	// RunBlob (s3://BUCKET[/PREFIX]); each cycle works under a new prefix
	// below it. S3Endpoint and S3PathStyle configure it as serve's flags
	// do (unset: the AWS environment).
	Blob        string
	S3Endpoint  string
	S3PathStyle bool
	// Rounds is how often each cycle runs (default 3).
	Rounds int
	// ServerPID, when set, is a process whose CPU time each timed step
	// also reports (the S3 server on this machine), to tell which side of
	// a slower store saturates.
	ServerPID int
	// Dir, Seed, Workers, Corpus, Progress and Clock are as in Options.
	Dir      string
	Seed     uint64
	Workers  int
	Corpus   []string
	Progress io.Writer
	Clock    clock.Clock
}

// CycleRun is one cycle's figures.
type CycleRun struct {
	Target         string  `json:"target"`
	SizeBytes      int64   `json:"sizeBytes"`
	DataBytes      int64   `json:"dataBytes"`
	Round          int     `json:"round"`
	FullSeconds    float64 `json:"fullSnapshotSeconds"`
	FullPeakRSS    int64   `json:"fullSnapshotPeakRSSBytes"`
	IncSeconds     float64 `json:"incrementalSnapshotSeconds"`
	RestoreSeconds float64 `json:"restoreSeconds"`
	RestorePeakRSS int64   `json:"restorePeakRSSBytes"`
	RestoreMatch   bool    `json:"restoreMatch"`
	// Blob store calls of the whole cycle (the metrics decorator).
	BlobPuts, BlobGets, BlobRangeGets, BlobLists uint64
	BlobReadBytes, BlobWrittenBytes              uint64
	LoadBefore, LoadAfter                        string
	// Where the CPU went in the full snapshot and the restore: this
	// process's seconds, the ServerPID's, and the machine's busy share
	// (of all cores, every process).
	Full, Restore StepCPU
}

// StepCPU is the CPU a timed step used.
type StepCPU struct {
	SelfSeconds   float64 `json:"selfCPUSeconds"`
	ServerSeconds float64 `json:"serverCPUSeconds,omitempty"`
	MachineBusy   float64 `json:"machineBusy"`
}

// CycleResult is RunBlob's or RunSweep's result.
type CycleResult struct {
	Mode    string     `json:"mode"`
	Cores   int        `json:"cores"`
	Workers int        `json:"workers"`
	Rounds  int        `json:"rounds"`
	Runs    []CycleRun `json:"runs"`
	// Ratios (RunBlob): the other store's median over the local
	// directory's, per figure, and the median of the per-round ratios.
	Ratios map[string]float64 `json:"ratios,omitempty"`
}

func (o *CycleOptions) defaults() error {
	if o.Dir == "" {
		return errors.New("bench: no directory")
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.DataShare <= 0 || o.DataShare > 1 {
		o.DataShare = 1.0 / 16
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Corpus == nil {
		o.Corpus = DefaultCorpus
	}
	return nil
}

// cycler runs cycles on one image.
type cycler struct {
	o          CycleOptions
	dir, image string
	size, data int64
	sha        string // the image's
	rss        rssMeter
	n          int // cycles run, for unique names
}

func (c *cycler) logf(format string, args ...any) {
	if c.o.Progress != nil {
		fmt.Fprintf(c.o.Progress, "bench: "+format+"\n", args...)
	}
}

// newCycler builds the image of size bytes, data of them data.
func newCycler(ctx context.Context, o CycleOptions, size, data int64) (*cycler, error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	c := &cycler{o: o, dir: dir, image: filepath.Join(dir, fmt.Sprintf("disk-%d.img", size)), size: size &^ (1<<20 - 1), data: data &^ (1<<20 - 1)}
	if c.size < MinSize || c.data < 1<<20 || c.data > c.size {
		return nil, fmt.Errorf("bench: a disk of %d MiB with %d MiB of data: want at least %d MiB, and 1 MiB to all of it of data", size>>20, data>>20, MinSize>>20)
	}
	t0 := o.Clock.Now()
	info, err := buildImage(ctx, c.image, c.size, c.data, o.Seed, o.Corpus)
	if err != nil {
		return nil, fmt.Errorf("bench: build image: %w", err)
	}
	c.sha = info.sha
	c.logf("image %s: %d MiB, %d MiB of data, %.1fs", c.image, c.size>>20, c.data>>20, o.Clock.Now().Sub(t0).Seconds())
	return c, nil
}

func (c *cycler) remove() error { return os.Remove(c.image) }

// cycle runs one cycle on the blob store at loc ("" for a new local
// directory).
func (c *cycler) cycle(ctx context.Context, target, loc string, round int) (run CycleRun, err error) {
	c.n++
	base := filepath.Join(c.dir, fmt.Sprintf("cycle-%d", c.n))
	if err := os.MkdirAll(base, 0o700); err != nil {
		return run, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(base)) }()
	if loc == "" {
		loc = filepath.Join(base, "blobs")
	} else {
		loc = strings.TrimSuffix(loc, "/") + fmt.Sprintf("/cycle-%d-%d", os.Getpid(), c.n)
	}
	clk := c.o.Clock
	blobs, err := location.Open(ctx, loc, location.Options{Clock: clk, S3: s3.Options{Endpoint: c.o.S3Endpoint, PathStyle: c.o.S3PathStyle}})
	if err != nil {
		return run, err
	}
	db, err := sqlite.Open(ctx, filepath.Join(base, "index.db"))
	if err != nil {
		return run, err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	cs, err := chunkstore.New(blobs, db.ChunkIndex(), chunkstore.Options{Clock: clk})
	if err != nil {
		return run, err
	}
	eng, err := blockdev.Open(ctx, filepath.Join(base, "engine"), cs, blobs,
		blockdev.Options{BlockSize: blockSize, Workers: c.o.Workers, Clock: clk, Catalogue: db})
	if err != nil {
		return run, err
	}
	defer func() { err = errors.Join(err, eng.Close()) }()
	r := &runner{opts: Options{Size: c.size}, clk: clk, image: c.image, probe: &probe{clk: clk}}
	vol, err := r.loadVolume(ctx, eng, "disk", 0, c.size)
	if err != nil {
		return run, err
	}
	defer func() { err = errors.Join(err, vol.Close()) }()

	run = CycleRun{Target: target, SizeBytes: c.size, DataBytes: c.data, Round: round, LoadBefore: loadAverage()}
	calls0 := blobCalls(blobs.Store)
	var cpu StepCPU
	timed := func(fn func() error) (float64, int64, error) {
		c.sync()
		c.rss.start()
		self0, _ := cpuSeconds()
		srv0 := procCPU(c.o.ServerPID)
		m0 := readMachine("")
		t0 := clk.Now()
		err := fn()
		secs := clk.Now().Sub(t0).Seconds()
		self1, _ := cpuSeconds()
		m1 := readMachine("")
		cpu = StepCPU{SelfSeconds: self1 - self0, ServerSeconds: procCPU(c.o.ServerPID) - srv0}
		if d := m1.cpuAll - m0.cpuAll; d > 0 {
			cpu.MachineBusy = float64(m1.cpuBusy-m0.cpuBusy) / float64(d)
		}
		return secs, c.rss.peak(), err
	}
	if run.FullSeconds, run.FullPeakRSS, err = timed(func() error { _, err := eng.Snapshot(ctx, "disk", "full"); return err }); err != nil {
		return run, err
	}
	run.Full = cpu
	undo, err := c.change(vol, round)
	if err != nil {
		return run, err
	}
	defer func() { err = errors.Join(err, undo()) }()
	sum, err := hashFile(ctx, c.image)
	if err != nil {
		return run, err
	}
	if run.IncSeconds, _, err = timed(func() error { _, err := eng.Snapshot(ctx, "disk", "inc"); return err }); err != nil {
		return run, err
	}
	out := filepath.Join(base, "restored.img")
	if run.RestoreSeconds, run.RestorePeakRSS, err = timed(func() error { return eng.RestoreToFile(ctx, "inc", out) }); err != nil {
		return run, err
	}
	run.Restore = cpu
	got, err := hashFile(ctx, out)
	if err != nil {
		return run, err
	}
	run.RestoreMatch = got == sum
	calls := blobCalls(blobs.Store)
	run.BlobPuts, run.BlobGets, run.BlobRangeGets, run.BlobLists = calls[0]-calls0[0], calls[1]-calls0[1], calls[2]-calls0[2], calls[3]-calls0[3]
	run.BlobReadBytes, run.BlobWrittenBytes = calls[4]-calls0[4], calls[5]-calls0[5]
	run.LoadAfter = loadAverage()
	c.logf("%s round %d, %d MiB disk: full %.2fs (peak RSS %.0f MiB; CPU self %.2fs, server %.2fs, machine %.0f%% busy), 1%% %.2fs, restore %.2fs (peak RSS %.0f MiB; CPU self %.2fs, server %.2fs, machine %.0f%% busy), match %v; blob puts %d, gets %d, ranged gets %d, lists %d; load %s → %s",
		target, round, c.size>>20, run.FullSeconds, mib(run.FullPeakRSS), run.Full.SelfSeconds, run.Full.ServerSeconds, 100*run.Full.MachineBusy,
		run.IncSeconds, run.RestoreSeconds, mib(run.RestorePeakRSS), run.Restore.SelfSeconds, run.Restore.ServerSeconds, 100*run.Restore.MachineBusy, run.RestoreMatch,
		run.BlobPuts, run.BlobGets, run.BlobRangeGets, run.BlobLists, run.LoadBefore, run.LoadAfter)
	if !run.RestoreMatch {
		return run, fmt.Errorf("%s: the restore differs from the image", target)
	}
	return run, nil
}

// blobCalls reads the metrics decorator's counters: puts, gets, ranged
// gets, lists, bytes read, bytes written.
func blobCalls(m *metrics.Store) [6]uint64 {
	r, w := m.Bytes()
	return [6]uint64{m.Calls(metrics.OpPut), m.Calls(metrics.OpGet), m.Calls(metrics.OpGetRange), m.Calls(metrics.OpList), r, w}
}

// procCPU returns the user+system CPU seconds of process pid (0 if pid is
// 0 or unreadable).
func procCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command's closing parenthesis: state is field 3,
	// utime 14 and stime 15, in clock ticks (100 per second on Linux).
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0
	}
	var ut, st float64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return (ut + st) / 100
}

// sync flushes every file system before a timed step, so that no step
// pays for the writeback of an earlier one.
func (c *cycler) sync() { unix.Sync() }

// change rewrites 1% of the disk in scattered 64 KiB writes of random data
// in the volume and the image; undo puts the image's old blocks back, so
// that every cycle starts from the same image.
func (c *cycler) change(vol *blockdev.Volume, round int) (undo func() error, err error) {
	nb := c.size / blockSize
	n := max(1, int(c.size/100/blockSize))
	rng := rand.New(rand.NewPCG(c.o.Seed, uint64(3+round)))
	data := rand.NewChaCha8(seedKey(c.o.Seed, uint64(4+round)))
	f, err := os.OpenFile(c.image, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	// The blocks' old contents wait in an undo file, not in memory: they
	// are 1% of the disk, which the restore's peak RSS would count.
	u, err := os.CreateTemp(c.dir, "undo-*")
	if err != nil {
		return nil, errors.Join(err, f.Close())
	}
	seen := map[int64]bool{}
	var order []int64 // block order[i]'s old contents are at i*blockSize in u
	undo = func() error {
		var errs []error
		old := make([]byte, blockSize)
		for i, b := range order {
			if _, err := u.ReadAt(old, int64(i)*blockSize); err != nil {
				errs = append(errs, fmt.Errorf("undo block %d: %w", b, err))
				continue
			}
			if _, err := f.WriteAt(old, b*blockSize); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, f.Sync(), f.Close(), u.Close(), os.Remove(u.Name()))
		return errors.Join(errs...)
	}
	buf := make([]byte, blockSize)
	for len(order) < n {
		b := rng.Int64N(nb)
		if seen[b] {
			continue
		}
		if _, err := f.ReadAt(buf, b*blockSize); err != nil {
			return nil, errors.Join(err, undo())
		}
		if _, err := u.WriteAt(buf, int64(len(order))*blockSize); err != nil {
			return nil, errors.Join(err, undo())
		}
		seen[b] = true
		order = append(order, b)
		data.Read(buf)
		if _, err := vol.WriteAt(buf, b*blockSize); err != nil {
			return nil, errors.Join(err, undo())
		}
		if _, err := f.WriteAt(buf, b*blockSize); err != nil {
			return nil, errors.Join(err, undo())
		}
	}
	if err := f.Sync(); err != nil {
		return nil, errors.Join(err, undo())
	}
	return undo, vol.Flush(context.Background())
}

// RunBlob runs cycles on a new local directory and on opts.Blob,
// alternating which goes first round by round.
func RunBlob(ctx context.Context, opts CycleOptions) (CycleResult, error) {
	if err := opts.defaults(); err != nil {
		return CycleResult{}, err
	}
	if opts.Blob == "" {
		return CycleResult{}, errors.New("bench: no blob store to compare with the local directory")
	}
	if opts.Size == 0 {
		opts.Size = 1 << 30
	}
	if opts.Data == 0 {
		opts.Data = opts.Size / 2
	}
	res := CycleResult{Mode: "blob", Cores: runtime.NumCPU(), Workers: opts.Workers, Rounds: opts.Rounds, Ratios: map[string]float64{}}
	c, err := newCycler(ctx, opts, opts.Size, opts.Data)
	if err != nil {
		return res, err
	}
	defer c.remove()
	targets := [][2]string{{"local", ""}, {"blob", opts.Blob}}
	for round := 1; round <= opts.Rounds; round++ {
		order := targets
		if round%2 == 0 {
			order = [][2]string{targets[1], targets[0]}
		}
		for _, t := range order {
			run, err := c.cycle(ctx, t[0], t[1], round)
			if err != nil {
				return res, fmt.Errorf("bench: %s round %d: %w", t[0], round, err)
			}
			res.Runs = append(res.Runs, run)
		}
	}
	res.ratios()
	return res, nil
}

// ratios fills Ratios from Runs: blob over local, per figure.
func (res *CycleResult) ratios() {
	figs := map[string]func(CycleRun) float64{
		"fullSnapshot":        func(r CycleRun) float64 { return r.FullSeconds },
		"incrementalSnapshot": func(r CycleRun) float64 { return r.IncSeconds },
		"restore":             func(r CycleRun) float64 { return r.RestoreSeconds },
	}
	for name, f := range figs {
		var loc, blob, per []float64
		byRound := map[int][2]float64{}
		for _, r := range res.Runs {
			v := byRound[r.Round]
			if r.Target == "local" {
				loc, v[0] = append(loc, f(r)), f(r)
			} else {
				blob, v[1] = append(blob, f(r)), f(r)
			}
			byRound[r.Round] = v
		}
		for _, v := range byRound {
			if v[0] > 0 && v[1] > 0 {
				per = append(per, v[1]/v[0])
			}
		}
		if m := median(loc); m > 0 {
			res.Ratios[name+"BlobOverLocal"] = median(blob) / m
		}
		res.Ratios[name+"BlobOverLocalPerRoundMedian"] = median(per)
	}
}

// RunSweep runs cycles on the local directory for each of opts.Sizes with
// the same share of data, round by round (each round visits every size,
// in an order that turns), and reports seconds and peak memory per GiB.
func RunSweep(ctx context.Context, opts CycleOptions) (CycleResult, error) {
	if err := opts.defaults(); err != nil {
		return CycleResult{}, err
	}
	if len(opts.Sizes) == 0 {
		return CycleResult{}, errors.New("bench: no sizes to sweep")
	}
	res := CycleResult{Mode: "sweep", Cores: runtime.NumCPU(), Workers: opts.Workers, Rounds: opts.Rounds}
	cs := make([]*cycler, len(opts.Sizes))
	defer func() {
		for _, c := range cs {
			if c != nil {
				c.remove()
			}
		}
	}()
	for i, size := range opts.Sizes {
		c, err := newCycler(ctx, opts, size, int64(float64(size)*opts.DataShare))
		if err != nil {
			return res, err
		}
		cs[i] = c
	}
	for round := 1; round <= opts.Rounds; round++ {
		for k := range cs {
			c := cs[(k+round-1)%len(cs)]
			run, err := c.cycle(ctx, "local", "", round)
			if err != nil {
				return res, fmt.Errorf("bench: %d MiB round %d: %w", c.size>>20, round, err)
			}
			res.Runs = append(res.Runs, run)
		}
	}
	return res, nil
}

// WriteCycleTable prints a CycleResult: each figure's runs and median,
// per target (RunBlob) or per size (RunSweep), per GiB of disk.
func WriteCycleTable(w io.Writer, res CycleResult) error {
	type key struct {
		target string
		size   int64
	}
	var keys []key
	runs := map[key][]CycleRun{}
	for _, r := range res.Runs {
		k := key{r.Target, r.SizeBytes}
		if runs[k] == nil {
			keys = append(keys, k)
		}
		runs[k] = append(runs[k], r)
	}
	slices.SortStableFunc(keys, func(a, b key) int { return int(a.size>>20 - b.size>>20) })
	fmt.Fprintf(w, "%s: %d cores, %d workers, %d rounds (medians; runs in brackets)\n", res.Mode, res.Cores, res.Workers, res.Rounds)
	fmt.Fprintf(w, "%-6s %8s %8s | %-26s %-26s %-26s | %9s %9s %11s %11s\n", "target", "disk", "data",
		"full snapshot s", "1% snapshot s", "restore s", "full s/GiB", "restore s/GiB", "full MiB RSS", "restore MiB RSS")
	for _, k := range keys {
		rs := runs[k]
		col := func(f func(CycleRun) float64) (string, float64) {
			var v []float64
			var s []string
			for _, r := range rs {
				v = append(v, f(r))
				s = append(s, fmt.Sprintf("%.2f", f(r)))
			}
			m := median(v)
			return fmt.Sprintf("%.2f [%s]", m, strings.Join(s, " ")), m
		}
		full, fm := col(func(r CycleRun) float64 { return r.FullSeconds })
		inc, _ := col(func(r CycleRun) float64 { return r.IncSeconds })
		rest, rm := col(func(r CycleRun) float64 { return r.RestoreSeconds })
		_, frss := col(func(r CycleRun) float64 { return mib(r.FullPeakRSS) })
		_, rrss := col(func(r CycleRun) float64 { return mib(r.RestorePeakRSS) })
		gib := float64(k.size) / (1 << 30)
		fmt.Fprintf(w, "%-6s %7dM %7dM | %-26s %-26s %-26s | %9.2f %9.2f %11.0f %11.0f\n", k.target, k.size>>20, rs[0].DataBytes>>20,
			full, inc, rest, fm/gib, rm/gib, frss, rrss)
	}
	var names []string
	for n := range res.Ratios {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "ratio %s: %.2f\n", n, res.Ratios[n])
	}
	return nil
}
