package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"coffer/internal/blockdev"
	"coffer/internal/clock"
	"coffer/internal/nbd"
)

// NBDOptions configure RunNBD, the benchmark of the NBD data path
// (`coffer bench nbd`).
type NBDOptions struct {
	// Size of the disk image (the bench image of Run: half holes, half
	// data), rounded down to a multiple of 1 MiB (default DefaultSize).
	Size int64
	// Dir is an existing directory on the file system to measure; RunNBD
	// works inside it. The caller removes it.
	Dir string
	// Seed makes the image and fio's offsets reproducible.
	Seed uint64
	// Runtime and Ramp are each fio run's measured time and the warm-up
	// before it (defaults 5 s and 1 s).
	Runtime, Ramp time.Duration
	// Repeat is how many times each figure is measured, Coffer and
	// nbdkit interleaved (default 3).
	Repeat int
	// Workloads selects matrix rows by name (NBDWorkloads); nil runs all.
	Workloads []string
	// Conns are the connection counts of the matrix (default 1 and 4).
	Conns []int
	// NoCopy skips the whole-disk nbdcopy runs (a first untimed copy still
	// loads the disks); NoLoad skips the I/O during a snapshot and during
	// hydration.
	NoCopy, NoLoad bool
	// Progress receives one line per step (nil: none).
	Progress io.Writer
	// Clock measures wall time (default clock.Real).
	Clock clock.Clock
	// Workers is the engine's parallelism (default GOMAXPROCS).
	Workers int
	// Corpus are the directories of the image's compressible data
	// (default DefaultCorpus).
	Corpus []string
}

// NBDWorkload is one row of the fio matrix.
type NBDWorkload struct {
	Name    string
	RW      string
	BS      int64
	IODepth int
}

// NBDWorkloads is the matrix of issue 14: 4 KiB random read and write at
// queue depth 1 and 32, 1 MiB sequential read and write at queue depth 8.
var NBDWorkloads = []NBDWorkload{
	{"randread-4k-qd1", "randread", 4 << 10, 1},
	{"randread-4k-qd32", "randread", 4 << 10, 32},
	{"randwrite-4k-qd1", "randwrite", 4 << 10, 1},
	{"randwrite-4k-qd32", "randwrite", 4 << 10, 32},
	{"read-1m-qd8", "read", 1 << 20, 8},
	{"write-1m-qd8", "write", 1 << 20, 8},
}

// NBDResult holds every figure of RunNBD. Ratios are Coffer ÷ nbdkit of the
// medians (IOPS, or speed for nbdcopy: nbdkit seconds ÷ Coffer seconds),
// except LatencyRatio, Coffer's mean latency ÷ nbdkit's.
type NBDResult struct {
	Version        int               `json:"version"`
	SizeBytes      int64             `json:"sizeBytes"`
	ImageSHA256    string            `json:"imageSha256"`
	DataBytes      int64             `json:"dataBytes"`
	Seed           uint64            `json:"seed"`
	Cores          int               `json:"cores"`
	Workers        int               `json:"workers"`
	RuntimeSeconds float64           `json:"runtimeSeconds"`
	RampSeconds    float64           `json:"rampSeconds"`
	Repeat         int               `json:"repeat"`
	Transport      string            `json:"transport"`
	Tools          map[string]string `json:"tools"`
	LoadStart      string            `json:"loadAverageStart"`
	LoadEnd        string            `json:"loadAverageEnd"`
	TotalSeconds   float64           `json:"totalSeconds"`
	Dir            string            `json:"dir"`

	// The full snapshot and the hydration of its instant restore with no
	// client, for the runs under load.
	SnapshotAloneSeconds  float64 `json:"snapshotAloneSeconds,omitempty"`
	HydrationAloneSeconds float64 `json:"hydrationAloneSeconds,omitempty"`

	Copies    []NBDCopy    `json:"nbdcopy"`
	Matrix    []NBDRow     `json:"matrix"`
	Scaling   []NBDScaling `json:"scaling"`
	UnderLoad []NBDLoad    `json:"underLoad"`
	Checks    []NBDCheck   `json:"checks"`
	Targets   []Target     `json:"targets"`
	Notes     []string     `json:"notes,omitempty"`
}

// NBDCopy is a whole-disk nbdcopy in one direction.
type NBDCopy struct {
	Direction     string    `json:"direction"` // "write": image → export (--flush); "read": export → null:
	Command       string    `json:"command"`
	CofferSeconds []float64 `json:"cofferSeconds"`
	NbdkitSeconds []float64 `json:"nbdkitSeconds"`
	CofferMedian  float64   `json:"cofferMedianSeconds"`
	NbdkitMedian  float64   `json:"nbdkitMedianSeconds"`
	Ratio         float64   `json:"ratio"` // nbdkit ÷ Coffer seconds: Coffer's speed as a share of nbdkit's
}

