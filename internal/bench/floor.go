package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"coffer/internal/blobstore"
	"coffer/internal/clock"
	"coffer/internal/directio"
)

// The I/O floor of a restore: the reads and writes one full restore made,
// replayed with no computation between them (docs/design.md, "Whole-system
// benchmark"). The reads are the restore's own ranged reads of packs,
// recorded as it ran and made again through the same blob store (so the
// same direct reads of the same files); the writes are the runs of data
// blocks the restore wrote, found in its output file, written again with
// the same direct writes into a new sparse file whose data runs are
// allocated first, then synced, as RestoreToFile does. What the floor leaves out is exactly what Coffer
// adds to the I/O: index lookups, decompression, hashing, copies, and the
// order in which a restore can issue its I/O.

// rangeRead is one ranged read of a blob; slot is the traceSlot of the
// context it was made under (0: none), which tells apart the reads of
// restores running at once.
type rangeRead struct {
	name   string
	off, n int64
	slot   int
}

// traceSlotKey is the context key of a traceSlot.
type traceSlotKey struct{}

// withTraceSlot returns ctx with the trace slot n (above 0): the ranged
// reads made under it are recorded with that slot.
func withTraceSlot(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, traceSlotKey{}, n)
}

// traceSlot is the slot of ctx, 0 if none.
func traceSlot(ctx context.Context) int {
	n, _ := ctx.Value(traceSlotKey{}).(int)
	return n
}

// bySlot splits reads by their slot: the result's entry i-1 holds the
// reads of slot i, for slots 1 … n (reads of other slots are left out).
func bySlot(reads []rangeRead, n int) [][]rangeRead {
	out := make([][]rangeRead, n)
	for _, r := range reads {
		if r.slot >= 1 && r.slot <= n {
			out[r.slot-1] = append(out[r.slot-1], r)
		}
	}
	return out
}

// readTrace records ranged reads while it is on; it is safe for
// concurrent use.
type readTrace struct {
	mu    sync.Mutex
	on    bool
	reads []rangeRead
}

func (t *readTrace) start() {
	t.mu.Lock()
	t.on, t.reads = true, nil
	t.mu.Unlock()
}

// stop ends recording and returns what was recorded.
func (t *readTrace) stop() []rangeRead {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.on = false
	return t.reads
}

// record records a read made under ctx (see withTraceSlot).
func (t *readTrace) record(ctx context.Context, name string, off, n int64) {
	t.mu.Lock()
	if t.on {
		t.reads = append(t.reads, rangeRead{name, off, n, traceSlot(ctx)})
	}
	t.mu.Unlock()
}

// extent is a byte range of a file.
type extent struct{ off, n int64 }

// dataRuns returns the data extents of the file at path (SEEK_DATA and
// SEEK_HOLE), cut at every multiple of cut: the writes of a restore that
// writes each run of data blocks of a cut-sized span with one call.
func dataRuns(path string, cut int64) ([]extent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	var runs []extent
	for off := int64(0); off < size; {
		data, hole, err := nextData(f, off, size)
		if err != nil {
			return nil, err
		}
		for s := data; s < hole; {
			e := min(hole, (s/cut+1)*cut)
			runs = append(runs, extent{s, e - s})
			s = e
		}
		off = hole
	}
	return runs, nil
}

// allocateExtents reserves the blocks of writes (in file order) in f
// before they are written, one fallocate per run of adjacent extents, as
// RestoreToFile allocates its data blocks before it writes them (direct
// writes into allocated blocks of one file run in parallel on ext4,
// writes that allocate one at a time). A file system without fallocate
// leaves them to allocate as they go.
func allocateExtents(f *os.File, writes []extent) error {
	for i := 0; i < len(writes); {
		j, end := i+1, writes[i].off+writes[i].n
		for j < len(writes) && writes[j].off == end {
			end += writes[j].n
			j++
		}
		err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, writes[i].off, end-writes[i].off)
		if errors.Is(err, errors.ErrUnsupported) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("allocate %d bytes at %d: %w", end-writes[i].off, writes[i].off, err)
		}
		i = j
	}
	return nil
}

// IOFloor is the restore's I/O replayed alone: the fastest of its replays
// in each of floorWays (Runs, in that order), whose figures it carries.
type IOFloor struct {
	Seconds    float64 `json:"seconds"`
	Reads      int     `json:"reads"`
	ReadBytes  int64   `json:"readBytes"`
	Writes     int     `json:"writes"`
	WriteBytes int64   `json:"writeBytes"`
	Depth      int     `json:"depth"` // I/O requests in flight
	// SyncEvery is the bytes of direct writes between background
	// fdatasyncs of a file (directio.Syncer); 0: the file is synced at its
	// end only.
	SyncEvery int64 `json:"syncEveryBytes,omitempty"`
	// CPUSeconds is this process's CPU time meanwhile (the kernel's work
	// for the I/O, mostly), and Machine what every process did.
	CPUSeconds float64 `json:"cpuSeconds"`
	Machine    Machine `json:"machine"`
	// Runs are every replay, the fastest included.
	Runs []IOFloorRun `json:"runs,omitempty"`
	// Rounds are the fastest replay's seconds of every round of the
	// restores (Options.RestoreRounds), the first being Runs'; Seconds is
	// then their median, the other figures the first round's.
	Rounds []float64 `json:"roundSeconds,omitempty"`
}

