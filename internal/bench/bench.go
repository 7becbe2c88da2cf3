// Package bench is Coffer's whole-system benchmark, the library behind
// `coffer bench`.
//
// Run builds a reproducible mixed disk image (half zeros as holes, a third
// real-world compressible data read from system files, the rest seeded
// random data, interleaved in 1–8 MiB segments), loads it into a fresh
// block engine (local blob store, SQLite chunk index, chunk store, 64 KiB
// blocks, all cores) and measures, with wall-clock differences of a
// clock.Clock: the full snapshot; a second snapshot after 1% of the disk was
// rewritten in scattered 64 KiB writes; a full restore into a file, first
// with the repository read from the disk, then with it cached; the time
// to first read of an instant restore and until its hydration ends; the
// latency of steady 64 KiB writes while a snapshot runs; and the bytes the
// repository grew by at each backup. When restic, borg and qemu-img are on
// PATH it runs them on the same image file in the same run (two backups
// around the same change, then the same two restores; qemu-img convert is the
// plain-copy floor). Every restore is checked against the image's SHA-256.
//
// The Result marshals to one JSON object; WriteTable prints it side by
// side, with the targets marked PASS or MISS.
package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"coffer/internal/blobstore/local"
	"coffer/internal/blockdev"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
	"coffer/internal/store/sqlite"
)

// blockSize is the engine's block size and the size of every write the
// benchmark makes.
const blockSize = 64 << 10

// DefaultSize is the disk size of the benchmark when Options.Size is zero.
const DefaultSize = 4 << 30

// MinSize is the smallest disk Run accepts.
const MinSize = 8 << 20

// Options configure Run.
type Options struct {
	// Size of the disk image in bytes, rounded down to a multiple of 1 MiB
	// (default DefaultSize, at least MinSize).
	Size int64
	// Data is how many bytes of the image hold data, rounded down to a
	// multiple of 1 MiB; the rest are holes (default: half of Size). Two
	// thirds of the data are system files, one third random.
	Data int64
	// Dir is an existing, preferably empty directory on the file system
	// to measure; Run works inside it and deletes only the restored copies
	// (unless Keep). The caller removes Dir.
	Dir string
	// Seed makes the image and every random choice reproducible.
	Seed uint64
	// Peers runs restic and borg (when on PATH) on the same image. qemu-img
	// (the plain-copy floor) runs whenever it is on PATH.
	Peers bool
	// DropCaches drops the page cache before each timed run (needs a
	// writable /proc/sys/vm/drop_caches); otherwise every run is warm.
	// Every timed run starts after a sync either way.
	DropCaches bool
	// Settle is a pause after that sync (or drop) before each timed run:
	// the disk finishes what the sync started, and memory left idle may be
	// reclaimed, as between a backup and a restore made hours apart
	// (kernels with proactive reclaim, such as DAMON's, drop idle cached
	// pages within seconds). Zero: no pause.
	Settle time.Duration
	// Keep leaves the restored copies in Dir.
	Keep bool
	// Progress receives one line per step (nil: none).
	Progress io.Writer
	// Clock measures wall time (default clock.Real).
	Clock clock.Clock
	// Corpus are the directories of compressible data (default
	// DefaultCorpus).
	Corpus []string
	// Workers is the engine's parallelism (default GOMAXPROCS).
	Workers int
	// WriteInterval is the pace of the writer during the latency test and
	// of the reader during hydration (default 1 ms).
	WriteInterval time.Duration
	// BackupOnly runs only the backup steps: the full snapshot, its
	// compute limit and the many disks' backups (no peers, no restores),
	// to compare the backup path of two builds quickly.
	BackupOnly bool
	// RestoreRounds is how many times each full restore with its
	// repository read from the disk runs: Coffer's, its I/O floor, each
	// peer's and qemu-img's copy, round after round, the order rotated by
	// one tool each round. Each restore's figures are then those of its
	// median run (Restore.Runs), so that one slow or fast minute of the
	// disk moves neither side of a ratio alone (default
	// DefaultRestoreRounds; 1: one run each).
	RestoreRounds int
}

// DefaultRestoreRounds is Options.RestoreRounds when it is zero.
const DefaultRestoreRounds = 3

// Result holds every figure of a run. Seconds are wall-clock; MiB/s are of
// the disk size (the logical bytes a backup covers); stored bytes are the
// growth of the repository's space on disk (du), for Coffer the blob
// directory plus the SQLite index.
type Result struct {
	Version      int     `json:"version"`
	SizeBytes    int64   `json:"sizeBytes"`
	BlockSize    int64   `json:"blockSize"`
	Seed         uint64  `json:"seed"`
	Cores        int     `json:"cores"`
	Workers      int     `json:"workers"`
	CacheState   string  `json:"cacheState"`
	LoadStart    string  `json:"loadAverageStart"`
	LoadEnd      string  `json:"loadAverageEnd"`
	TotalSeconds float64 `json:"totalSeconds"`
	PeakRSSBytes int64   `json:"peakRSSBytes"`
	Dir          string  `json:"dir"`

	Image  Image  `json:"image"`
	Coffer Coffer `json:"coffer"`
	Restic *Peer  `json:"restic,omitempty"`
	Borg   *Peer  `json:"borg,omitempty"`
	Floor  *Floor `json:"qemuImgFloor,omitempty"`

	// Ratios: "...Speedup..." is peer seconds / Coffer seconds (higher is
	// better for Coffer); "...Stored..." is Coffer bytes / peer bytes;
	// restoreVsFloor is Coffer seconds / qemu-img seconds.
	Ratios  map[string]float64 `json:"ratios"`
	Targets []Target           `json:"targets"`
	// AllRestoresMatch is true when every restore that ran produced the
	// image's exact bytes.
	AllRestoresMatch bool `json:"allRestoresMatch"`
	// BackupOnly: only the backup steps ran (Options.BackupOnly).
	BackupOnly bool     `json:"backupOnly,omitempty"`
	Notes      []string `json:"notes,omitempty"`
}

// Image describes the generated disk image.
type Image struct {
	Path              string  `json:"path"`
	ZeroBytes         int64   `json:"zeroBytes"`
	CompressibleBytes int64   `json:"compressibleBytes"`
	RandomBytes       int64   `json:"randomBytes"`
	Segments          int     `json:"segments"`
	CorpusFiles       int     `json:"corpusFiles"`
	CorpusBytes       int64   `json:"corpusBytes"` // distinct corpus bytes used
	CorpusPasses      int     `json:"corpusPasses"`
	BuildSeconds      float64 `json:"buildSeconds"`
	SHA256            string  `json:"sha256"`
	ChangedBlocks     int     `json:"changedBlocks"`
	ChangedBytes      int64   `json:"changedBytes"`
	SHA256After       string  `json:"sha256AfterChange"`
}

// Backup is one timed backup.
type Backup struct {
	Seconds     float64 `json:"seconds"`
	MiBps       float64 `json:"mibPerSecond"`
	StoredBytes int64   `json:"storedBytes"`          // repository growth on disk
	RSSBytes    int64   `json:"rssBytes,omitempty"`   // peers: the process's peak RSS
	Error       string  `json:"error,omitempty"`      // peers: why it failed
	ChunkBytes  int64   `json:"chunkBytes,omitempty"` // Coffer: growth of stored chunk records
	// Coffer: what the snapshot did.
	BlocksRead   int64 `json:"blocksRead,omitempty"`
	BlocksStored int64 `json:"blocksStored,omitempty"`
	BlocksZero   int64 `json:"blocksZero,omitempty"`
	PagesWritten int64 `json:"pagesWritten,omitempty"`
	PagesReused  int64 `json:"pagesReused,omitempty"`
	// Coffer: where the time went.
	Internals *Internals `json:"internals,omitempty"`
}

