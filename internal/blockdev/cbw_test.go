package blockdev

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cbwOps are changes made at a snapshot's swap to blocks it has not read
// yet, each with the bytes copy-before-write must keep for it: only the
// 4 KiB pieces of the 64 KiB blocks it changes that no earlier change
// kept. inline marks a TryWriteAt that must succeed (its pieces are in
// the page cache).
type cbwOp struct {
	what        string
	off, n      int64
	zero        bool // WriteZeroes (trim when n is odd in blocks)
	try, inline bool
	copied      int64
}

const cbwBS = 64 << 10

var cbwOps = []cbwOp{
	{what: "a page", off: 1*cbwBS + 8<<10, n: 4 << 10, copied: 4 << 10},
	{what: "the same page again", off: 1*cbwBS + 8<<10, n: 4 << 10},
	{what: "inside the kept page", off: 1*cbwBS + 8<<10 + 100, n: 50},
	{what: "100 bytes", off: 2*cbwBS + 5000, n: 100, copied: 4 << 10},
	{what: "10 KiB over four pages", off: 3*cbwBS + 3000, n: 10 << 10, copied: 16 << 10},
	{what: "three blocks, one pwrite", off: 4*cbwBS + 60<<10, n: 76 << 10, copied: 76 << 10},
	{what: "zeroes, a whole block (punched)", off: 7 * cbwBS, n: cbwBS, zero: true, copied: cbwBS},
	{what: "zeroes, 2 KiB", off: 8*cbwBS + 1<<10, n: 2 << 10, zero: true, copied: 4 << 10},
	{what: "zeroes over two half blocks", off: 9*cbwBS + 32<<10, n: cbwBS, zero: true, copied: cbwBS},
	{what: "inline page", off: 11*cbwBS + 4<<10, n: 4 << 10, try: true, inline: true, copied: 4 << 10},
	{what: "inline page again", off: 11*cbwBS + 4<<10, n: 4 << 10, try: true, inline: true},
	{what: "a page, then", off: 12 * cbwBS, n: 4 << 10, copied: 4 << 10},
	{what: "its whole block", off: 12 * cbwBS, n: cbwBS, copied: cbwBS - 4<<10},
	{what: "inline over two blocks", off: 13*cbwBS + 60<<10, n: 8 << 10, try: true, inline: true, copied: 8 << 10},
	{what: "the short last block", off: 16*cbwBS + 10<<10, n: 2 << 10, copied: 4 << 10},
}

// TestCopyBeforeWritePieces: changes of every shape to blocks a running
// snapshot has not read yet (a page, less than a page, several pages,
// several blocks, zeroes of whole and partial blocks, writes on the
// inline path, the short last block) copy only the 4 KiB pieces they
// change (a 4 KiB write copies 4 KiB, not its 64 KiB block), in memory
// and, beyond CBWMemory, in the side file; the snapshot is the volume at
// the swap and the volume is every write.
func TestCopyBeforeWritePieces(t *testing.T) {
	for _, mem := range []int64{0, 3 * 4 << 10} {
		t.Run(fmt.Sprintf("CBWMemory=%d", mem), func(t *testing.T) {
			ctx := context.Background()
			env := newTestEnv(t, Options{BlockSize: cbwBS, CBWMemory: mem})
			const size = 16*cbwBS + 12<<10 // the last block 12 KiB
			model := make([]byte, size)
			rng := rand.New(rand.NewPCG(21, 22))
			for i := range model {
				model[i] = byte(rng.Uint32())
			}
			v := volumeOf(t, env, "v", model)
			atSwap := slices.Clone(model)
			var blocks map[int64]bool
			var total int64
			env.e.hooks.afterSwap = func(string) {
				blocks = map[int64]bool{}
				for _, op := range cbwOps {
					p := make([]byte, op.n)
					for i := range p {
						p[i] = byte(rng.Uint32())
					}
					var err error
					switch {
					case op.zero:
						err = v.WriteZeroes(ctx, op.off, op.n)
						clear(p)
					case op.try:
						var ok bool
						if ok, err = v.TryWriteAt(p, op.off); !ok && err == nil {
							if op.inline {
								t.Errorf("%s: TryWriteAt did not write inline", op.what)
							}
							_, err = v.WriteAt(p, op.off)
						}
					default:
						_, err = v.WriteAt(p, op.off)
					}
					if err != nil {
						t.Fatalf("%s: %v", op.what, err)
					}
					copy(model[op.off:], p)
					if op.copied > 0 {
						for b := op.off / cbwBS; b*cbwBS < op.off+op.n; b++ {
							blocks[b] = true
						}
					}
					total += op.copied
					if p := v.SnapshotProgress(); p.CBWBytes != total || p.CBWBlocks != int64(len(blocks)) || p.BlocksRead != 0 {
						t.Errorf("after %s: %d bytes of %d blocks copied before write, %d blocks read; want %d bytes of %d blocks, none read",
							op.what, p.CBWBytes, p.CBWBlocks, p.BlocksRead, total, len(blocks))
					}
				}
			}
			si, err := env.e.Snapshot(ctx, "v", "s")
			env.e.hooks.afterSwap = nil
			if err != nil {
				t.Fatal(err)
			}
			if si.Stats.CBWBytes != total || si.Stats.CBWBlocks != int64(len(blocks)) {
				t.Errorf("snapshot stats: %d bytes of %d blocks copied, want %d of %d", si.Stats.CBWBytes, si.Stats.CBWBlocks, total, len(blocks))
			}
			checkSnapshot(t, env, "s", atSwap)
			wantImage(t, v, model, "after the snapshot")
			if _, err := env.e.Snapshot(ctx, "v", "s2"); err != nil {
				t.Fatal(err)
			}
			checkSnapshot(t, env, "s2", model)
		})
	}
}