// IOFloorRun is one replay of the floor.
type IOFloorRun struct {
	Depth      int     `json:"depth"`
	SyncEvery  int64   `json:"syncEveryBytes,omitempty"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpuSeconds"`
	Machine    Machine `json:"machine"`
}

// runsString lists the replays the floor is the fastest of, when there
// were several.
func (f IOFloor) runsString() string {
	if len(f.Runs) < 2 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" (the fastest of")
	for i, r := range f.Runs {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %d in flight%s %.2fs", r.Depth, syncedText(r.SyncEvery), r.Seconds)
	}
	b.WriteString(")")
	return b.String()
}

// syncedText says how a replay synced its files, when it did as it went.
func syncedText(syncEvery int64) string {
	if syncEvery == 0 {
		return ""
	}
	return fmt.Sprintf(" synced every %s", sizeStr(syncEvery))
}

// floorWriteMax bounds the floor's writes: a restore writes each run of
// data blocks of an index page (16 MiB at the bench's block size) with
// one call.
const floorWriteMax = 16 << 20

// floorDepths are the requests in flight the floor is replayed with. A
// restore has Workers+6 jobs, each with a read ahead of its decoding
// (blockdev.restoreIODepth, chunkstore.Store.GetManyInto), so up to twice
// that many requests; the floor is the fastest replay, so that no depth
// the restore may reach makes it beat its floor by queueing deeper.
var floorDepths = []int{8, 16}

// floorWay is one way the floor's I/O is replayed: depth requests in
// flight, and each file fdatasynced every syncEvery bytes of direct
// writes as it goes (0: at its end only).
type floorWay struct {
	depth     int
	syncEvery int64
}

// floorWays are the ways the floor is replayed, the fastest counting:
// each of floorDepths with each file synced at its end only, and synced as
// it goes as a restore's file is (directio.SyncEvery). Which is faster
// depends on the disk: on the development VM syncing as it goes took the
// wait for the host's write-back off one file's end, but four files
// syncing at once were slower than four synced at their ends (docs/design.md,
// "Issue 14's figures (session 14)").
var floorWays = func() []floorWay {
	var ways []floorWay
	for _, sync := range []int64{0, directio.SyncEvery} {
		for _, d := range floorDepths {
			ways = append(ways, floorWay{d, sync})
		}
	}
	return ways
}()

// ioFloor replays the reads and writes of the restore that was just timed
// alone, in each of floorWays, as far as possible under the same
// conditions: each after beforeTimed, with the repository's files evicted
// from the page cache.
func (r *runner) ioFloor(ctx context.Context, reads []rangeRead, writes []extent) error {
	fl, err := r.replayFloor(ctx, "the restore", r.blobs, r.repoFiles(), reads, writes, r.opts.Size)
	if err != nil {
		return err
	}
	r.res.Coffer.RestoreIOFloor = &fl
	return nil
}

// replayFloor replays reads (through rr, of the repository whose files
// are repo) and writes (into a file of size bytes) in each of floorWays,
// each after beforeTimed and the eviction of repo from the page cache, and
// returns the fastest replay with every replay in its Runs. what names the
// restores replayed in the progress lines.
func (r *runner) replayFloor(ctx context.Context, what string, rr blobstore.RangeReader, repo []string, reads []rangeRead, writes []extent, size int64) (IOFloor, error) {
	out := filepath.Join(r.dir, "restore-floor.img")
	return r.fastestReplay(ctx, what, repo, func(w floorWay) (IOFloor, error) {
		return replayIO(ctx, r.clk, rr, reads, writes, out, size, w, r.probe.disk)
	})
}

// replayFloorAtOnce is replayFloor for restores that ran atOnce at a time,
// each into its own file (the many-disk step): reads[i] and writes[i] are
// restore i's, each replayed into its own file of size bytes with its own
// fsync, atOnce of them at a time (replayAtOnce), in each of floorWays
// (requests in flight in all).
func (r *runner) replayFloorAtOnce(ctx context.Context, what string, rr blobstore.RangeReader, repo []string, reads [][]rangeRead, writes [][]extent, size int64, atOnce int) (IOFloor, error) {
	return r.fastestReplay(ctx, what, repo, func(w floorWay) (IOFloor, error) {
		return replayAtOnce(ctx, r.clk, rr, reads, writes, filepath.Join(r.dir, "restore-floor"), size, atOnce, w, r.probe.disk)
	})
}