// NBDRow is one workload on one connection count.
type NBDRow struct {
	Workload     string       `json:"workload"`
	Conns        int          `json:"connections"`
	Coffer       []FioFigures `json:"coffer"`
	Nbdkit       []FioFigures `json:"nbdkit"`
	CofferMedian FioFigures   `json:"cofferMedian"`
	NbdkitMedian FioFigures   `json:"nbdkitMedian"`
	Ratio        float64      `json:"ratio"`        // IOPS
	LatencyRatio float64      `json:"latencyRatio"` // mean latency, Coffer ÷ nbdkit
	CPURatio     float64      `json:"cpuRatio"`     // server CPU time per request, Coffer ÷ nbdkit
}

// NBDScaling is how a workload's median IOPS grew from 1 to 4
// connections.
type NBDScaling struct {
	Workload string  `json:"workload"`
	Coffer   float64 `json:"coffer"` // IOPS on 4 ÷ IOPS on 1
	Nbdkit   float64 `json:"nbdkit"`
	Ratio    float64 `json:"ratio"` // Coffer's scaling ÷ nbdkit's
}

// NBDLoad is a workload on Coffer while the engine works in the
// background: a full snapshot, or the hydration of an instant restore.
type NBDLoad struct {
	Workload          string       `json:"workload"`
	During            string       `json:"during"` // "snapshot" or "hydration"
	Runs              []NBDLoadRun `json:"runs"`
	MedianWindowRatio float64      `json:"medianWindowRatio"` // of the runs' Window.Ratio: the measure
	MedianRatio       float64      `json:"medianRatio"`       // of the runs' Ratio (the old measure)
}

// NBDLoadRun is one run: its fixed-window measure (Window), and the old
// measure: the requests completed while the background work ran (Busy)
// against an idle window (before the snapshot, after hydration).
type NBDLoadRun struct {
	Window NBDWindow     `json:"window"`
	Idle   windowFigures `json:"idle"`
	Busy   windowFigures `json:"busy"`
	Ratio  float64       `json:"ratio"` // busy IOPS ÷ idle IOPS
	Match  string        `json:"sha256,omitempty"`
	Detail string        `json:"detail,omitempty"`
}

// NBDWindow is the fixed-window measure of a run: the first Seconds (the
// fio runtime) of the workload from its first request, with the work
// started at that instant (Busy), against the first Seconds of the same
// fio job (same seed, same requests) without it, run twice: right before
// and right after the busy run (Refs), on a disk in the same state (for a
// snapshot, the loaded disk before it and after it ended; for a
// hydration, a restore of the same snapshot hydrated before, and the
// busy run's restored disk once hydrated), each run started with every
// file of the stack synced and cached (settleCached) and, for writes,
// every block the job writes written once before (loadRun). Ref is the
// two combined (refPair).
type NBDWindow struct {
	Seconds float64         `json:"seconds"`
	Busy    windowFigures   `json:"busy"`
	Ref     windowFigures   `json:"reference"`
	Refs    []windowFigures `json:"references"` // before, after
	// RefSpread is the references' highest IOPS ÷ their lowest: how far
	// the machine moved around the busy run.
	RefSpread float64 `json:"referenceSpread"`
	Ratio     float64 `json:"ratio"` // Busy.IOPS ÷ Ref.IOPS
	// CPURatio is Ref.CPUUsPerRequest ÷ Busy.CPUUsPerRequest: the share
	// of the serving process's CPU per request left to the user's
	// requests with the work beside them (1: the work cost nothing). It
	// moves less with the machine's other tenants than IOPS do.
	CPURatio float64 `json:"cpuRatio"`
	// How far the work had got at the window's start and end (0-1: blocks
	// read of those taken for a snapshot, bytes hydrated for a hydration),
	// and when it ended, from the first request, if it ended within the
	// window.
	ProgressStart float64 `json:"progressStart"`
	ProgressEnd   float64 `json:"progressEnd"`
	EndedSeconds  float64 `json:"endedSeconds,omitempty"`
	// While the work still ran at the window's end: the blocks copied
	// before write so far (snapshot), the blocks the user's reads fetched
	// in the window (hydration).
	CBWBlocks int64 `json:"cbwBlocks,omitempty"`
	CBWBytes  int64 `json:"cbwBytes,omitempty"` // what those copies kept (the pieces written)
	// Of CBWBytes, what the writers put in the side file themselves
	// (memory full), and what the snapshot moved there from memory.
	CBWSideBytes    int64 `json:"cbwSideBytes,omitempty"`
	CBWSpilledBytes int64 `json:"cbwSpilledBytes,omitempty"`
	ReadFetched     int64 `json:"readFetchedBlocks,omitempty"`
}