// Restore is one timed full restore.
type Restore struct {
	Seconds float64 `json:"seconds"`
	MiBps   float64 `json:"mibPerSecond"`
	SHA256  string  `json:"sha256"`
	Match   bool    `json:"match"`
	Error   string  `json:"error,omitempty"`
	// Peers: the time to fsync the restored image after the restore
	// returned. Peers leave it in the page cache; Coffer's RestoreToFile
	// returns once it is durable, so Seconds + FsyncSeconds is the
	// like-for-like time.
	FsyncSeconds float64 `json:"fsyncSeconds,omitempty"`
	// Coffer: where the time went (the first run's).
	Internals *Internals `json:"internals,omitempty"`
	// Runs are every run of a restore with its repository read from the
	// disk (Options.RestoreRounds), in order; Seconds and FsyncSeconds
	// are then those of the median run, by their sum (of an even number,
	// the slower of the two middle ones).
	Runs []RestoreRun `json:"runs,omitempty"`
}

// RestoreRun is one run of a restore.
type RestoreRun struct {
	Seconds      float64 `json:"seconds"`
	FsyncSeconds float64 `json:"fsyncSeconds,omitempty"`
}

// useMedian sets r's Seconds, FsyncSeconds and MiBps to those of the
// median of its Runs (see Restore.Runs); size is the disk's bytes.
func (r *Restore) useMedian(size int64) {
	if len(r.Runs) == 0 {
		return
	}
	runs := slices.Clone(r.Runs)
	slices.SortStableFunc(runs, func(a, b RestoreRun) int {
		return cmp.Compare(a.Seconds+a.FsyncSeconds, b.Seconds+b.FsyncSeconds)
	})
	m := runs[len(runs)/2]
	r.Seconds, r.FsyncSeconds = m.Seconds, m.FsyncSeconds
	if m.Seconds > 0 {
		r.MiBps = float64(size) / (1 << 20) / m.Seconds
	}
}

// Coffer holds Coffer's figures.
type Coffer struct {
	Full        Backup `json:"fullSnapshot"`
	Incremental Backup `json:"incrementalSnapshot"`
	RepoBytes   int64  `json:"repositoryBytes"` // du of blobs + index after both backups
	VolumeBytes int64  `json:"volumeBytes"`     // du of the live volume's data file
	Chunks      int64  `json:"chunks"`
	Packs       int64  `json:"packs"`
	// Restore read the repository from the disk; RestoreCached ran right
	// after it, with the repository in the page cache (for Coffer's
	// direct-I/O packs, only the index).
	Restore       Restore      `json:"restore"`
	RestoreCached Restore      `json:"restoreRepositoryCached"`
	Instant       Instant      `json:"instantRestore"`
	Latency       WriteLatency `json:"writeLatencyDuringSnapshot"`
	// FullComputeLimit is what the full snapshot's hashing and
	// compression alone take on all cores.
	FullComputeLimit *ComputeLimit `json:"fullSnapshotComputeLimit,omitempty"`
	// RestoreIOFloor is the reads and writes of Restore replayed alone.
	RestoreIOFloor *IOFloor   `json:"restoreIOFloor,omitempty"`
	Many           *ManyDisks `json:"manyDisks,omitempty"`
}

// Instant is the instant restore (RestoreVolume) of the second snapshot.
type Instant struct {
	OpenMs           float64 `json:"openMs"`      // RestoreVolume returned
	FirstReadMs      float64 `json:"firstReadMs"` // from the RestoreVolume call to the first non-zero block read
	FirstReadOffset  int64   `json:"firstReadOffset"`
	RandomReadMs     float64 `json:"randomReadMs"` // one read of a random data block, alone
	RandomReadOffset int64   `json:"randomReadOffset"`
	ReadsMatch       bool    `json:"readsMatch"`
	HydratedSeconds  float64 `json:"hydratedSeconds"` // from the call until hydration ended
	HydrationMiBps   float64 `json:"hydrationMiBPerSecond"`
	SHA256           string  `json:"sha256"`
	Match            bool    `json:"match"`
	// Reads of random blocks every WriteInterval while the volume
	// hydrates (after the two reads above), each checked against the
	// image; a read that differed also clears ReadsMatch.
	HydrationReads     int     `json:"hydrationReads"`
	HydrationReadsBad  int     `json:"hydrationReadsDiffering"`
	HydrationReadP50Ms float64 `json:"hydrationReadP50Ms"`
	HydrationReadP99Ms float64 `json:"hydrationReadP99Ms"`
	HydrationReadMaxMs float64 `json:"hydrationReadMaxMs"`
	// From the RestoreVolume call until hydration ended.
	Internals *Internals `json:"internals,omitempty"`
}

// WriteLatency is the latency of steady 64 KiB writes, alone and while a
// snapshot of a volume with about 10% of its blocks dirty runs.
type WriteLatency struct {
	IntervalMs      float64 `json:"intervalMs"`
	DirtyBytes      int64   `json:"dirtyBytes"`
	SnapshotSeconds float64 `json:"snapshotSeconds"`
	CBWBlocks       int64   `json:"copyBeforeWriteBlocks"`
	Writes          int     `json:"writes"`
	P50Ms           float64 `json:"p50Ms"`
	P99Ms           float64 `json:"p99Ms"`
	MaxMs           float64 `json:"maxMs"`
	BaselineWrites  int     `json:"baselineWrites"`
	BaselineP50Ms   float64 `json:"baselineP50Ms"`
	BaselineP99Ms   float64 `json:"baselineP99Ms"`
	BaselineMaxMs   float64 `json:"baselineMaxMs"`
}

// Peer holds a peer tool's figures.
type Peer struct {
	Version  string `json:"version"`
	Settings string `json:"settings"`
	Backup   Backup `json:"backup"`
	Backup2  Backup `json:"secondBackup"`
	// Restore read the repository from the disk; RestoreCached ran right
	// after it, with the repository in the page cache.
	Restore       Restore `json:"restore"`
	RestoreCached Restore `json:"restoreRepositoryCached"`
	Error         string  `json:"error,omitempty"`
}

// Floor is the plain-copy floor: qemu-img convert -O raw of the image,
// run twice like the restores (coldThenCached): first with the image
// evicted from the page cache, so that it reads its source from the disk
// as Coffer's restore reads its packs (the like-for-like run, which the
// target judges), then at once again with the image in the page cache.
type Floor struct {
	Version string  `json:"version"`
	Restore Restore `json:"copy"` // the image read from the disk
	// FsyncSeconds is the time to fsync qemu-img's output after convert
	// returned: qemu-img does not sync, Coffer's RestoreToFile does, so
	// Restore.Seconds + FsyncSeconds is the like-for-like floor.
	FsyncSeconds float64 `json:"fsyncSeconds,omitempty"`
	// SyncedSeconds is Restore.Seconds + FsyncSeconds.
	SyncedSeconds float64 `json:"copyPlusFsyncSeconds,omitempty"`
	// Cached is the second run, with the image in the page cache (its
	// FsyncSeconds set as for the peers' restores).
	Cached Restore `json:"copySourceCached"`
}

