package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/trace"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// ComputeLimit is the compute limit of a full snapshot: the time the
// hashing and compression of every non-zero block of the disk take on all
// cores, with the chunk store's own code (chunkstore.Store.Encode: the
// same hash, codec, level and decisions as Put), and nothing else: no
// reads of the volume, no index, no pack writes. A snapshot cannot be
// faster on this machine unless the codecs are.
type ComputeLimit struct {
	// Seconds is the summed wall time of the hashing and compression,
	// divided by the number of workers (one per core, all busy at once).
	Seconds float64 `json:"seconds"`
	// CPUSeconds is the CPU time of the same work (thread CPU clocks).
	CPUSeconds float64 `json:"cpuSeconds"`
	// ProcessCPUSeconds is the whole process's CPU time over the
	// measurement, the untimed reads of the image included, and
	// ReadCPUSeconds the workers' part of it spent reading. What the
	// process spent beyond the work and the reads is the Go runtime's
	// own threads (handing cores between threads around the codec's cgo
	// calls, the garbage collector): a snapshot's CPU, taken for the
	// process, includes its share of that too.
	ProcessCPUSeconds float64 `json:"processCPUSeconds"`
	ReadCPUSeconds    float64 `json:"readCPUSeconds"`
	// ContextSwitches is how often the work's threads gave up their core
	// (waiting or preempted) and Involuntary how often of those the
	// kernel preempted them, as in the snapshot's Internals.
	ContextSwitches            int64   `json:"contextSwitches"`
	InvoluntaryContextSwitches int64   `json:"involuntaryContextSwitches"`
	Workers                    int     `json:"workers"`
	Blocks                     int64   `json:"blocks"`      // non-zero blocks
	StoredBytes                int64   `json:"storedBytes"` // what they would take in packs
	Machine                    Machine `json:"machine"`     // over the whole measurement
}

// computeBatch is how many blocks a worker reads (untimed) before it
// hashes and compresses them (timed).
const computeBatch = 16

// computeLimit measures the compute limit of a full snapshot of the image
// as it was when the full snapshot ran, right after it, so that the
// machine is in the same state.
func (r *runner) computeLimit(ctx context.Context) error {
	f, err := os.Open(r.image)
	if err != nil {
		return err
	}
	defer f.Close()
	// The blocks of the data segments, in batches of at most
	// computeBatch blocks.
	var batches []extent // in blocks
	for _, s := range r.info.segs {
		if s.kind == kindZero {
			continue
		}
		for b, end := s.off/blockSize, (s.off+s.n)/blockSize; b < end; b += computeBatch {
			batches = append(batches, extent{b, min(computeBatch, end-b)})
		}
	}
	workers := runtime.GOMAXPROCS(0)
	out := &ComputeLimit{Workers: workers}
	var next, wallNs, cpuNs, readNs, blocks, stored, csw, icsw atomic.Int64
	m0, t0, pcpu0 := readMachine(r.probe.disk), r.clk.Now(), processCPU()
	region := trace.StartRegion(ctx, "compute limit") // for --trace
	g, gctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			// One thread per worker, so that its CPU clock is the work's.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			buf := make([]byte, computeBatch*blockSize)
			var data [][]byte
			for {
				i := next.Add(1) - 1
				if i >= int64(len(batches)) {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				bt := batches[i]
				r0 := threadCPU()
				if _, err := f.ReadAt(buf[:bt.n*blockSize], bt.off*blockSize); err != nil {
					return fmt.Errorf("read image: %w", err)
				}
				// Zero blocks are skipped, as the snapshot skips them.
				data = data[:0]
				for k := range bt.n {
					if blk := buf[k*blockSize : (k+1)*blockSize]; !allZero(blk) {
						data = append(data, blk)
					}
				}
				t0, c0, s0 := r.clk.Now(), threadCPU(), threadSwitches()
				readNs.Add(int64(c0 - r0))
				var ns int64
				for _, blk := range data {
					_, n := r.cs.Encode(blk)
					ns += int64(n)
				}
				wallNs.Add(int64(r.clk.Now().Sub(t0)))
				cpuNs.Add(int64(threadCPU() - c0))
				s1 := threadSwitches()
				csw.Add(s1[0] - s0[0])
				icsw.Add(s1[1] - s0[1])
				blocks.Add(int64(len(data)))
				stored.Add(ns)
			}
		})
	}
	err = g.Wait()
	region.End()
	if err != nil {
		return fmt.Errorf("compute limit: %w", err)
	}
	out.ProcessCPUSeconds = processCPU() - pcpu0
	out.ReadCPUSeconds = time.Duration(readNs.Load()).Seconds()
	out.Machine = machineSince(m0, readMachine(r.probe.disk), r.since(t0), r.probe.disk)
	out.Seconds = time.Duration(wallNs.Load()).Seconds() / float64(workers)
	out.CPUSeconds = time.Duration(cpuNs.Load()).Seconds()
	out.Blocks, out.StoredBytes, out.ContextSwitches = blocks.Load(), stored.Load(), csw.Load()+icsw.Load()
	out.InvoluntaryContextSwitches = icsw.Load()
	r.res.Coffer.FullComputeLimit = out
	r.logf("compute limit of a full snapshot: %.2fs on %d cores (%.2f CPU-s, %d context switches, %d preempted) to hash and compress %d blocks into %.1f MiB; the process %.2f CPU-s meanwhile (reading the image %.2f); %s",
		out.Seconds, workers, out.CPUSeconds, out.ContextSwitches, out.InvoluntaryContextSwitches, out.Blocks, mib(out.StoredBytes), out.ProcessCPUSeconds, out.ReadCPUSeconds, out.Machine)
	return nil
}

// threadSwitches is how many times the calling thread gave up its core,
// voluntarily and preempted.
func threadSwitches() [2]int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return [2]int64{}
	}
	return [2]int64{ru.Nvcsw, ru.Nivcsw}
}

// threadCPU is the CPU time of the calling thread.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