// TestCopyBeforeWriteWhileHydrating: a snapshot of a restored volume
// still hydrating takes the blocks the user wrote (units in the file, the
// rest in the source); changes at its swap to those blocks copy their
// pieces from the source merged with the written units, never inline
// (the source must be fetched), and the snapshot is the volume at the
// swap.
func TestCopyBeforeWriteWhileHydrating(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: cbwBS})
	const size = 16 * cbwBS
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(23, 24))
	for i := range model {
		model[i] = byte(rng.Uint32())
	}
	volumeOf(t, env, "src", model)
	v, held, release := restoreHeld(t, env, "src")
	<-held
	write := func(off, n int64) {
		t.Helper()
		randomWriteAt(t, rng, v, model, off, n)
	}
	for _, b := range []int64{3, 5, 7, 9} { // units written: not hydrated, dirty
		write(b*cbwBS+8<<10, 4<<10)
	}
	atSwap := slices.Clone(model)
	env.e.hooks.afterSwap = func(string) {
		write(3*cbwBS+20<<10, 4<<10) // whole units: the piece comes from the source
		write(3*cbwBS+8<<10, 4<<10)  // the written units' own piece, from the file
		write(5*cbwBS+7, 100)        // merged with the source, copied once
		p := bytes.Repeat([]byte{0x5A}, 4<<10)
		if ok, err := v.TryWriteAt(p, 7*cbwBS+32<<10); ok || err != nil {
			t.Errorf("TryWriteAt to a pending block not hydrated: ok %v, %v; want it left to WriteAt", ok, err)
		}
		write(7*cbwBS+32<<10, 4<<10)
		if err := v.Trim(ctx, 9*cbwBS, cbwBS); err != nil {
			t.Error(err)
		}
		clear(model[9*cbwBS : 10*cbwBS])
	}
	si, err := env.e.Snapshot(ctx, "dst", "mid")
	env.e.hooks.afterSwap = nil
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(4<<10 + 4<<10 + 4<<10 + 4<<10 + cbwBS); si.Stats.CBWBytes != want || si.Stats.CBWBlocks != 4 {
		t.Errorf("copied %d bytes of %d blocks, want %d of 4", si.Stats.CBWBytes, si.Stats.CBWBlocks, want)
	}
	wantImage(t, v, model, "while hydrating")
	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	wantImage(t, v, model, "hydrated")
	checkSnapshot(t, env, "mid", atSwap)
}

