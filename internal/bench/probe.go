package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"coffer/internal/blobstore"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
)

// Internals says where a timed Coffer step spent its time: the process's
// CPU time, and the calls it made to the blob store and the chunk index
// with their summed duration (summed over goroutines, so it can exceed the
// wall time). It is how a missed target is explained.
type Internals struct {
	CPUSeconds         float64 `json:"cpuSeconds"`     // user+system of the process
	SystemSeconds      float64 `json:"systemSeconds"`  // the system (kernel) part of CPUSeconds
	CPUUtilization     float64 `json:"cpuUtilization"` // CPU seconds ÷ (wall seconds × cores)
	BlobPuts           int64   `json:"blobPuts"`
	BlobPutSeconds     float64 `json:"blobPutSeconds"`
	BlobPutBytes       int64   `json:"blobPutBytes"`
	BlobGets           int64   `json:"blobGets"` // Get and GetRange
	BlobGetSeconds     float64 `json:"blobGetSeconds"`
	BlobGetBytes       int64   `json:"blobGetBytes"`
	IndexLookups       int64   `json:"indexLookups"` // Lookup calls
	IndexLookupIDs     int64   `json:"indexLookupIds"`
	IndexLookupSeconds float64 `json:"indexLookupSeconds"`
	IndexAdds          int64   `json:"indexAdds"`
	IndexAddSeconds    float64 `json:"indexAddSeconds"`
	// PeakRSSBytes is the process's peak resident set size during the
	// step.
	PeakRSSBytes int64 `json:"peakRSSBytes"`
	// ContextSwitches counts the times the process's threads gave up
	// their core: waiting (for a lock, a wakeup, I/O) or preempted by the
	// kernel for another thread (Involuntary, of those). A step whose
	// cores were not kept busy and whose threads switched often waited on
	// itself.
	ContextSwitches            int64 `json:"contextSwitches"`
	InvoluntaryContextSwitches int64 `json:"involuntaryContextSwitches"`
	// Machine is what every process did meanwhile.
	Machine Machine `json:"machine"`
}

// readsInFlight is the blob reads under way on average over a step of
// secs seconds: their summed time ÷ the step's.
func (in *Internals) readsInFlight(secs float64) float64 {
	if in == nil || secs <= 0 {
		return 0
	}
	return in.BlobGetSeconds / secs
}

// probe counts calls into the blob store and the chunk index.
type probe struct {
	clk                                clock.Clock
	puts, putNs, putBytes, gets, getNs atomic.Int64
	getBytes                           atomic.Int64
	lookups, lookupIDs, lookupNs       atomic.Int64
	adds, addNs                        atomic.Int64
	trace                              readTrace // ranged reads, while on
	rss                                rssMeter
	disk                               string // the bench directory's, in /proc/diskstats
}

func (p *probe) since(t0 time.Time, into *atomic.Int64) { into.Add(int64(p.clk.Now().Sub(t0))) }

// mark starts measuring a step.
type mark struct {
	p    *probe
	cpu  float64
	sys  float64
	csw  [2]int64
	wall time.Time
	vals [11]int64
	mach machineCounters
}

func (p *probe) values() [11]int64 {
	return [11]int64{p.puts.Load(), p.putNs.Load(), p.putBytes.Load(), p.gets.Load(), p.getNs.Load(),
		p.lookups.Load(), p.lookupIDs.Load(), p.lookupNs.Load(), p.adds.Load(), p.addNs.Load(), p.getBytes.Load()}
}

// contextSwitches returns the process's voluntary and involuntary
// context switches so far.
func contextSwitches() [2]int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return [2]int64{}
	}
	return [2]int64{ru.Nvcsw, ru.Nivcsw}
}

// processCPU returns the process's user+system CPU time in seconds.
func processCPU() float64 {
	total, _ := cpuSeconds()
	return total
}

// cpuSeconds returns the process's user+system and system CPU time.
func cpuSeconds() (total, system float64) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9, float64(ru.Stime.Nano()) / 1e9
}

func (p *probe) start() mark {
	p.rss.start()
	cpu, sys := cpuSeconds()
	return mark{p: p, cpu: cpu, sys: sys, csw: contextSwitches(), wall: p.clk.Now(), vals: p.values(), mach: readMachine(p.disk)}
}