// NBDCheck is one correctness check, by SHA-256.
type NBDCheck struct {
	What string `json:"what"`
	Want string `json:"want"`
	Got  string `json:"got"`
	OK   bool   `json:"ok"`
}

// nbdRunner is the state of one RunNBD.
type nbdRunner struct {
	opts   NBDOptions
	clk    clock.Clock
	dir    string
	image  string
	info   imageInfo
	res    *NBDResult
	fio    string
	copier string
	stack  *runner // the Coffer stack serving the matrix
	srv    *nbd.Server
	addr   string
	kit    *nbdkit
	runN   int
	// restProcs is GOMAXPROCS when the bench started, before any
	// connection or snapshot raised it (waitRestProcs).
	restProcs int

	mu      sync.Mutex
	exports map[string]*volumeBackend
}

// RunNBD runs the NBD benchmark: it serves the bench image from Coffer (a
// volume of an in-process block engine, exported by Coffer's NBD server on
// TCP loopback) and from `nbdkit file` (a plain file), and measures both
// with the same clients, interleaved: nbdcopy of the whole disk in each
// direction and fio's nbd engine over NBDWorkloads × Conns. It then runs
// the random workloads on Coffer for Runtime from the start of a full
// snapshot and from an instant restore of it, against the same fio job
// without the work (nbdload.go).
// Every disk written is checked by SHA-256.
func RunNBD(ctx context.Context, opts NBDOptions) (NBDResult, error) {
	if opts.Size == 0 {
		opts.Size = DefaultSize
	}
	opts.Size &^= 1<<20 - 1
	if opts.Size < MinSize {
		return NBDResult{}, fmt.Errorf("bench nbd: size must be at least %d MiB", MinSize>>20)
	}
	if opts.Dir == "" {
		return NBDResult{}, errors.New("bench nbd: no directory")
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Runtime <= 0 {
		opts.Runtime = 5 * time.Second
	}
	if opts.Ramp < 0 {
		opts.Ramp = 0
	} else if opts.Ramp == 0 {
		opts.Ramp = time.Second
	}
	if opts.Repeat <= 0 {
		opts.Repeat = 3
	}
	if len(opts.Conns) == 0 {
		opts.Conns = []int{1, 4}
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Corpus == nil {
		opts.Corpus = DefaultCorpus
	}
	for _, w := range opts.Workloads {
		if _, ok := workload(w); !ok {
			return NBDResult{}, fmt.Errorf("bench nbd: unknown workload %q", w)
		}
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return NBDResult{}, fmt.Errorf("bench nbd: %w", err)
	}
	r := &nbdRunner{opts: opts, clk: opts.Clock, dir: dir, image: filepath.Join(dir, "disk.img"), exports: map[string]*volumeBackend{},
		restProcs: runtime.GOMAXPROCS(0)}
	r.res = &NBDResult{Version: 1, SizeBytes: opts.Size, Seed: opts.Seed, Cores: runtime.NumCPU(), Workers: opts.Workers,
		RuntimeSeconds: opts.Runtime.Seconds(), RampSeconds: opts.Ramp.Seconds(), Repeat: opts.Repeat,
		Transport: "TCP over the loopback interface", Tools: map[string]string{}, Dir: dir, LoadStart: loadAverage()}
	start := r.clk.Now()
	err = r.run(ctx)
	if cerr := r.close(); err == nil {
		err = cerr
	}
	r.res.TotalSeconds = r.clk.Now().Sub(start).Seconds()
	r.res.LoadEnd = loadAverage()
	r.res.evaluate()
	if err != nil {
		return *r.res, fmt.Errorf("bench nbd: %w", err)
	}
	for _, c := range r.res.Checks {
		if !c.OK {
			return *r.res, fmt.Errorf("bench nbd: %s: sha256 %s, want %s", c.What, c.Got, c.Want)
		}
	}
	return *r.res, nil
}

func workload(name string) (NBDWorkload, bool) {
	for _, w := range NBDWorkloads {
		if w.Name == name {
			return w, true
		}
	}
	return NBDWorkload{}, false
}

func (r *nbdRunner) logf(format string, args ...any) {
	if r.opts.Progress != nil {
		fmt.Fprintf(r.opts.Progress, "bench nbd: "+format+"\n", args...)
	}
}

func (r *nbdRunner) run(ctx context.Context) error {
	var missing []string
	for _, p := range []string{"fio", "nbdcopy", "nbdkit"} {
		path, err := exec.LookPath(p)
		if err != nil {
			missing = append(missing, p)
			continue
		}
		if v, err := exec.CommandContext(ctx, path, "--version").Output(); err == nil {
			r.res.Tools[p], _, _ = strings.Cut(strings.TrimSpace(string(v)), "\n")
		}
		switch p {
		case "fio":
			r.fio = path
		case "nbdcopy":
			r.copier = path
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("needs %s on PATH (Debian: fio, libnbd-bin, nbdkit)", strings.Join(missing, ", "))
	}
	t0 := r.clk.Now()
	info, err := buildImage(ctx, r.image, r.opts.Size, 0, r.opts.Seed, r.opts.Corpus)
	if err != nil {
		return err
	}
	r.info = info
	r.res.ImageSHA256 = info.sha
	r.res.DataBytes = info.bytes[kindCorpus] + info.bytes[kindRandom]
	r.logf("image %s: %s, %s of data, sha256 %.16s… (%.1fs)", r.image, sizeStr(r.opts.Size), sizeStr(r.res.DataBytes), info.sha, r.since(t0))

	if err := r.serve(ctx); err != nil {
		return err
	}
	steps := []struct {
		name string
		fn   func(context.Context) error
		skip bool
	}{
		{"nbdcopy", r.copies, false},
		{"fio matrix", r.matrix, false},
		{"random writes checked by hash", r.checkWrites, false},
		{"I/O during a snapshot and during hydration", r.underLoad, r.opts.NoLoad},
	}
	for _, s := range steps {
		if s.skip {
			continue
		}
		r.logf("%s", s.name)
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

func (r *nbdRunner) since(t0 time.Time) float64 { return r.clk.Now().Sub(t0).Seconds() }

// serve opens the Coffer stack with its volume "disk" and starts both
// servers: Coffer's NBD server in this process, nbdkit as a child serving
// a sparse file of the same size.
func (r *nbdRunner) serve(ctx context.Context) error {
	st := &runner{opts: Options{Workers: r.opts.Workers}, clk: r.clk, dir: filepath.Join(r.dir, "matrix"), probe: &probe{clk: r.clk}}
	if err := os.Mkdir(st.dir, 0o700); err != nil {
		return err
	}
	r.stack = st
	var err error
	if st.stack, err = st.openStack(ctx, filepath.Join(st.dir, "coffer")); err != nil {
		return err
	}
	vol, err := st.eng.CreateVolume(ctx, "disk", r.opts.Size)
	if err != nil {
		return err
	}
	st.vol = vol
	r.export("disk", vol)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	r.addr = ln.Addr().String()
	r.srv = &nbd.Server{Resolver: r.resolve, Clock: r.clk, Metrics: nbd.NewMetrics()}
	go func() { _ = r.srv.Serve(context.WithoutCancel(ctx), ln) }()

	file := filepath.Join(r.dir, "nbdkit.img")
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(r.opts.Size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	r.kit, err = startNbdkit(ctx, r.clk, r.dir, file)
	return err
}

func (r *nbdRunner) close() error {
	var errs []error
	if r.srv != nil {
		errs = append(errs, r.srv.Close())
	}
	if r.kit != nil {
		r.kit.stop()
	}
	if r.stack != nil {
		errs = append(errs, r.stack.closeStack())
	}
	return errors.Join(errs...)
}

func (r *nbdRunner) resolve(_ context.Context, name string) (*nbd.Export, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.exports[name]
	if !ok {
		return nil, nbd.ErrUnknownExport
	}
	return &nbd.Export{Backend: b}, nil
}

// export makes v available under name and returns its backend.
func (r *nbdRunner) export(name string, v *blockdev.Volume) *volumeBackend {
	return r.exportBackend(name, &volumeBackend{v: v, clk: r.clk})
}

// exportBackend makes b available under name and returns it.
func (r *nbdRunner) exportBackend(name string, b *volumeBackend) *volumeBackend {
	r.mu.Lock()
	r.exports[name] = b
	r.mu.Unlock()
	return b
}

func (r *nbdRunner) cofferURI(name string) string { return "nbd://" + r.addr + "/" + name }

// volumeBackend exports a volume to Coffer's NBD server as `coffer serve`
// does (without the access grant), and records when its first request came.
type volumeBackend struct {
	v     *blockdev.Volume
	clk   clock.Clock
	first atomic.Int64 // UnixNano of the first read or write; 0: none yet
	// open, if set, makes v at the first request (the load part's instant
	// restore: its hydration starts with the user's first request); size
	// is v's size until then.
	open    func() (*blockdev.Volume, error)
	size    int64
	once    sync.Once
	openErr error
}

// vol returns the exported volume, made at the first call if open is set.
func (b *volumeBackend) vol() (*blockdev.Volume, error) {
	if b.open != nil {
		b.once.Do(func() { b.v, b.openErr = b.open() })
	}
	return b.v, b.openErr
}

func (b *volumeBackend) seen() {
	if b.first.Load() == 0 {
		b.first.CompareAndSwap(0, b.clk.Now().UnixNano())
	}
}

// firstRequest waits until the first read or write arrived and returns
// when it did.
func (b *volumeBackend) firstRequest(ctx context.Context) (time.Time, error) {
	for {
		if ns := b.first.Load(); ns != 0 {
			return time.Unix(0, ns), nil
		}
		if err := pause(ctx, b.clk, time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
}

func (b *volumeBackend) Size() int64 {
	if b.open != nil {
		return b.size
	}
	return b.v.Size()
}

func (b *volumeBackend) ReadAt(p []byte, off int64) (int, error) {
	v, err := b.vol()
	if err != nil {
		return 0, err
	}
	b.seen()
	return v.ReadAt(p, off)
}

func (b *volumeBackend) ReadSparse(p []byte, off int64, hole func(off, n int64)) (int, error) {
	v, err := b.vol()
	if err != nil {
		return 0, err
	}
	b.seen()
	return v.ReadSparseAt(context.Background(), p, off, hole)
}

func (b *volumeBackend) TryReadSparse(p []byte, off int64, hole func(off, n int64)) (int, bool, error) {
	v, err := b.vol()
	if err != nil {
		return 0, true, err
	}
	n, ok, err := v.TryReadSparseAt(p, off, hole)
	if ok {
		b.seen()
	}
	return n, ok, err
}

func (b *volumeBackend) WriteAt(p []byte, off int64) (int, error) {
	v, err := b.vol()
	if err != nil {
		return 0, err
	}
	b.seen()
	return v.WriteAt(p, off)
}

func (b *volumeBackend) TryReadAt(p []byte, off int64) (int, bool, error) {
	v, err := b.vol()
	if err != nil {
		return 0, true, err
	}
	n, ok, err := v.TryReadAt(p, off)
	if ok {
		b.seen()
	}
	return n, ok, err
}

func (b *volumeBackend) TryWriteAt(p []byte, off int64) (bool, error) {
	v, err := b.vol()
	if err != nil {
		return true, err
	}
	ok, err := v.TryWriteAt(p, off)
	if ok {
		b.seen()
	}
	return ok, err
}

func (b *volumeBackend) Flush() error {
	v, err := b.vol()
	if err != nil {
		return err
	}
	return v.Flush(context.Background())
}

func (b *volumeBackend) Trim(off, n int64) error {
	v, err := b.vol()
	if err != nil {
		return err
	}
	return v.Trim(context.Background(), off, n)
}

func (b *volumeBackend) WriteZeroes(off, n int64) error {
	v, err := b.vol()
	if err != nil {
		return err
	}
	return v.WriteZeroes(context.Background(), off, n)
}

func (b *volumeBackend) BlockStatus(off, n int64) ([]nbd.Extent, error) {
	v, err := b.vol()
	if err != nil {
		return nil, err
	}
	exts, err := v.Extents(context.Background(), off, n)
	if err != nil {
		return nil, err
	}
	out := make([]nbd.Extent, len(exts))
	for i, x := range exts {
		out[i] = nbd.Extent{Offset: x.Offset, Length: x.Length, Hole: x.Hole, Zero: x.Hole}
	}
	return out, nil
}

// nbdkit is the reference server: `nbdkit file` on TCP loopback.
type nbdkit struct {
	cmd  *exec.Cmd
	uri  string
	file string
	done chan struct{}
}

func startNbdkit(ctx context.Context, clk clock.Clock, dir, file string) (*nbdkit, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	pidfile := filepath.Join(dir, "nbdkit.pid")
	// -f: in the foreground, a child of this process; -P: the pid file
	// appears once it accepts connections.
	cmd := exec.CommandContext(ctx, "nbdkit", "-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", port, "-P", pidfile, "file", file)
	logf, err := os.Create(filepath.Join(dir, "nbdkit.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("nbdkit: %w", err)
	}
	k := &nbdkit{cmd: cmd, uri: "nbd://127.0.0.1:" + port, file: file, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(k.done) }()
	for {
		if _, err := os.Stat(pidfile); err == nil {
			return k, nil
		}
		t := clk.NewTimer(10 * time.Millisecond)
		select {
		case <-t.C():
		case <-k.done:
			t.Stop()
			return nil, fmt.Errorf("nbdkit exited at start (see %s)", filepath.Join(dir, "nbdkit.log"))
		case <-ctx.Done():
			t.Stop()
			k.stop()
			return nil, ctx.Err()
		}
	}
}

func (k *nbdkit) stop() {
	_ = k.cmd.Process.Kill()
	<-k.done
}

// server is one side of a comparison.
type server struct {
	name string // "coffer" or "nbdkit"
	uri  string
	pid  int // the process serving it, for its CPU time
}

// servers returns both servers in the order of repetition i: interleaved,
// each first on every other repetition.
func (r *nbdRunner) servers(i int) []server {
	s := []server{{"coffer", r.cofferURI("disk"), os.Getpid()}, {"nbdkit", r.kit.uri, r.kit.cmd.Process.Pid}}
	if i%2 == 1 {
		s[0], s[1] = s[1], s[0]
	}
	return s
}

// hashCoffer hashes [0, n) of the matrix volume, read directly.
func (r *nbdRunner) hashCoffer(ctx context.Context, n int64) (string, error) {
	return hashReaderAt(ctx, r.stack.vol, n)
}

// hashNbdkit hashes [0, n) of nbdkit's file.
func (r *nbdRunner) hashNbdkit(ctx context.Context, n int64) (string, error) {
	f, err := os.Open(r.kit.file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return hashReaderAt(ctx, f, n)
}

func (r *nbdRunner) check(what, want, got string) {
	r.res.Checks = append(r.res.Checks, NBDCheck{What: what, Want: want, Got: got, OK: want == got})
	r.logf("check %s: %s", what, matchWord(want == got))
}

// copies runs nbdcopy over the whole disk in both directions: the image
// into each export (--flush), then each export to null:, Repeat times,
// interleaved; after the writes each disk is checked against the image.
// The first write loads the disks for the matrix.
func (r *nbdRunner) copies(ctx context.Context) error {
	n := r.opts.Repeat
	if r.opts.NoCopy {
		n = 1
	}
	write := NBDCopy{Direction: "write", Command: "nbdcopy --flush IMAGE URI"}
	read := NBDCopy{Direction: "read", Command: "nbdcopy URI null:"}
	for i := range n {
		for _, s := range r.servers(i) {
			secs, client, srv, err := r.serverCopy(ctx, s, "--flush", r.image, s.uri)
			if err != nil {
				return err
			}
			write.add(s.name, secs)
			r.logf("nbdcopy image → %s: %.2fs (CPU: nbdcopy %.2fs, server %.2fs)", s.name, secs, client.Seconds(), srv.Seconds())
		}
	}
	sum, err := r.hashCoffer(ctx, r.opts.Size)
	if err != nil {
		return err
	}
	r.check("Coffer's volume after nbdcopy of the image", r.info.sha, sum)
	if sum, err = r.hashNbdkit(ctx, r.opts.Size); err != nil {
		return err
	}
	r.check("nbdkit's file after nbdcopy of the image", r.info.sha, sum)
	if r.opts.NoCopy {
		return nil
	}
	for i := range n {
		for _, s := range r.servers(i) {
			sv0 := r.srv.Metrics.Served()
			secs, client, srv, err := r.serverCopy(ctx, s, s.uri, "null:")
			if err != nil {
				return err
			}
			if s.name == "coffer" {
				// The READs nbdcopy sent and their reply chunks: what its
				// own CPU per byte follows (docs/design.md, "Session perf14at").
				r.logServed("nbdcopy read", 4, sv0, r.srv.Metrics.Served())
			}
			read.add(s.name, secs)
			r.logf("nbdcopy %s → null: %.2fs (CPU: nbdcopy %.2fs, server %.2fs)", s.name, secs, client.Seconds(), srv.Seconds())
		}
	}
	// What the reads return, checked once through each server.
	for _, s := range r.servers(0) {
		out := filepath.Join(r.dir, "readback-"+s.name+".img")
		if _, _, err := r.timedCopy(ctx, s.uri, out); err != nil {
			return err
		}
		sum, err := hashFile(ctx, out)
		if err != nil {
			return err
		}
		r.check("nbdcopy of "+s.name+"'s export back to a file", r.info.sha, sum)
		if err := os.Remove(out); err != nil {
			return err
		}
	}
	for _, c := range []*NBDCopy{&write, &read} {
		c.CofferMedian, c.NbdkitMedian = median(c.CofferSeconds), median(c.NbdkitSeconds)
		c.Ratio = ratio(c.NbdkitMedian, c.CofferMedian)
		r.res.Copies = append(r.res.Copies, *c)
	}
	return nil
}

func (c *NBDCopy) add(server string, secs float64) {
	if server == "coffer" {
		c.CofferSeconds = append(c.CofferSeconds, secs)
	} else {
		c.NbdkitSeconds = append(c.NbdkitSeconds, secs)
	}
}

// settle brings both servers' files to one page-cache state before a
// timed run (settleCached): synced, their data cached and their holes not.
func (r *nbdRunner) settle(ctx context.Context) error {
	vol := filepath.Join(r.stack.dir, "coffer", "engine", "volumes", "disk", "data") // docs/volumes.md
	return settleCached(ctx, vol, r.kit.file)
}

// timedCopy runs nbdcopy args after a sync and returns its seconds and
// the CPU time (user and system) nbdcopy used.
func (r *nbdRunner) timedCopy(ctx context.Context, args ...string) (float64, time.Duration, error) {
	unix.Sync()
	cmd := exec.CommandContext(ctx, r.copier, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t0 := r.clk.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("nbdcopy %s: %w: %s", strings.Join(args, " "), err, tail(stderr.String()))
	}
	return r.since(t0), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// serverCopy is timedCopy of s's export after settle, and also returns the CPU time
// s's serving process used meanwhile.
func (r *nbdRunner) serverCopy(ctx context.Context, s server, args ...string) (secs float64, client, srv time.Duration, err error) {
	if err := r.settle(ctx); err != nil {
		return 0, 0, 0, err
	}
	cpu0, err := processCPUOf(s.pid)
	if err != nil {
		return 0, 0, 0, err
	}
	if secs, client, err = r.timedCopy(ctx, args...); err != nil {
		return 0, 0, 0, err
	}
	cpu1, err := processCPUOf(s.pid)
	return secs, client, cpu1 - cpu0, err
}

// fioOut returns a fresh path for a fio report or log.
func (r *nbdRunner) fioOut(label string) string {
	r.runN++
	return filepath.Join(r.dir, "fio", fmt.Sprintf("%03d-%s", r.runN, label))
}

// matrix runs each workload on each connection count, Repeat times per
// server, Coffer and nbdkit interleaved.
func (r *nbdRunner) matrix(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(r.dir, "fio"), 0o700); err != nil {
		return err
	}
	for _, w := range NBDWorkloads {
		if r.opts.Workloads != nil && !slices.Contains(r.opts.Workloads, w.Name) {
			continue
		}
		for _, conns := range r.opts.Conns {
			row := NBDRow{Workload: w.Name, Conns: conns}
			for i := range r.opts.Repeat {
				for _, s := range r.servers(i) {
					if err := r.settle(ctx); err != nil {
						return err
					}
					j := fioJob{URI: s.uri, RW: w.RW, BS: w.BS, IODepth: w.IODepth, Conns: conns, Size: r.opts.Size,
						Runtime: r.opts.Runtime, Ramp: r.opts.Ramp, Seed: r.opts.Seed + 1}
					cpu0, err := processCPUOf(s.pid)
					if err != nil {
						return err
					}
					hr0, hw0 := r.srv.Metrics.HandedOff()
					rb0 := r.srv.Metrics.RepliesBehind()
					sv0 := r.srv.Metrics.Served()
					f, err := runFio(ctx, r.fio, r.fioOut(fmt.Sprintf("%s-%dc-%s.json", w.Name, conns, s.name)), j)
					if err != nil {
						return err
					}
					cpu1, err := processCPUOf(s.pid)
					if err != nil {
						return err
					}
					// fio's figures leave out its ramp; the CPU time
					// includes it, so the requests are estimated over both.
					if reqs := f.IOPS * (r.opts.Runtime + r.opts.Ramp).Seconds(); reqs > 0 {
						f.ServerCPUUs = float64((cpu1 - cpu0).Microseconds()) / reqs
					}
					if s.name == "coffer" {
						row.Coffer = append(row.Coffer, f)
					} else {
						row.Nbdkit = append(row.Nbdkit, f)
					}
					r.logf("%s ×%d %s: %.0f IOPS, %.1f MiB/s, latency mean %.1f µs, p99 %.1f µs, server CPU %.1f µs per request",
						w.Name, conns, s.name, f.IOPS, f.MiBps, f.LatMeanUs, f.LatP99Us, f.ServerCPUUs)
					if hr1, hw1 := r.srv.Metrics.HandedOff(); s.name == "coffer" {
						r.logf("%s ×%d coffer: %d reads and %d writes handed off to goroutines (not served on the connection's reader), %d read replies written behind the reader",
							w.Name, conns, hr1-hr0, hw1-hw0, r.srv.Metrics.RepliesBehind()-rb0)
						r.logServed(w.Name, conns, sv0, r.srv.Metrics.Served())
					}
				}
			}
			row.CofferMedian, row.NbdkitMedian = medianFigures(row.Coffer), medianFigures(row.Nbdkit)
			row.Ratio = ratio(row.CofferMedian.IOPS, row.NbdkitMedian.IOPS)
			row.LatencyRatio = ratio(row.CofferMedian.LatMeanUs, row.NbdkitMedian.LatMeanUs)
			row.CPURatio = ratio(row.CofferMedian.ServerCPUUs, row.NbdkitMedian.ServerCPUUs)
			r.logf("%s ×%d: Coffer ÷ nbdkit %.2f× IOPS, %.2f× mean latency, %.2f× server CPU per request", w.Name, conns, row.Ratio, row.LatencyRatio, row.CPURatio)
			r.res.Matrix = append(r.res.Matrix, row)
		}
	}
	r.res.Scaling = scaling(r.res.Matrix)
	return nil
}

// logServed prints what Coffer's server spent per request of a fio run,
// between its metrics a and b: the time from reading a request to
// writing its reply (against the latency fio sees, it tells the server's
// part from the client's and the queue's), and the chunks per READ reply.
func (r *nbdRunner) logServed(name string, conns int, a, b nbd.Served) {
	per := func(v float64, n uint64) float64 {
		if n == 0 {
			return 0
		}
		return v / float64(n)
	}
	reads, writes := b.Reads-a.Reads, b.Writes-a.Writes
	r.logf("%s ×%d coffer: server time per request (read to reply) %.1f µs for %d reads (%.1f reply chunks each), %.1f µs for %d writes",
		name, conns, per(1e6*(b.ReadSeconds-a.ReadSeconds), reads), reads, per(float64(b.ReadChunks-a.ReadChunks), reads),
		per(1e6*(b.WriteSeconds-a.WriteSeconds), writes), writes)
}

// scaling compares each workload's 4-connection median with its
// 1-connection median.
func scaling(rows []NBDRow) []NBDScaling {
	var out []NBDScaling
	for _, a := range rows {
		if a.Conns != 1 {
			continue
		}
		for _, b := range rows {
			if b.Workload == a.Workload && b.Conns == 4 {
				s := NBDScaling{Workload: a.Workload, Coffer: ratio(b.CofferMedian.IOPS, a.CofferMedian.IOPS),
					Nbdkit: ratio(b.NbdkitMedian.IOPS, a.NbdkitMedian.IOPS)}
				s.Ratio = ratio(s.Coffer, s.Nbdkit)
				out = append(out, s)
			}
		}
	}
	return out
}

// checkWrites writes the same seeded pattern through both servers (4 KiB
// random writes at queue depth 32 on 4 connections, each 4 KiB block of
// the first 256 MiB exactly once, fio's buffers refilled from its seeded
// generator) and checks that both disks then hold the same bytes there.
func (r *nbdRunner) checkWrites(ctx context.Context) error {
	region := min(int64(256<<20), r.opts.Size)
	per := region / 4
	for _, s := range r.servers(0) {
		out := r.fioOut("check-" + s.name + ".json")
		args := []string{"--name=check", "--ioengine=nbd", "--uri=" + s.uri, "--rw=randwrite", "--bs=4k", "--iodepth=32",
			"--numjobs=4", "--size=" + strconv.FormatInt(per, 10), "--offset_increment=" + strconv.FormatInt(per, 10),
			"--randseed=" + strconv.FormatUint(r.opts.Seed+2, 10), "--refill_buffers", "--group_reporting",
			"--output-format=json", "--output=" + out}
		cmd := exec.CommandContext(ctx, r.fio, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("fio %s: %w: %s", strings.Join(args, " "), err, tail(stderr.String()))
		}
	}
	want, err := r.hashNbdkit(ctx, region)
	if err != nil {
		return err
	}
	got, err := r.hashCoffer(ctx, region)
	if err != nil {
		return err
	}
	r.check(fmt.Sprintf("first %s after the same seeded 4 KiB random writes (Coffer vs nbdkit)", sizeStr(region)), want, got)
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianFigures is the per-field median of runs.
func medianFigures(runs []FioFigures) FioFigures {
	pick := func(f func(FioFigures) float64) float64 {
		v := make([]float64, len(runs))
		for i, x := range runs {
			v[i] = f(x)
		}
		return median(v)
	}
	return FioFigures{
		IOPS:        pick(func(f FioFigures) float64 { return f.IOPS }),
		MiBps:       pick(func(f FioFigures) float64 { return f.MiBps }),
		LatMeanUs:   pick(func(f FioFigures) float64 { return f.LatMeanUs }),
		LatP50Us:    pick(func(f FioFigures) float64 { return f.LatP50Us }),
		LatP99Us:    pick(func(f FioFigures) float64 { return f.LatP99Us }),
		Requests:    int64(pick(func(f FioFigures) float64 { return float64(f.Requests) })),
		ServerCPUUs: pick(func(f FioFigures) float64 { return f.ServerCPUUs }),
	}
}