// TestCopyBeforeWriteSnapshotFails: a snapshot that fails after the
// user changed pieces of its blocks loses nothing: the next snapshot
// takes those blocks and every other it had taken, and is the volume.
func TestCopyBeforeWriteSnapshotFails(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: cbwBS, CBWMemory: 2 * 4 << 10})
	const size = 32 * cbwBS
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(25, 26))
	fillRandom(rng, model)
	v := volumeOf(t, env, "v", model)
	if _, err := env.e.Snapshot(ctx, "v", "s0"); err != nil {
		t.Fatal(err)
	}
	for b := int64(0); b < 32; b += 2 { // 16 blocks changed since s0
		p := bytes.Repeat([]byte{byte(b + 1)}, 4<<10)
		if _, err := v.WriteAt(p, b*cbwBS+12<<10); err != nil {
			t.Fatal(err)
		}
		copy(model[b*cbwBS+12<<10:], p)
	}
	cctx, cancel := context.WithCancel(ctx)
	env.e.hooks.afterSwap = func(string) {
		for b := int64(0); b < 32; b += 4 {
			randomWriteAt(t, rng, v, model, b*cbwBS+40<<10, 6<<10)
		}
		cancel() // the snapshot fails before it reads a block
	}
	_, err := env.e.Snapshot(cctx, "v", "s1")
	env.e.hooks.afterSwap = nil
	if err == nil {
		t.Fatal("snapshot with its context cancelled succeeded")
	}
	if n := v.DirtyBlocks(); n != 16 {
		t.Errorf("%d dirty blocks after the failed snapshot, want the 16 it took", n)
	}
	if p := v.SnapshotProgress(); p.Running {
		t.Errorf("progress after the failed snapshot: %+v", p)
	}
	// Writes after the failure copy nothing and go through.
	randomWriteAt(t, rng, v, model, 1*cbwBS, 4<<10)
	si, err := env.e.Snapshot(ctx, "v", "s2")
	if err != nil {
		t.Fatal(err)
	}
	if si.Stats.BlocksRead != 17 || si.Stats.CBWBlocks != 0 {
		t.Errorf("second snapshot read %d blocks and copied %d, want 17 and none", si.Stats.BlocksRead, si.Stats.CBWBlocks)
	}
	checkSnapshot(t, env, "s2", model)
}

// TestCopyBeforeWritePiecesConcurrent: writers of any size and alignment
// (through WriteAt and TryWriteAt), zeroes and trims run throughout
// several snapshots of a volume of 64 KiB blocks with a CBW memory of
// three pieces (most pieces go to the side file, whose slots are
// reused), and of 64 pieces (the snapshot moves pieces to the side file
// while its workers read their blocks: spill); each snapshot is the
// volume at its swap, captured with the writers held there.
func TestCopyBeforeWritePiecesConcurrent(t *testing.T) {
	for _, mem := range []int64{3, 64} {
		t.Run(fmt.Sprintf("%d-pieces", mem), func(t *testing.T) { testCopyBeforeWritePiecesConcurrent(t, mem*4<<10) })
	}
}

func testCopyBeforeWritePiecesConcurrent(t *testing.T, cbwMemory int64) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: cbwBS, CBWMemory: cbwMemory})
	var spilled atomic.Int64
	env.e.hooks.spilled = func(_ string, n int64) { spilled.Add(n) }
	const size = 8<<20 + 4<<10
	v, err := env.e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	gate := captureAtSwap(t, env, v)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 27))
			for {
				select {
				case <-stop:
					return
				default:
				}
				gate.RLock()
				off := rng.Int64N(size / 512 * 512)
				n := min(1+rng.Int64N(3*cbwBS), size-off)
				switch rng.IntN(8) {
				case 0:
					_ = v.Trim(ctx, off/4096*4096, min(4096*(1+rng.Int64N(40)), size-off/4096*4096))
				case 1, 2:
					p := make([]byte, n)
					fillRandom(rng, p)
					if ok, err := v.TryWriteAt(p, off); err != nil {
						t.Error(err)
					} else if !ok {
						_, _ = v.WriteAt(p, off)
					}
				default:
					randomWriteAt(t, rng, v, nil, off, n)
				}
				gate.RUnlock()
			}
		})
	}
	var imgs [][]byte
	var copied int64
	for i := range 5 {
		for v.DirtyBlocks() < 60 {
			time.Sleep(time.Millisecond)
		}
		si, err := env.e.Snapshot(ctx, "vol", fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatal(err)
		}
		copied += si.Stats.CBWBytes
		imgs = append(imgs, gate.captured)
	}
	close(stop)
	wg.Wait()
	t.Logf("copied before write over %d snapshots: %d bytes, %d pieces moved to the side file", len(imgs), copied, spilled.Load())
	for i, img := range imgs {
		checkSnapshot(t, env, fmt.Sprintf("c%d", i), img)
	}
}