// stop returns what happened since start; cores is for the utilization.
func (m mark) stop(cores int) Internals {
	v := m.p.values()
	d := func(i int) int64 { return v[i] - m.vals[i] }
	s := func(i int) float64 { return float64(d(i)) / 1e9 }
	cpu, sys := cpuSeconds()
	csw := contextSwitches()
	in := Internals{
		CPUSeconds: cpu - m.cpu, SystemSeconds: sys - m.sys,
		ContextSwitches: csw[0] + csw[1] - m.csw[0] - m.csw[1], InvoluntaryContextSwitches: csw[1] - m.csw[1],
		BlobPuts: d(0), BlobPutSeconds: s(1), BlobPutBytes: d(2), BlobGets: d(3), BlobGetSeconds: s(4), BlobGetBytes: d(10),
		IndexLookups: d(5), IndexLookupIDs: d(6), IndexLookupSeconds: s(7), IndexAdds: d(8), IndexAddSeconds: s(9),
		PeakRSSBytes: m.p.rss.peak(),
	}
	wall := m.p.clk.Now().Sub(m.wall).Seconds()
	if wall > 0 && cores > 0 {
		in.CPUUtilization = in.CPUSeconds / (wall * float64(cores))
	}
	in.Machine = machineSince(m.mach, readMachine(m.p.disk), wall, m.p.disk)
	return in
}

// probedBlobs is a blob store that reports to a probe.
type probedBlobs struct {
	blobstore.Store
	p *probe
}

func (b probedBlobs) Put(ctx context.Context, name string, data []byte) error {
	t0 := b.p.clk.Now()
	err := b.Store.Put(ctx, name, data)
	b.p.since(t0, &b.p.putNs)
	b.p.puts.Add(1)
	b.p.putBytes.Add(int64(len(data)))
	return err
}

// ReadRange forwards to the store's blobstore.RangeReader, if it has one.
func (b probedBlobs) ReadRange(ctx context.Context, name string, off, n int64, buf []byte) ([]byte, error) {
	rr, ok := b.Store.(blobstore.RangeReader)
	if !ok {
		return b.GetRange(ctx, name, off, n)
	}
	b.p.trace.record(ctx, name, off, n)
	t0 := b.p.clk.Now()
	data, err := rr.ReadRange(ctx, name, off, n, buf)
	b.p.since(t0, &b.p.getNs)
	b.p.gets.Add(1)
	b.p.getBytes.Add(int64(len(data)))
	return data, err
}

func (b probedBlobs) Get(ctx context.Context, name string) ([]byte, error) {
	t0 := b.p.clk.Now()
	data, err := b.Store.Get(ctx, name)
	b.p.since(t0, &b.p.getNs)
	b.p.gets.Add(1)
	b.p.getBytes.Add(int64(len(data)))
	b.p.trace.record(ctx, name, 0, int64(len(data)))
	return data, err
}

func (b probedBlobs) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	b.p.trace.record(ctx, name, off, n)
	t0 := b.p.clk.Now()
	data, err := b.Store.GetRange(ctx, name, off, n)
	b.p.since(t0, &b.p.getNs)
	b.p.gets.Add(1)
	b.p.getBytes.Add(int64(len(data)))
	return data, err
}

// probedIndex is a chunk index that reports to a probe.
type probedIndex struct {
	chunkstore.Index
	p *probe
}

func (x probedIndex) Lookup(ctx context.Context, ids []chunk.ID) (map[chunk.ID]chunkstore.Entry, error) {
	t0 := x.p.clk.Now()
	m, err := x.Index.Lookup(ctx, ids)
	x.p.since(t0, &x.p.lookupNs)
	x.p.lookups.Add(1)
	x.p.lookupIDs.Add(int64(len(ids)))
	return m, err
}

func (x probedIndex) Add(ctx context.Context, entries []chunkstore.Entry) error {
	t0 := x.p.clk.Now()
	err := x.Index.Add(ctx, entries)
	x.p.since(t0, &x.p.addNs)
	x.p.adds.Add(1)
	return err
}

// ForEachID forwards to the index when it can list IDs (the chunk store
// builds its known-ID filter with it).
func (x probedIndex) ForEachID(ctx context.Context, fn func(chunk.ID)) error {
	if l, ok := x.Index.(chunkstore.IDLister); ok {
		return l.ForEachID(ctx, fn)
	}
	return fmt.Errorf("index cannot list IDs: %w", errors.ErrUnsupported)
}