// fastestReplay runs replay in each of floorWays, each after
// beforeTimed and the eviction of repo from the page cache, and returns
// the fastest replay with every replay in its Runs.
func (r *runner) fastestReplay(ctx context.Context, what string, repo []string, replay func(floorWay) (IOFloor, error)) (IOFloor, error) {
	var best IOFloor
	var runs []IOFloorRun
	for _, way := range floorWays {
		if err := r.beforeTimed(ctx); err != nil {
			return best, err
		}
		if err := evictCached(repo...); err != nil {
			return best, err
		}
		fl, err := replay(way)
		if err != nil {
			return best, err
		}
		r.logf("I/O floor of %s: %.2fs (%d reads, %.1f MiB; %d writes, %.1f MiB; %d in flight%s), CPU %.2fs; %s",
			what, fl.Seconds, fl.Reads, mib(fl.ReadBytes), fl.Writes, mib(fl.WriteBytes), fl.Depth, syncedText(fl.SyncEvery), fl.CPUSeconds, fl.Machine)
		runs = append(runs, IOFloorRun{Depth: way.depth, SyncEvery: way.syncEvery, Seconds: fl.Seconds, CPUSeconds: fl.CPUSeconds, Machine: fl.Machine})
		if len(runs) == 1 || fl.Seconds < best.Seconds {
			best = fl
		}
	}
	best.Runs = runs
	return best, nil
}