// TestCopyBeforeWriteSpill: once fewer than spillLow memory slots are
// free, the snapshot moves kept pieces to the side file, a batch at a
// time, until spillHigh are, so that writers keep copying into memory
// and put nothing in the side file themselves; the snapshot, whose
// pieces are partly in memory and partly moved, is the volume at the
// swap.
func TestCopyBeforeWriteSpill(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: cbwBS, CBWMemory: 4 * arenaBytes})
	const size, writes = 16 << 20, 3000 // 4,096 pages; 1,024 memory slots
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(51, 52))
	fillRandom(rng, model)
	v := volumeOf(t, env, "v", model)
	atSwap := slices.Clone(model)
	moved := make(chan int64, 64)
	env.e.hooks.spilled = func(_ string, n int64) { moved <- n }
	var waits int
	env.e.hooks.afterSwap = func(string) {
		v.mu.Lock()
		s := v.snap
		v.mu.Unlock()
		free := func() int64 {
			v.mu.Lock()
			defer v.mu.Unlock()
			return s.memFreeLocked()
		}
		for _, pg := range rng.Perm(size / (4 << 10))[:writes] {
			randomWriteAt(t, rng, v, model, int64(pg)<<12, 4<<10)
			if free() >= s.spillLow() {
				continue
			}
			waits++
			for free() < s.spillHigh() {
				select {
				case <-moved:
				case <-time.After(time.Minute): // a guard against hanging, not a measure
					t.Fatalf("after %d writes, %d memory slots free (spillLow %d) and nothing moved to the side file", writes, free(), s.spillLow())
				}
			}
		}
	}
	si, err := env.e.Snapshot(ctx, "v", "s")
	env.e.hooks.afterSwap, env.e.hooks.spilled = nil, nil
	if err != nil {
		t.Fatal(err)
	}
	if si.Stats.CBWBytes != writes*4<<10 {
		t.Errorf("copied %d bytes before write, want %d", si.Stats.CBWBytes, writes*4<<10)
	}
	if si.Stats.CBWSideBytes != 0 {
		t.Errorf("writers put %d bytes in the side file themselves, want none", si.Stats.CBWSideBytes)
	}
	if least := int64(writes-1024) * 4 << 10; si.Stats.CBWSpilledBytes < least {
		t.Errorf("%d bytes moved to the side file, want at least %d", si.Stats.CBWSpilledBytes, least)
	}
	t.Logf("%d spills, %d bytes moved", waits, si.Stats.CBWSpilledBytes)
	checkSnapshot(t, env, "s", atSwap)
	wantImage(t, v, model, "after the snapshot")
}

// BenchmarkCopyBeforeWrite: a snapshot held at its swap while 4 KiB
// writes hit distinct random pages of its pending blocks (every write
// copies its page: 4,096 writes, 16 MiB kept), with the pieces kept in
// memory (memory: 16 arenas of the default CBWMemory), all in the side
// file (side: CBWMemory of one byte), or in 4 MiB of memory, the rest
// moved to the side file by the snapshot or, when memory is full, put
// there by the writer (spill); none is the same writes without a
// snapshot. cpu-µs/write is the writing thread's CPU (RUSAGE_THREAD),
// proc-cpu-µs/write the whole process's over the same writes, side-MiB
// what the writer put in the side file itself.
func BenchmarkCopyBeforeWrite(b *testing.B) {
	for _, c := range []struct {
		name string
		mem  int64
		snap bool
	}{{"memory", 64 << 20, true}, {"side", 1, true}, {"spill", 4 << 20, true}, {"none", 64 << 20, false}} {
		b.Run(c.name, func(b *testing.B) { benchCopyBeforeWrite(b, c.mem, c.snap) })
	}
}