// runner is the state of one Run.
type runner struct {
	opts  Options
	clk   clock.Clock
	dir   string
	image string
	res   *Result
	info  imageInfo

	stack // Coffer's, in DIR/coffer
	vol   *blockdev.Volume

	peers []peer
	peerR map[string]*Peer
	probe *probe
	// noFloors leaves the restores' I/O floors out (RestoreOptions).
	noFloors bool
}

// Run runs the whole benchmark. A peer that fails is reported in the
// Result and skipped from then on; a Coffer failure or a restore whose bytes
// differ from the image is an error (the Result so far is returned too).
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.Size == 0 {
		opts.Size = DefaultSize
	}
	opts.Size = opts.Size &^ (1<<20 - 1)
	if opts.Size < MinSize {
		return Result{}, fmt.Errorf("bench: size must be at least %d MiB", MinSize>>20)
	}
	if opts.Data != 0 && (opts.Data < 1<<20 || opts.Data > opts.Size) {
		return Result{}, errors.New("bench: the data must be at least 1 MiB and fit the disk")
	}
	opts.Data = opts.Data &^ (1<<20 - 1)
	if opts.Dir == "" {
		return Result{}, errors.New("bench: no directory")
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Corpus == nil {
		opts.Corpus = DefaultCorpus
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.WriteInterval <= 0 {
		opts.WriteInterval = time.Millisecond
	}
	if opts.RestoreRounds <= 0 {
		opts.RestoreRounds = DefaultRestoreRounds
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return Result{}, fmt.Errorf("bench: %w", err)
	}
	if opts.DropCaches {
		if err := canDropCaches(); err != nil {
			return Result{}, fmt.Errorf("bench: --drop-caches: %w", err)
		}
	}
	r := &runner{opts: opts, clk: opts.Clock, dir: dir, image: filepath.Join(dir, "disk.img"), peerR: map[string]*Peer{},
		probe: &probe{clk: opts.Clock, disk: blockDevice(dir)}}
	r.res = &Result{Version: 2, SizeBytes: opts.Size, BlockSize: blockSize, Seed: opts.Seed, Cores: runtime.NumCPU(),
		Workers: opts.Workers, Dir: dir, LoadStart: loadAverage(), Ratios: map[string]float64{}, BackupOnly: opts.BackupOnly}
	if opts.BackupOnly {
		r.opts.Peers = false
		r.res.Notes = append(r.res.Notes, "backup steps only (--backup-only): no peers, no restores")
	}
	r.res.CacheState = "warm (no cache drop; every run reads what the previous step left in the page cache, except that each tool's first full restore reads its repository from the disk)"
	if opts.DropCaches {
		r.res.CacheState = "dropped (sync; echo 3 > /proc/sys/vm/drop_caches before each timed run)"
	}
	if opts.Settle > 0 {
		r.res.CacheState += fmt.Sprintf("; then a pause of %s before each timed run", opts.Settle)
	}
	start := r.clk.Now()
	err = r.run(ctx)
	if cerr := r.closeStack(); err == nil {
		err = cerr
	}
	r.res.TotalSeconds = r.clk.Now().Sub(start).Seconds()
	r.res.LoadEnd = loadAverage()
	r.res.PeakRSSBytes = r.probe.rss.overallPeak()
	r.res.evaluate()
	if err != nil {
		return *r.res, fmt.Errorf("bench: %w", err)
	}
	if !r.res.AllRestoresMatch {
		return *r.res, errors.New("bench: a restore did not reproduce the image (see the sha256 figures)")
	}
	return *r.res, nil
}

func (r *runner) logf(format string, args ...any) {
	if r.opts.Progress != nil {
		fmt.Fprintf(r.opts.Progress, "bench: "+format+"\n", args...)
	}
}

// beforeTimed prepares a timed step: it syncs every file system, so that
// no step pays for the writeback of an earlier one (a peer's repository
// written just before Coffer's restore, say), drops the page cache when
// asked to, and waits Settle.
func (r *runner) beforeTimed(ctx context.Context) error {
	if r.opts.DropCaches {
		if err := dropCaches(); err != nil {
			return err
		}
	} else {
		unix.Sync()
	}
	return r.settle(ctx)
}

// settle waits Settle, if set, so that the disk is done with what the
// last step left it before the next timed step.
func (r *runner) settle(ctx context.Context) error {
	if r.opts.Settle <= 0 {
		return nil
	}
	return pause(ctx, r.clk, r.opts.Settle)
}

// pause waits d on clk, or until ctx ends.
func pause(ctx context.Context, clk clock.Clock, d time.Duration) error {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// since returns the seconds elapsed since t0.
func (r *runner) since(t0 time.Time) float64 { return r.clk.Now().Sub(t0).Seconds() }

func (r *runner) mibps(secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(r.opts.Size) / (1 << 20) / secs
}

func (r *runner) run(ctx context.Context) error {
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"build image", r.buildImage},
		{"coffer full snapshot", r.cofferFull},
		{"compute limit of a full snapshot", r.computeLimit},
		{"peers' first backups", r.peersBackup(1)},
		{"rewrite 1% of the disk", r.change},
		{"coffer 1%-change snapshot", r.cofferIncremental},
		{"peers' second backups", r.peersBackup(2)},
		{"full restores", r.restores},
		{"instant restore", r.instant},
		{"write latency during a snapshot", r.latency},
		{fmt.Sprintf("%d disks at once", manyDisks), r.many},
	}
	if r.opts.BackupOnly {
		steps = []struct {
			name string
			fn   func(context.Context) error
		}{
			steps[0], steps[1], steps[2],
			{fmt.Sprintf("%d disks backed up at once", manyDisks), r.many},
		}
	}
	for i, s := range steps {
		r.logf("[%d/%d] %s", i+1, len(steps), s.name)
		// Label the step's goroutines (and those they start) so that a CPU
		// profile of the run can be cut by step: pprof -tagfocus step=….
		var err error
		pprof.Do(ctx, pprof.Labels("step", s.name), func(ctx context.Context) { err = s.fn(ctx) })
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

func (r *runner) buildImage(ctx context.Context) error {
	t0 := r.clk.Now()
	info, err := buildImage(ctx, r.image, r.opts.Size, r.opts.Data, r.opts.Seed, r.opts.Corpus)
	if err != nil {
		return err
	}
	r.info = info
	im := &r.res.Image
	im.Path = r.image
	im.ZeroBytes, im.CompressibleBytes, im.RandomBytes = info.bytes[kindZero], info.bytes[kindCorpus], info.bytes[kindRandom]
	im.Segments = len(info.segs)
	im.CorpusFiles, im.CorpusBytes, im.CorpusPasses = info.files, info.first, info.pass+1
	im.SHA256 = info.sha
	im.BuildSeconds = r.since(t0)
	if info.first == 0 {
		r.res.Notes = append(r.res.Notes, "no readable corpus files: compressible data is seeded pseudo-text")
	}
	r.logf("image %s: %d MiB (%d MiB zeros, %d MiB system files from %d files, %d MiB random) in %d segments, sha256 %.16s…, %.1fs",
		r.image, r.opts.Size>>20, im.ZeroBytes>>20, im.CompressibleBytes>>20, im.CorpusFiles, im.RandomBytes>>20, im.Segments, im.SHA256, im.BuildSeconds)
	return nil
}

// stack is one Coffer stack: a local blob store, a SQLite chunk index,
// a chunk store and a block engine, all in one directory, with the blob
// store and the index reporting to the run's probe.
type stack struct {
	blobsDir, dbPath string
	blobs            *local.Store // unprobed
	db               *sqlite.Store
	cs               *chunkstore.Store
	eng              *blockdev.Engine
}

// openStack opens a fresh Coffer stack in base.
func (r *runner) openStack(ctx context.Context, base string) (stack, error) {
	st := stack{blobsDir: filepath.Join(base, "blobs"), dbPath: filepath.Join(base, "index.db")}
	var err error
	if st.blobs, err = local.Open(st.blobsDir); err != nil {
		return st, err
	}
	if st.db, err = sqlite.Open(ctx, st.dbPath); err != nil {
		return st, err
	}
	blobs := probedBlobs{st.blobs, r.probe}
	index := probedIndex{st.db.ChunkIndex(), r.probe}
	if st.cs, err = chunkstore.New(blobs, index, chunkstore.Options{Clock: r.clk}); err == nil {
		st.eng, err = blockdev.Open(ctx, filepath.Join(base, "engine"), st.cs, blobs,
			blockdev.Options{BlockSize: blockSize, Workers: r.opts.Workers, Clock: r.clk, Catalogue: st.db})
	}
	if err != nil {
		return st, errors.Join(err, st.close())
	}
	return st, nil
}

// close closes the engine and the index; volumes are the caller's.
func (st stack) close() error {
	var errs []error
	if st.eng != nil {
		errs = append(errs, st.eng.Close())
	}
	if st.db != nil {
		errs = append(errs, st.db.Close())
	}
	return errors.Join(errs...)
}

// repoFiles are the files a restore reads: the blob directory and the
// SQLite index.
func (st stack) repoFiles() []string {
	return []string{st.blobsDir, st.dbPath, st.dbPath + "-wal", st.dbPath + "-shm"}
}

func (r *runner) closeStack() error {
	var errs []error
	if r.vol != nil {
		errs = append(errs, r.vol.Close())
	}
	return errors.Join(append(errs, r.stack.close())...)
}

// repoBytes is the space Coffer's repository takes: packs and catalogue in
// the blob directory, and the SQLite chunk index.
func (r *runner) repoBytes() (int64, error) {
	return diskUsageOf(r.repoFiles()...)
}

func (r *runner) chunkBytes(ctx context.Context) (int64, error) {
	st, err := r.cs.Stats(ctx)
	if err != nil {
		return 0, err
	}
	r.res.Coffer.Chunks, r.res.Coffer.Packs = st.Chunks, st.Packs
	return st.StoredBytes + st.PendingBytes, nil
}

// snapshot times one Coffer snapshot and records its figures.
func (r *runner) snapshot(ctx context.Context, id string, out *Backup) error {
	repo0, err := r.repoBytes()
	if err != nil {
		return err
	}
	chunks0, err := r.chunkBytes(ctx)
	if err != nil {
		return err
	}
	if err := r.beforeTimed(ctx); err != nil {
		return err
	}
	m := r.probe.start()
	t0 := r.clk.Now()
	var si blockdev.SnapshotInfo
	pprof.Do(ctx, pprof.Labels("snapshot", id), func(ctx context.Context) {
		trace.WithRegion(ctx, "snapshot "+id, func() { si, err = r.eng.Snapshot(ctx, r.vol.ID(), id) })
	})
	if err != nil {
		return err
	}
	out.Seconds = r.since(t0)
	in := m.stop(r.res.Cores)
	out.Internals = &in
	out.MiBps = r.mibps(out.Seconds)
	repo1, err := r.repoBytes()
	if err != nil {
		return err
	}
	chunks1, err := r.chunkBytes(ctx)
	if err != nil {
		return err
	}
	out.StoredBytes, out.ChunkBytes = repo1-repo0, chunks1-chunks0
	st := si.Stats
	out.BlocksRead, out.BlocksStored, out.BlocksZero = st.BlocksRead, st.BlocksStored, st.BlocksZero
	out.PagesWritten, out.PagesReused = st.PagesWritten, st.PagesReused
	r.res.Coffer.RepoBytes = repo1
	r.logf("coffer snapshot %s: %.2fs (%.0f MiB/s), %d blocks read, %d stored, repository +%.1f MiB (chunks +%.1f MiB); CPU %.2fs, %.0f%% of %d cores, %d context switches (%d preempted); %s",
		id, out.Seconds, out.MiBps, st.BlocksRead, st.BlocksStored, mib(out.StoredBytes), mib(out.ChunkBytes), in.CPUSeconds, 100*in.CPUUtilization, r.res.Cores,
		in.ContextSwitches, in.InvoluntaryContextSwitches, in.Machine)
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func (r *runner) cofferFull(ctx context.Context) error {
	var err error
	if r.stack, err = r.openStack(ctx, filepath.Join(r.dir, "coffer")); err != nil {
		return err
	}
	if r.vol, err = r.loadVolume(ctx, r.eng, "disk", 0, r.opts.Size); err != nil {
		return err
	}
	if err := r.snapshot(ctx, "s1", &r.res.Coffer.Full); err != nil {
		return err
	}
	r.res.Coffer.VolumeBytes, err = diskUsage(filepath.Join(r.dir, "coffer", "engine", "volumes", "disk", "data"))
	return err
}

// loadVolume creates volume id in eng from the bytes [off, off+size) of the
// image, writing its data extents (untimed: this is "the disk").
func (r *runner) loadVolume(ctx context.Context, eng *blockdev.Engine, id string, off, size int64) (*blockdev.Volume, error) {
	vol, err := eng.CreateVolume(ctx, id, size)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(r.image)
	if err != nil {
		return nil, errors.Join(err, vol.Close())
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	err = func() error {
		for p := off; p < off+size; {
			data, hole, err := nextData(f, p, off+size)
			if err != nil {
				return fmt.Errorf("read image: %w", err)
			}
			for q := data; q < hole; {
				n := min(int64(len(buf)), hole-q)
				if _, err := f.ReadAt(buf[:n], q); err != nil {
					return fmt.Errorf("read image: %w", err)
				}
				if _, err := vol.WriteAt(buf[:n], q-off); err != nil {
					return fmt.Errorf("load volume %s: %w", id, err)
				}
				q += n
			}
			p = hole
		}
		return vol.Flush(ctx)
	}()
	if err != nil {
		return nil, errors.Join(err, vol.Close())
	}
	return vol, nil
}

// peersBackup returns the step that runs backup n of each peer.
func (r *runner) peersBackup(n int) func(context.Context) error {
	return func(ctx context.Context) error {
		if n == 1 {
			r.setupPeers(ctx)
		}
		for _, p := range r.peers {
			pr := r.peerR[p.name()]
			if pr.Error != "" {
				continue
			}
			out := &pr.Backup
			if n == 2 {
				out = &pr.Backup2
			}
			before, err := diskUsage(p.repoDir())
			if err != nil {
				return err
			}
			secs, rss, err := p.backup(ctx, fmt.Sprintf("b%d", n))
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				out.Error, pr.Error = err.Error(), err.Error()
				r.logf("%s backup %d failed: %v", p.name(), n, err)
				continue
			}
			after, err := diskUsage(p.repoDir())
			if err != nil {
				return err
			}
			out.Seconds, out.MiBps, out.RSSBytes, out.StoredBytes = secs, r.mibps(secs), rss, after-before
			r.logf("%s backup %d: %.2fs (%.0f MiB/s), repository +%.1f MiB, RSS %.0f MiB", p.name(), n, secs, out.MiBps, mib(out.StoredBytes), mib(rss))
		}
		return nil
	}
}

func (r *runner) setupPeers(ctx context.Context) {
	if !r.opts.Peers {
		r.res.Notes = append(r.res.Notes, "peers not run (--no-peers)")
		return
	}
	var cands []peer
	if p := r.newRestic(); p != nil {
		cands = append(cands, p)
		r.res.Restic = &Peer{}
		r.peerR["restic"] = r.res.Restic
	} else {
		r.res.Notes = append(r.res.Notes, "restic is not on PATH")
	}
	if p := r.newBorg(); p != nil {
		cands = append(cands, p)
		r.res.Borg = &Peer{}
		r.peerR["borg"] = r.res.Borg
	} else {
		r.res.Notes = append(r.res.Notes, "borg is not on PATH")
	}
	for _, p := range cands {
		pr := r.peerR[p.name()]
		if err := p.setup(ctx, pr); err != nil {
			pr.Error = err.Error()
			r.logf("%s setup failed: %v", p.name(), err)
		}
		r.peers = append(r.peers, p)
	}
}

// change rewrites 1% of the disk in scattered 64 KiB writes of random data,
// at the same offsets in the volume and in the image file.
func (r *runner) change(ctx context.Context) error {
	nb := r.opts.Size / blockSize
	n := max(1, int(r.opts.Size/100/blockSize))
	rng := rand.New(rand.NewPCG(r.opts.Seed, 3))
	data := rand.NewChaCha8(seedKey(r.opts.Seed, 4))
	seen := map[int64]bool{}
	f, err := os.OpenFile(r.image, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, blockSize)
	for len(seen) < n {
		b := rng.Int64N(nb)
		if seen[b] {
			continue
		}
		seen[b] = true
		data.Read(buf)
		if _, err := r.vol.WriteAt(buf, b*blockSize); err != nil {
			return err
		}
		if _, err := f.WriteAt(buf, b*blockSize); err != nil {
			return fmt.Errorf("change image: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("change image: %w", err)
	}
	if err := r.vol.Flush(ctx); err != nil {
		return err
	}
	r.res.Image.ChangedBlocks, r.res.Image.ChangedBytes = n, int64(n)*blockSize
	sum, err := hashFile(ctx, r.image)
	if err != nil {
		return err
	}
	r.res.Image.SHA256After = sum
	r.logf("rewrote %d blocks (%.1f MiB); image sha256 %.16s…", n, mib(int64(n)*blockSize), sum)
	return nil
}

func (r *runner) cofferIncremental(ctx context.Context) error {
	return r.snapshot(ctx, "s2", &r.res.Coffer.Incremental)
}

// checkRestored hashes a restored file, compares it with the changed image
// and removes it unless Keep.
func (r *runner) checkRestored(ctx context.Context, path, remove string, out *Restore) error {
	sum, err := hashFile(ctx, path)
	if err != nil {
		return err
	}
	out.SHA256, out.Match = sum, sum == r.res.Image.SHA256After
	if !r.opts.Keep {
		if err := os.RemoveAll(remove); err != nil {
			return fmt.Errorf("remove restored copy: %w", err)
		}
	}
	return nil
}

// restores times a full restore of the second backup by each tool, twice:
// first with the tool's repository read from the disk (after a sync, its
// files are evicted from the page cache, as for a restore made long after
// the backup), then at once again with the repository in the page cache
// (what the first restore read stays there). Coffer's packs bypass the
// page cache (docs/design.md, "Direct I/O"), so only the first run
// compares like with like; the targets judge it. Each peer's restored
// image is also fsynced, timed apart: RestoreToFile returns once the image
// is durable, the peers do not. qemu-img convert of the image, as it is in
// the page cache, is the plain-copy floor. The runs from disk, and Coffer's
// I/O floor, are then repeated (repeatRestores) and their medians kept.
func (r *runner) restores(ctx context.Context) error {
	// Coffer. The first restore's reads and writes are recorded for the
	// I/O floor.
	var reads []rangeRead
	var writes []extent
	coffer := func(out *Restore, state, suffix string) error {
		first := suffix == ""
		rs, ws, err := r.cofferRestore(ctx, out, state, suffix, first)
		if first {
			reads, writes = rs, ws
		}
		return err
	}
	if err := r.coldThenCached(ctx, "repository", r.repoFiles(), &r.res.Coffer.Restore, &r.res.Coffer.RestoreCached, coffer); err != nil {
		return err
	}
	if err := r.ioFloor(ctx, reads, writes); err != nil {
		return err
	}

	// Peers.
	for _, p := range r.peers {
		pr := r.peerR[p.name()]
		if pr.Error != "" {
			continue
		}
		restore := func(out *Restore, state, suffix string) error {
			return r.peerRestore(ctx, p, pr, out, state, suffix)
		}
		if err := r.coldThenCached(ctx, "repository", p.repoFiles(), &pr.Restore, &pr.RestoreCached, restore); err != nil {
			return err
		}
	}

	if err := r.qemuCopy(ctx); err != nil {
		return err
	}
	return r.repeatRestores(ctx, reads, writes)
}

// peerRestore times peer p's restore into DIR/restore-<peer><suffix> and
// an fsync of the restored image, checks it against the image and records
// its figures in out. A failure of the peer is recorded in out and pr
// (nil is returned); state names the run in the progress lines.
func (r *runner) peerRestore(ctx context.Context, p peer, pr *Peer, out *Restore, state, suffix string) error {
	target := filepath.Join(r.dir, "restore-"+p.name()+suffix)
	if err := os.MkdirAll(target, 0o700); err != nil {
		return err
	}
	secs, restored, err := p.restore(ctx, target)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		out.Error, pr.Error = err.Error(), err.Error()
		r.logf("%s restore, %s, failed: %v", p.name(), state, err)
		return nil
	}
	out.Seconds, out.MiBps = secs, r.mibps(secs)
	t0 := r.clk.Now()
	if err := fsyncFile(restored); err != nil {
		return err
	}
	out.FsyncSeconds = r.since(t0)
	if err := r.checkRestored(ctx, restored, target, out); err != nil {
		out.Error = err.Error()
	}
	r.logf("%s restore, %s: %.2fs (%.0f MiB/s), +fsync %.2fs, sha256 match %v", p.name(), state, secs, out.MiBps, out.FsyncSeconds, out.Match)
	return nil
}

// repeatRestores runs rounds 2 to RestoreRounds of the restores with their
// repositories read from the disk: Coffer's, its I/O floor (reads and
// writes, those of its first restore), each peer's and qemu-img's copy,
// each after beforeTimed and the eviction of what it reads from the page
// cache, exactly as their first runs. Each round starts one tool later
// than the one before, so that no tool always runs first, or always after
// the same one. Every run is added to its Restore's Runs (the I/O floor's
// to its Rounds), and each figure is then its median run's.
func (r *runner) repeatRestores(ctx context.Context, reads []rangeRead, writes []extent) error {
	c := &r.res.Coffer
	type tool struct {
		name string
		run  func(round int) error
	}
	tools := []tool{{"coffer", func(round int) error {
		var out Restore
		if err := r.coldRun(ctx, r.repoFiles(), func() error {
			_, _, err := r.cofferRestore(ctx, &out, fmt.Sprintf("round %d, repository from disk", round), roundSuffix(round), false)
			return err
		}); err != nil {
			return err
		}
		if err := removeRound(filepath.Join(r.dir, "restore-coffer"+roundSuffix(round)+".img")); err != nil {
			return err
		}
		if !out.Match {
			return errors.New("the restore did not reproduce the image")
		}
		c.Restore.Runs = append(c.Restore.Runs, RestoreRun{Seconds: out.Seconds})
		return nil
	}}}
	if f := c.RestoreIOFloor; f != nil {
		f.Rounds = []float64{f.Seconds}
		tools = append(tools, tool{"I/O floor", func(int) error {
			fl, err := r.replayFloor(ctx, "the restore", r.blobs, r.repoFiles(), reads, writes, r.opts.Size)
			if err != nil {
				return err
			}
			f.Rounds = append(f.Rounds, fl.Seconds)
			return nil
		}})
	}
	for _, p := range r.peers {
		pr := r.peerR[p.name()]
		tools = append(tools, tool{p.name(), func(round int) error {
			if pr.Error != "" || pr.Restore.Error != "" {
				return nil // failed before: not run again
			}
			var out Restore
			if err := r.coldRun(ctx, p.repoFiles(), func() error {
				return r.peerRestore(ctx, p, pr, &out, fmt.Sprintf("round %d, repository from disk", round), roundSuffix(round))
			}); err != nil || out.Error != "" {
				return err
			}
			if err := removeRound(filepath.Join(r.dir, "restore-"+p.name()+roundSuffix(round))); err != nil {
				return err
			}
			if !out.Match {
				pr.Restore.Match = false // and AllRestoresMatch with it
			}
			pr.Restore.Runs = append(pr.Restore.Runs, RestoreRun{Seconds: out.Seconds, FsyncSeconds: out.FsyncSeconds})
			return nil
		}})
	}
	if fl, q := r.res.Floor, r.lookTool("qemu-img"); fl != nil && q != nil {
		tools = append(tools, tool{"qemu-img", func(round int) error {
			if fl.Restore.Error != "" {
				return nil
			}
			var out Restore
			if err := r.coldRun(ctx, []string{r.image}, func() error {
				return r.qemuConvert(ctx, q, &out, fmt.Sprintf("round %d, image from disk", round), roundSuffix(round))
			}); err != nil || out.Error != "" {
				return err
			}
			if err := removeRound(filepath.Join(r.dir, "restore-qemu"+roundSuffix(round)+".img")); err != nil {
				return err
			}
			if !out.Match {
				fl.Restore.Match = false
			}
			fl.Restore.Runs = append(fl.Restore.Runs, RestoreRun{Seconds: out.Seconds, FsyncSeconds: out.FsyncSeconds})
			return nil
		}})
	}
	for round := 2; round <= r.opts.RestoreRounds; round++ {
		for i := range tools {
			t := tools[(i+round-1)%len(tools)]
			if err := t.run(round); err != nil {
				return fmt.Errorf("round %d, %s: %w", round, t.name, err)
			}
		}
	}
	// The medians.
	c.Restore.useMedian(r.opts.Size)
	if f := c.RestoreIOFloor; f != nil && len(f.Rounds) > 1 {
		f.Seconds = median(f.Rounds)
	}
	for _, p := range r.peers {
		r.peerR[p.name()].Restore.useMedian(r.opts.Size)
	}
	if fl := r.res.Floor; fl != nil && fl.Restore.Error == "" {
		fl.Restore.useMedian(r.opts.Size)
		fl.FsyncSeconds = fl.Restore.FsyncSeconds
		fl.SyncedSeconds = fl.Restore.Seconds + fl.FsyncSeconds
	}
	if r.opts.RestoreRounds > 1 {
		r.logf("restores from disk, medians of %d rounds: %s", r.opts.RestoreRounds, r.res.restoreMedians())
	}
	return nil
}

// roundSuffix names the restored copies of round 2 and later.
func roundSuffix(round int) string { return fmt.Sprintf("-round%d", round) }

// removeRound removes the restored copy of a later round, which Keep does
// not keep (the first round's copies are the ones kept).
func removeRound(path string) error {
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("remove restored copy: %w", err)
	}
	return nil
}

// restoreMedians lists each restore's median and runs for the progress
// lines.
func (res *Result) restoreMedians() string {
	var b strings.Builder
	one := func(name string, r Restore) {
		if len(r.Runs) == 0 {
			return
		}
		fmt.Fprintf(&b, "%s %.2fs (", name, r.Seconds+r.FsyncSeconds)
		for i, run := range r.Runs {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%.2f", run.Seconds+run.FsyncSeconds)
		}
		b.WriteString("); ")
	}
	one("coffer", res.Coffer.Restore)
	if f := res.Coffer.RestoreIOFloor; f != nil && len(f.Rounds) > 0 {
		fmt.Fprintf(&b, "its I/O floor %.2fs (%s); ", f.Seconds, floatList(f.Rounds))
	}
	if res.Restic != nil {
		one("restic + fsync", res.Restic.Restore)
	}
	if res.Borg != nil {
		one("borg + fsync", res.Borg.Restore)
	}
	if res.Floor != nil {
		one("qemu-img + fsync", res.Floor.Restore)
	}
	if m := res.Coffer.Many; m != nil && m.One != nil {
		one(fmt.Sprintf("%d restores at once", m.AtOnce), m.Restore)
		one("the one beside them", *m.One)
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// floatList formats seconds as "1.23, 4.56".
func floatList(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, ", ")
}

// cofferRestore times Coffer's full restore of the second snapshot into
// DIR/restore-coffer<suffix>.img, checks it against the image and records
// its figures in out. With trace it returns the ranged reads the restore
// made and the runs of blocks it wrote, for the I/O floor.
func (r *runner) cofferRestore(ctx context.Context, out *Restore, state, suffix string, trace bool) (reads []rangeRead, writes []extent, err error) {
	path := filepath.Join(r.dir, "restore-coffer"+suffix+".img")
	if trace {
		r.probe.trace.start()
	}
	m := r.probe.start()
	t0 := r.clk.Now()
	// Labelled so that a CPU profile can be cut to the restore: pprof
	// -tagfocus restore=one.
	pprof.Do(ctx, pprof.Labels("restore", "one"), func(ctx context.Context) { err = r.eng.RestoreToFile(ctx, "s2", path) })
	out.Seconds = r.since(t0)
	if trace {
		reads = r.probe.trace.stop()
	}
	if err != nil {
		return nil, nil, err
	}
	in := m.stop(r.res.Cores)
	out.Internals = &in
	out.MiBps = r.mibps(out.Seconds)
	if trace {
		if writes, err = dataRuns(path, floorWriteMax); err != nil {
			return nil, nil, err
		}
	}
	if err := r.checkRestored(ctx, path, path, out); err != nil {
		return nil, nil, err
	}
	r.logf("coffer restore, %s: %.2fs (%.0f MiB/s), sha256 match %v; CPU %.2fs, %.0f%% of %d cores; %s", state, out.Seconds, out.MiBps, out.Match, in.CPUSeconds, 100*in.CPUUtilization, r.res.Cores, in.Machine)
	return reads, writes, nil
}

// qemuCopy times the plain-copy floor, qemu-img convert of the image and
// an fsync of its output, when qemu-img is on PATH: once with the image
// read from the disk, once with it in the page cache (Floor).
func (r *runner) qemuCopy(ctx context.Context) error {
	q := r.lookTool("qemu-img")
	if q == nil {
		r.res.Notes = append(r.res.Notes, "qemu-img is not on PATH: no plain-copy floor")
		return nil
	}
	fl := &Floor{}
	r.res.Floor = fl
	if v, err := q.output(ctx, "--version"); err == nil {
		fl.Version, _, _ = cutLine(v)
	}
	convert := func(out *Restore, state, suffix string) error { return r.qemuConvert(ctx, q, out, state, suffix) }
	if err := r.coldThenCached(ctx, "image", []string{r.image}, &fl.Restore, &fl.Cached, convert); err != nil {
		return err
	}
	if fl.Restore.Error == "" {
		fl.FsyncSeconds = fl.Restore.FsyncSeconds
		fl.SyncedSeconds = fl.Restore.Seconds + fl.FsyncSeconds
	}
	return nil
}

// qemuConvert times qemu-img convert of the image into
// DIR/restore-qemu<suffix>.img and an fsync of its output, checks it
// against the image and records its figures in out (a failure of
// qemu-img in out.Error).
func (r *runner) qemuConvert(ctx context.Context, q *tool, out *Restore, state, suffix string) error {
	qpath := filepath.Join(r.dir, "restore-qemu"+suffix+".img")
	secs, _, err := q.timed(ctx, "", "convert", "-f", "raw", "-O", "raw", r.image, qpath)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		out.Error = err.Error()
		return nil
	}
	out.Seconds, out.MiBps = secs, r.mibps(secs)
	// qemu-img leaves its output in the page cache; RestoreToFile
	// fsyncs. Time the fsync right away, so the floor can be
	// compared both ways.
	t0 := r.clk.Now()
	if err := fsyncFile(qpath); err != nil {
		return err
	}
	out.FsyncSeconds = r.since(t0)
	if err := r.checkRestored(ctx, qpath, qpath, out); err != nil {
		return err
	}
	r.logf("qemu-img convert (floor), %s: %.2fs (%.0f MiB/s), +fsync %.2fs, sha256 match %v", state, secs, out.MiBps, out.FsyncSeconds, out.Match)
	return nil
}

// coldRun runs fn after beforeTimed and the eviction of repo (the files
// the timed run reads) from the page cache: a restore's run with its
// repository read from the disk.
func (r *runner) coldRun(ctx context.Context, repo []string, fn func() error) error {
	if err := r.beforeTimed(ctx); err != nil {
		return err
	}
	if err := evictCached(repo...); err != nil {
		return err
	}
	return fn()
}

// coldThenCached runs restore twice: into cold after beforeTimed and the
// eviction of repo (the files the restore reads; what names them in the
// states passed to restore) from the page cache, then into cached after
// only a sync and the pause of Settle, so the repository is as the first
// run left it in memory and the disk as settled as for the first run. A
// failed first run (cold.Error) skips the second. The runs name their
// output with suffix "" and "-cached" (both stay with Keep).
func (r *runner) coldThenCached(ctx context.Context, what string, repo []string, cold, cached *Restore, restore func(out *Restore, state, suffix string) error) error {
	if err := r.coldRun(ctx, repo, func() error { return restore(cold, what+" from disk", "") }); err != nil || cold.Error != "" {
		return err
	}
	cold.Runs = append(cold.Runs, RestoreRun{Seconds: cold.Seconds, FsyncSeconds: cold.FsyncSeconds})
	// The same settling as before the first run, without the eviction
	// (or the cache drop) that would undo what it cached.
	unix.Sync()
	if err := r.settle(ctx); err != nil {
		return err
	}
	return restore(cached, what+" cached", "-cached")
}

// fsyncFile flushes a file's data and metadata to stable storage.
func fsyncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}

func cutLine(s string) (string, string, bool) {
	before, after, found := bytes.Cut([]byte(s), []byte("\n"))
	return string(before), string(after), found
}

// dataBlocks returns the offset of the first non-zero block of the changed
// image and of a seeded random non-zero block, with their contents.
func (r *runner) dataBlocks() (first, random int64, firstData, randomData []byte, err error) {
	f, err := os.Open(r.image)
	if err != nil {
		return 0, 0, nil, nil, err
	}
	defer f.Close()
	firstData, randomData = make([]byte, blockSize), make([]byte, blockSize)
	first = -1
	for off := int64(0); off < r.opts.Size && first < 0; {
		data, hole, err := nextData(f, off, r.opts.Size)
		if err != nil {
			return 0, 0, nil, nil, err
		}
		for b := data &^ (blockSize - 1); b < hole; b += blockSize {
			if _, err := f.ReadAt(firstData, b); err != nil {
				return 0, 0, nil, nil, err
			}
			if !allZero(firstData) {
				first = b
				break
			}
		}
		off = hole
	}
	if first < 0 {
		return 0, 0, nil, nil, errors.New("the image has no data block")
	}
	rng := rand.New(rand.NewPCG(r.opts.Seed, 5))
	var dataSegs []segment
	for _, s := range r.info.segs {
		if s.kind != kindZero {
			dataSegs = append(dataSegs, s)
		}
	}
	random = first
	copy(randomData, firstData)
	for range 100 {
		s := dataSegs[rng.IntN(len(dataSegs))]
		b := s.off + rng.Int64N(s.n/blockSize)*blockSize
		if _, err := f.ReadAt(randomData, b); err != nil {
			return 0, 0, nil, nil, err
		}
		if !allZero(randomData) {
			random = b
			break
		}
	}
	if random == first {
		copy(randomData, firstData)
	}
	return first, random, firstData, randomData, nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (r *runner) instant(ctx context.Context) error {
	out := &r.res.Coffer.Instant
	first, random, firstData, randomData, err := r.dataBlocks()
	if err != nil {
		return err
	}
	out.FirstReadOffset, out.RandomReadOffset = first, random
	buf := make([]byte, blockSize)
	if err := r.beforeTimed(ctx); err != nil {
		return err
	}
	m := r.probe.start()
	t0 := r.clk.Now()
	v, err := r.eng.RestoreVolume(ctx, "s2", "instant")
	if err != nil {
		return err
	}
	defer func() {
		if r.opts.Keep {
			v.Close()
		} else {
			_ = r.eng.DeleteVolume(context.WithoutCancel(ctx), "instant")
		}
	}()
	tOpen := r.clk.Now()
	if _, err := v.ReadAt(buf, first); err != nil {
		return fmt.Errorf("first read: %w", err)
	}
	tFirst := r.clk.Now()
	match := bytes.Equal(buf, firstData)
	t1 := r.clk.Now()
	if _, err := v.ReadAt(buf, random); err != nil {
		return fmt.Errorf("random read: %w", err)
	}
	t2 := r.clk.Now()
	out.ReadsMatch = match && bytes.Equal(buf, randomData)
	out.OpenMs, out.FirstReadMs, out.RandomReadMs = ms(tOpen.Sub(t0)), ms(tFirst.Sub(t0)), ms(t2.Sub(t1))
	// A reader of the volume while it hydrates: the restored disk in use.
	type readsResult struct {
		lat []time.Duration
		bad int
		err error
	}
	stop, reads := make(chan struct{}), make(chan readsResult, 1)
	go func() {
		lat, bad, err := r.hydrationReads(ctx, v, stop)
		reads <- readsResult{lat, bad, err}
	}()
	herr := v.WaitHydrated(ctx)
	out.HydratedSeconds = r.since(t0)
	close(stop)
	rr := <-reads
	if herr != nil {
		return herr
	}
	if rr.err != nil {
		return fmt.Errorf("reads during hydration: %w", rr.err)
	}
	out.HydrationReads, out.HydrationReadsBad = len(rr.lat), rr.bad
	out.HydrationReadP50Ms, out.HydrationReadP99Ms, out.HydrationReadMaxMs = percentiles(rr.lat)
	out.ReadsMatch = out.ReadsMatch && rr.bad == 0
	in := m.stop(r.res.Cores)
	out.Internals = &in
	out.HydrationMiBps = r.mibps(out.HydratedSeconds)
	sum, err := hashReaderAt(ctx, v, v.Size())
	if err != nil {
		return fmt.Errorf("hash restored volume: %w", err)
	}
	out.SHA256, out.Match = sum, sum == r.res.Image.SHA256After
	r.logf("instant restore: open %.1f ms, first read %.1f ms (from the call), random read %.1f ms, hydrated in %.2fs, sha256 match %v; %d reads during hydration (p50 %.3f ms, p99 %.3f ms, max %.3f ms), %d differed from the image",
		out.OpenMs, out.FirstReadMs, out.RandomReadMs, out.HydratedSeconds, out.Match, out.HydrationReads, out.HydrationReadP50Ms, out.HydrationReadP99Ms, out.HydrationReadMaxMs, out.HydrationReadsBad)
	return nil
}

// latency dirties about 10% of the volume, measures steady writes alone,
// then again while snapshot s3 runs.
func (r *runner) latency(ctx context.Context) error {
	out := &r.res.Coffer.Latency
	out.IntervalMs = ms(r.opts.WriteInterval)
	nb := r.opts.Size / blockSize
	rng := rand.New(rand.NewPCG(r.opts.Seed, 6))
	data := rand.NewChaCha8(seedKey(r.opts.Seed, 7))
	buf := make([]byte, blockSize)
	dirty := nb / 10
	for range dirty {
		data.Read(buf)
		if _, err := r.vol.WriteAt(buf, rng.Int64N(nb)*blockSize); err != nil {
			return err
		}
	}
	out.DirtyBytes = dirty * blockSize
	if err := r.vol.Flush(ctx); err != nil {
		return err
	}

	// Baseline: the same writer for 500 writes without a snapshot.
	stop := make(chan struct{})
	count := 500
	base, err := r.writer(ctx, rng, data, stop, count)
	if err != nil {
		return err
	}
	out.BaselineWrites = len(base)
	out.BaselineP50Ms, out.BaselineP99Ms, out.BaselineMaxMs = percentiles(base)

	if err := r.beforeTimed(ctx); err != nil {
		return err
	}
	type snapResult struct {
		si   blockdev.SnapshotInfo
		secs float64
		err  error
	}
	done := make(chan snapResult, 1)
	stop = make(chan struct{})
	t0 := r.clk.Now()
	go func() {
		si, err := r.eng.Snapshot(ctx, r.vol.ID(), "s3")
		res := snapResult{si, r.since(t0), err}
		close(stop)
		done <- res
	}()
	lat, werr := r.writer(ctx, rng, data, stop, 0)
	sr := <-done
	if sr.err != nil {
		return sr.err
	}
	if werr != nil {
		return werr
	}
	out.SnapshotSeconds = sr.secs
	out.CBWBlocks = sr.si.Stats.CBWBlocks
	out.Writes = len(lat)
	out.P50Ms, out.P99Ms, out.MaxMs = percentiles(lat)
	r.logf("writes during snapshot s3 (%.2fs, %.0f MiB dirty): %d writes, p50 %.3f ms, p99 %.3f ms, max %.3f ms (alone: p99 %.3f ms); %d copied before write",
		sr.secs, mib(out.DirtyBytes), out.Writes, out.P50Ms, out.P99Ms, out.MaxMs, out.BaselineP99Ms, out.CBWBlocks)
	return nil
}

// writer issues one random 64 KiB WriteAt per interval until stop closes
// (or, with count above zero, count writes are done) and returns the
// latencies.
func (r *runner) writer(ctx context.Context, rng *rand.Rand, data *rand.ChaCha8, stop chan struct{}, count int) ([]time.Duration, error) {
	nb := r.opts.Size / blockSize
	buf := make([]byte, blockSize)
	return r.paced(ctx, stop, count, func() (time.Duration, error) {
		data.Read(buf)
		off := rng.Int64N(nb) * blockSize
		t0 := r.clk.Now()
		_, err := r.vol.WriteAt(buf, off)
		return r.clk.Now().Sub(t0), err
	})
}

// paced calls op every WriteInterval (late calls do not burst to catch
// up) until stop closes, ctx ends (its error is returned) or, with count
// above zero, count calls were made, and returns the latencies op
// measured.
func (r *runner) paced(ctx context.Context, stop <-chan struct{}, count int, op func() (time.Duration, error)) ([]time.Duration, error) {
	var lat []time.Duration
	next := r.clk.Now()
	for {
		if count > 0 && len(lat) >= count {
			return lat, nil
		}
		select {
		case <-stop:
			return lat, nil
		case <-ctx.Done():
			return lat, ctx.Err()
		default:
		}
		d, err := op()
		if err != nil {
			return lat, err
		}
		lat = append(lat, d)
		now := r.clk.Now()
		next = next.Add(r.opts.WriteInterval)
		if d := next.Sub(now); d > 0 {
			t := r.clk.NewTimer(d)
			select {
			case <-t.C():
			case <-stop:
				t.Stop()
				return lat, nil
			case <-ctx.Done():
				t.Stop()
				return lat, ctx.Err()
			}
		} else {
			next = now // behind schedule: do not burst to catch up
		}
	}
}

// hydrationReads reads random blocks of v, paced, until stop closes, and
// checks each against the image after the change (untimed). It returns
// the latencies of the reads and how many differed from the image.
func (r *runner) hydrationReads(ctx context.Context, v *blockdev.Volume, stop <-chan struct{}) ([]time.Duration, int, error) {
	img, err := os.Open(r.image)
	if err != nil {
		return nil, 0, err
	}
	defer img.Close()
	rng := rand.New(rand.NewPCG(r.opts.Seed, 9))
	nb := r.opts.Size / blockSize
	got, want := make([]byte, blockSize), make([]byte, blockSize)
	bad := 0
	lat, err := r.paced(ctx, stop, 0, func() (time.Duration, error) {
		off := rng.Int64N(nb) * blockSize
		t0 := r.clk.Now()
		if _, err := v.ReadAt(got, off); err != nil {
			return 0, fmt.Errorf("read volume at %d: %w", off, err)
		}
		d := r.clk.Now().Sub(t0)
		if _, err := img.ReadAt(want, off); err != nil {
			return 0, fmt.Errorf("read image at %d: %w", off, err)
		}
		if !bytes.Equal(got, want) {
			bad++
		}
		return d, nil
	})
	return lat, bad, err
}

// percentiles returns p50, p99 and max in milliseconds.
func percentiles(d []time.Duration) (p50, p99, mx float64) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return ms(at(0.50)), ms(at(0.99)), ms(s[len(s)-1])
}