// replayAtOnce replays restores that ran atOnce at a time, each into its
// own file, as they ran: replay i makes reads[i] and writes[i] into a new
// file of size bytes at out-<i>.img (replayInto: its blocks allocated
// first, its own fsync at the end), atOnce replays at a time, the next
// starting when one ends, with depth requests in flight in all (depth ÷
// atOnce each, at least one; their memory is mapped before the clock
// starts, as a restore's job buffers are in use already when a restore
// starts beside others). It returns how long all of them took, with
// the process's CPU time and what the machine did meanwhile. The files
// are removed after the last replay ended, outside those figures, as the
// restores' files outlive each other.
func replayAtOnce(ctx context.Context, clk clock.Clock, rr blobstore.RangeReader, reads [][]rangeRead, writes [][]extent, out string, size int64, atOnce int, way floorWay, disk string) (res IOFloor, err error) {
	if len(reads) != len(writes) {
		return res, fmt.Errorf("I/O floor: reads of %d restores, writes of %d", len(reads), len(writes))
	}
	depth := way.depth
	res.Depth, res.SyncEvery = depth, way.syncEvery
	atOnce = max(1, min(atOnce, len(reads)))
	each := max(1, depth/atOnce)
	paths := make([]string, len(reads))
	for i := range paths {
		paths[i] = fmt.Sprintf("%s-%d.img", out, i)
	}
	defer func() {
		for _, p := range paths {
			if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
	}()
	// The memory of every replay is made before the clock starts: one
	// source of write data for all, and each of the atOnce runners' read
	// buffers.
	mem, err := newReplayMem(slices.Concat(reads...), slices.Concat(writes...), each*atOnce)
	if err != nil {
		return res, err
	}
	defer mem.close()
	next := make(chan int, len(reads)) // the replays, in order
	for i := range reads {
		next <- i
	}
	close(next)
	m0, cpu0 := readMachine(disk), processCPU()
	t0 := clk.Now()
	g, gctx := errgroup.WithContext(ctx)
	parts := make([]IOFloor, len(reads))
	for k := range atOnce {
		m := &replayMem{src: mem.src, bufs: mem.bufs[k*each : (k+1)*each]}
		g.Go(func() error {
			for i := range next {
				var err error
				if parts[i], err = replayInto(gctx, clk, rr, reads[i], writes[i], paths[i], size, m, way.syncEvery, disk); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	res.Seconds = clk.Now().Sub(t0).Seconds()
	res.CPUSeconds = processCPU() - cpu0
	res.Machine = machineSince(m0, readMachine(disk), res.Seconds, disk)
	for _, p := range parts {
		res.Reads += p.Reads
		res.ReadBytes += p.ReadBytes
		res.Writes += p.Writes
		res.WriteBytes += p.WriteBytes
	}
	return res, nil
}

// replayIO makes the reads (through rr, as the restore made them) and the
// writes (direct, of arbitrary non-zero bytes, into a new sparse file at
// out of size bytes, their blocks allocated first, synced at the end)
// with depth requests in flight, in
// an order that keeps reads and writes in the proportion a restore has
// them, and returns how long that took, with the process's CPU time and
// what the machine did (disk as for readMachine) meanwhile. out is
// removed afterwards, outside those figures: deleting it can take as long
// as discarding its blocks does.
func replayIO(ctx context.Context, clk clock.Clock, rr blobstore.RangeReader, reads []rangeRead, writes []extent, out string, size int64, way floorWay, disk string) (IOFloor, error) {
	mem, err := newReplayMem(reads, writes, way.depth)
	if err != nil {
		return IOFloor{}, err
	}
	defer mem.close()
	res, err := replayInto(ctx, clk, rr, reads, writes, out, size, mem, way.syncEvery, disk)
	if rerr := os.Remove(out); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return res, err
}

// replayMem is the memory of replays, outside the Go heap: one source of
// write data (nothing writes into it) and a read buffer per request in
// flight.
type replayMem struct {
	src  []byte
	bufs [][]byte
}

// newReplayMem maps the memory of a replay of reads and writes with
// depth requests in flight.
func newReplayMem(reads []rangeRead, writes []extent, depth int) (*replayMem, error) {
	var maxRead, maxWrite int64
	for _, r := range reads {
		maxRead = max(maxRead, r.n)
	}
	for _, w := range writes {
		maxWrite = max(maxWrite, w.n)
	}
	m := &replayMem{}
	var err error
	if m.src, err = directio.Map(int(max(maxWrite, directio.Align))); err != nil {
		return nil, err
	}
	fill := rand.NewChaCha8([32]byte{1})
	fill.Read(m.src)
	for range depth {
		b, err := directio.Map(int(maxRead + 2*directio.Align))
		if err != nil {
			m.close()
			return nil, err
		}
		m.bufs = append(m.bufs, b)
	}
	return m, nil
}

func (m *replayMem) close() {
	for _, b := range append(m.bufs, m.src) {
		if b != nil {
			_ = directio.Unmap(b)
		}
	}
}

// replayInto is replayIO with the memory m (its depth len(m.bufs)),
// leaving its output file at out (when it made one) to the caller to
// remove.
func replayInto(ctx context.Context, clk clock.Clock, rr blobstore.RangeReader, reads []rangeRead, writes []extent, out string, size int64, m *replayMem, syncEvery int64, disk string) (IOFloor, error) {
	depth := len(m.bufs)
	res := IOFloor{Reads: len(reads), Writes: len(writes), Depth: depth, SyncEvery: syncEvery}
	for _, r := range reads {
		res.ReadBytes += r.n
	}
	for _, w := range writes {
		res.WriteBytes += w.n
	}
	src, bufs := m.src, m.bufs
	// The order: the next op is a read while the share of read bytes done
	// is below the share of written bytes done.
	type op struct {
		read *rangeRead
		w    extent
	}
	ops := make(chan op, depth)
	m0, cpu0 := readMachine(disk), processCPU()
	t0 := clk.Now()
	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return res, err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return res, err
	}
	if err := allocateExtents(f, writes); err != nil {
		return res, err
	}
	d, err := directio.Open(out, os.O_WRONLY)
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return res, err
	}
	if d != nil {
		defer d.Close()
	}
	// Synced as it goes, when asked, as a restore's file is (floorWays).
	var syncer *directio.Syncer
	if d != nil {
		syncer = directio.StartSyncer(f, syncEvery)
	} else {
		res.SyncEvery = 0 // no direct writes to sync as they go
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(ops)
		var ri, wi int
		var rdone, wdone int64
		for ri < len(reads) || wi < len(writes) {
			var o op
			if wi == len(writes) || (ri < len(reads) && rdone*res.WriteBytes <= wdone*res.ReadBytes) {
				o.read = &reads[ri]
				rdone += reads[ri].n
				ri++
			} else {
				o.w = writes[wi]
				wdone += writes[wi].n
				wi++
			}
			select {
			case ops <- o:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for _, buf := range bufs {
		g.Go(func() error {
			for o := range ops {
				if o.read != nil {
					if _, err := rr.ReadRange(gctx, o.read.name, o.read.off, o.read.n, buf); err != nil {
						return err
					}
					continue
				}
				direct, _, err := directio.WriteAt(d, f, src[:o.w.n], o.w.off)
				if err != nil {
					return fmt.Errorf("write %d bytes at %d: %w", o.w.n, o.w.off, err)
				}
				syncer.Wrote(direct)
			}
			return nil
		})
	}
	err = g.Wait()
	if serr := syncer.Stop(); err == nil {
		err = serr
	}
	if err != nil {
		return res, fmt.Errorf("I/O floor: %w", err)
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("I/O floor: %w", err)
	}
	res.Seconds = clk.Now().Sub(t0).Seconds()
	res.CPUSeconds = processCPU() - cpu0
	res.Machine = machineSince(m0, readMachine(disk), res.Seconds, disk)
	return res, nil
}