func benchCopyBeforeWrite(b *testing.B, cbwMemory int64, snap bool) {
	ctx := context.Background()
	const size, writes = 32 << 20, 4096
	env := newTestEnv(b, Options{BlockSize: cbwBS, CBWMemory: cbwMemory})
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(31, 32))
	fillRandom(rng, data)
	v, err := env.e.CreateVolume(ctx, "v", size)
	if err != nil {
		b.Fatal(err)
	}
	p := make([]byte, 4<<10)
	fillRandom(rng, p)
	var thread, proc time.Duration
	var n int
	var side int64
	write := func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		pages := rng.Perm(size / (4 << 10))[:writes]
		t0, p0 := threadCPU(b), usage(b)
		for _, pg := range pages {
			if _, err := v.WriteAt(p, int64(pg)<<12); err != nil {
				b.Error(err)
				return
			}
		}
		t1, p1 := threadCPU(b), usage(b)
		thread += t1 - t0
		proc += time.Duration(p1.Utime.Nano() + p1.Stime.Nano() - p0.Utime.Nano() - p0.Stime.Nano())
		n += writes
	}
	if snap {
		env.e.hooks.afterSwap = func(string) { write() }
	}
	i := 0
	for b.Loop() {
		b.StopTimer()
		if _, err := v.WriteAt(data, 0); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if !snap {
			write()
			continue
		}
		si, err := env.e.Snapshot(ctx, "v", fmt.Sprintf("s%d", i))
		if err != nil {
			b.Fatal(err)
		}
		if si.Stats.CBWBytes != writes*4<<10 {
			b.Fatalf("copied %d bytes before write, want %d", si.Stats.CBWBytes, writes*4<<10)
		}
		side += si.Stats.CBWSideBytes
		i++
	}
	b.ReportMetric(float64(thread.Nanoseconds())/1e3/float64(n), "cpu-µs/write")
	b.ReportMetric(float64(proc.Nanoseconds())/1e3/float64(n), "proc-cpu-µs/write")
	b.ReportMetric(float64(side)/(1<<20)/float64(max(i, 1)), "side-MiB")
}

// threadCPU is the calling thread's CPU time so far.
func threadCPU(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestCopyBeforeWriteArenasReady: a snapshot makes each arena of kept
// pieces ready (allocated, every page resident) before a writer needs it,
// so no writer makes one itself; it never holds more than CBWMemory in
// arenas, ready or in use, makes none ready once the last is taken, and
// drops the one left ready when it ends. The pieces beyond CBWMemory go to
// the side file and the snapshot is the volume at the swap.
func TestCopyBeforeWriteArenasReady(t *testing.T) {
	ctx := context.Background()
	const arenas = 3
	env := newTestEnv(t, Options{BlockSize: cbwBS, CBWMemory: arenas * arenaBytes})
	const size = 8 << 20
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(33, 34))
	fillRandom(rng, model)
	v := volumeOf(t, env, "v", model)
	atSwap := slices.Clone(model)
	ready := make(chan int64, 16)
	env.e.hooks.arenaReady = func(_ string, i int64) { ready <- i }
	var s *snapState
	held := func() (inUse, kept int64, r []byte) {
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, a := range s.arenas {
			inUse += int64(len(a))
		}
		return inUse, inUse + int64(len(s.ready)), s.ready
	}
	env.e.hooks.afterSwap = func(string) {
		v.mu.Lock()
		s = v.snap
		v.mu.Unlock()
		pages := rng.Perm(size / (4 << 10))
		perArena := arenaBytes / (4 << 10)
		for k := range int64(arenas) {
			if i := <-ready; i != k {
				t.Fatalf("arena %d made ready, want %d", i, k)
			}
			_, total, r := held()
			if total > arenas*arenaBytes {
				t.Errorf("arena %d ready: %d bytes of arenas held, CBWMemory is %d", k, total, arenas*arenaBytes)
			}
			res := make([]byte, len(r)/os.Getpagesize())
			if len(r) > 0 {
				if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&r[0])), uintptr(len(r)), uintptr(unsafe.Pointer(&res[0]))); e != 0 {
					t.Fatalf("mincore: %v", e)
				}
			}
			for pg, in := range res {
				if in&1 == 0 {
					t.Fatalf("arena %d ready with page %d not resident", k, pg)
				}
			}
			for _, pg := range pages[k*int64(perArena) : (k+1)*int64(perArena)] {
				randomWriteAt(t, rng, v, model, int64(pg)<<12, 4<<10)
			}
		}
		for _, pg := range pages[arenas*perArena : arenas*perArena+100] { // to the side file
			randomWriteAt(t, rng, v, model, int64(pg)<<12, 4<<10)
		}
		if inUse, total, r := held(); inUse != arenas*arenaBytes || r != nil || total != inUse {
			t.Errorf("CBWMemory full: %d bytes of arenas in use, %d ready; want %d and none", inUse, len(r), arenas*arenaBytes)
		}
	}
	si, err := env.e.Snapshot(ctx, "v", "s")
	env.e.hooks.afterSwap, env.e.hooks.arenaReady = nil, nil
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(arenas*arenaBytes + 100<<12); si.Stats.CBWBytes != want {
		t.Errorf("copied %d bytes before write, want %d", si.Stats.CBWBytes, want)
	}
	if s.made != 0 {
		t.Errorf("writers made %d arenas themselves, want none (each made ready first)", s.made)
	}
	if s.ready != nil {
		t.Errorf("the snapshot ended holding a ready arena of %d bytes", len(s.ready))
	}
	if len(ready) != 0 {
		t.Errorf("%d arenas made ready beyond CBWMemory", len(ready))
	}
	checkSnapshot(t, env, "s", atSwap)
	wantImage(t, v, model, "after the snapshot")

	// A snapshot that ends with an arena ready drops it.
	atSwap = slices.Clone(model)
	env.e.hooks.arenaReady = func(_ string, i int64) { ready <- i }
	env.e.hooks.afterSwap = func(string) {
		v.mu.Lock()
		s = v.snap
		v.mu.Unlock()
		<-ready
		randomWriteAt(t, rng, v, model, 5<<12, 4<<10)
		if i := <-ready; i != 1 {
			t.Errorf("arena %d made ready after the first was taken, want 1", i)
		}
	}
	_, err = env.e.Snapshot(ctx, "v", "s2")
	env.e.hooks.afterSwap, env.e.hooks.arenaReady = nil, nil
	if err != nil {
		t.Fatal(err)
	}
	if s.ready != nil || s.arenas[1] != nil {
		t.Errorf("the snapshot ended holding a ready arena of %d bytes", len(s.ready))
	}
	checkSnapshot(t, env, "s2", atSwap)
}

// TestPopulate: populate leaves every page of its slice resident, with
// madvise and with the per-page writes it falls back to (a start not
// page-aligned, as on a kernel without MADV_POPULATE_WRITE).
func TestPopulate(t *testing.T) {
	for _, skip := range []int{0, 1} {
		a, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS) // never touched
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(a)
		populate(a[skip:])
		res := make([]byte, len(a)/os.Getpagesize())
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&a[0])), uintptr(len(a)), uintptr(unsafe.Pointer(&res[0]))); e != 0 {
			t.Fatalf("mincore: %v", e)
		}
		for pg, in := range res {
			if in&1 == 0 {
				t.Fatalf("start %d bytes in: page %d not resident", skip, pg)
			}
		}
	}
}

// BenchmarkWriteSnapshotWindow is coffer bench nbd's fixed window of
// random writes during a full snapshot, in process (docs/design.md,
// "Session perf14s"): two writers (one per core of the development VM, as
// fio and the NBD connection keep both busy) write random 4 KiB pages of
// a 512 MiB volume of fresh random data without pause, each trying
// TryWriteAt first and WriteAt when it refuses (the NBD server's inline
// path and its fallback), for the first 500 ms from the instant a full
// snapshot starts, then for 500 ms once it has ended. Reported: the
// writes in the first window ÷ those in the second (window-ratio), the
// process's CPU-µs per write in each (busy, idle), what the writes copied
// before write in the window (copied-MiB; side-MiB of it the writers
// put in the side file, spilled-MiB the snapshot moved there), the share of the snapshot's blocks read in the window (read),
// and the share of writes done inline (inline).
func BenchmarkWriteSnapshotWindow(b *testing.B) {
	ctx := context.Background()
	const size = 512 << 20
	const window = 500 * time.Millisecond
	e := newRealEngine(b, Options{})
	v, err := e.CreateVolume(ctx, "v", size)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(41, 42))
	chunk := make([]byte, 8<<20)
	writeFor := func(seed uint64) (n, inline int) {
		var wg sync.WaitGroup
		var total, inl atomic.Int64
		stop := make(chan struct{})
		for w := range 2 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(seed, uint64(w)))
				p := make([]byte, 4<<10)
				fillRandom(r, p)
				for {
					select {
					case <-stop:
						return
					default:
					}
					off := r.Int64N(size>>12) << 12
					ok, err := v.TryWriteAt(p, off)
					if ok {
						inl.Add(1)
					} else {
						_, err = v.WriteAt(p, off)
					}
					if err != nil {
						b.Error(err)
						return
					}
					total.Add(1)
				}
			})
		}
		time.Sleep(window)
		close(stop)
		wg.Wait()
		return int(total.Load()), int(inl.Load())
	}
	var ratio, busyCPU, idleCPU, copied, side, spilled, read, inline float64
	k := 0
	for b.Loop() {
		b.StopTimer()
		for off := int64(0); off < size; off += int64(len(chunk)) { // every block dirty, new contents
			fillRandom(rng, chunk)
			if _, err := v.WriteAt(chunk, off); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		k++
		done := make(chan error, 1)
		cpu0 := cpuSeconds()
		go func() {
			_, err := e.Snapshot(ctx, "v", fmt.Sprintf("s%d", k))
			done <- err
		}()
		busy, inl := writeFor(uint64(k))
		cpu1 := cpuSeconds()
		p := v.SnapshotProgress()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		cpu2 := cpuSeconds()
		ref, _ := writeFor(uint64(k))
		cpu3 := cpuSeconds()
		ratio += float64(busy) / float64(max(ref, 1))
		busyCPU += (cpu1 - cpu0) * 1e6 / float64(max(busy, 1))
		idleCPU += (cpu3 - cpu2) * 1e6 / float64(max(ref, 1))
		copied += float64(p.CBWBytes) / (1 << 20)
		side += float64(p.CBWSideBytes) / (1 << 20)
		spilled += float64(p.CBWSpilledBytes) / (1 << 20)
		read += float64(p.BlocksRead) / float64(max(p.BlocksTotal, 1))
		inline += float64(inl) / float64(max(busy, 1))
	}
	f := float64(k)
	b.ReportMetric(ratio/f, "window-ratio")
	b.ReportMetric(busyCPU/f, "busy-CPU-µs/write")
	b.ReportMetric(idleCPU/f, "idle-CPU-µs/write")
	b.ReportMetric(copied/f, "copied-MiB")
	b.ReportMetric(side/f, "side-MiB")
	b.ReportMetric(spilled/f, "spilled-MiB")
	b.ReportMetric(read/f, "read")
	b.ReportMetric(inline/f, "inline")
}

// TestSnapshotWriteRightAfterSwap: a write that copies the first piece of
// a snapshot right after the swap, before the snapshot has asked for its
// first arena (the write asks for it too), stalls nothing: the snapshot
// commits and holds the bytes of its instant. The snapshot used to ask
// after the swap with a blocking send; finding the write's request there
// first, it waited for ever, since the goroutine that takes requests
// starts after it (coffer bench's paced writer hung CI so).
func TestSnapshotWriteRightAfterSwap(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: cbwBS})
	model := make([]byte, 16*cbwBS)
	rng := rand.New(rand.NewPCG(25, 26))
	for i := range model {
		model[i] = byte(rng.Uint32())
	}
	v := volumeOf(t, env, "v", model)
	atSwap := slices.Clone(model)
	env.e.hooks.published = func(string) {
		randomWriteAt(t, rng, v, model, 3*cbwBS, 4<<10) // a taken block: copies
	}
	done := make(chan error, 1)
	go func() {
		_, err := env.e.Snapshot(ctx, "v", "s")
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute): // a deadlock's bound, not a timing
		// Let the stalled send go, so that the test can end.
		v.mu.Lock()
		s := v.snap
		v.mu.Unlock()
		if s != nil {
			select {
			case <-s.prepare:
			default:
			}
		}
		<-done
		t.Fatal("the snapshot stalled after a write right after its swap")
	}
	env.e.hooks.published = nil
	checkSnapshot(t, env, "s", atSwap)
	wantImage(t, v, model, "after the snapshot")
}
