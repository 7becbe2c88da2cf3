package blockdev

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"coffer/internal/lowprio"
)

// BenchmarkWriteParallel: writes of 4 KiB at random 4 KiB offsets, and
// of 1 MiB at random 1 MiB offsets, into a 64 MiB volume (the page
// cache), by 1 and by 4 writers at once, each on an OS thread of its
// own as the NBD server's connection readers are, each write tried with
// TryWriteAt and done with WriteAt when refused. proc-cpu-µs/write is
// the whole process's CPU per write, the figure that holds on a busy
// machine; refused/write the share TryWriteAt refused. With ownP each
// writer holds lowprio.SyscallThreadP as the NBD server's readers do.
func BenchmarkWriteParallel(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		for _, writers := range []int{1, 4} {
			for _, ownP := range []bool{false, true} {
				if ownP && writers == 1 {
					continue // the first thread adds no P
				}
				b.Run(fmt.Sprintf("size=%dKiB/writers=%d/ownP=%v", size>>10, writers, ownP), func(b *testing.B) {
					benchWriteParallel(b, size, writers, ownP)
				})
			}
		}
	}
}

func benchWriteParallel(b *testing.B, size, writers int, ownP bool) {
	ctx := context.Background()
	const volSize = 64 << 20
	env := newTestEnv(b, Options{})
	v, err := env.e.CreateVolume(ctx, "v", volSize)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	// Every block written once first: the page cache holds the file.
	full := make([]byte, 1<<20)
	for i := range full {
		full[i] = byte(i*7 + 1)
	}
	for off := int64(0); off < volSize; off += int64(len(full)) {
		if _, err := v.WriteAt(full, off); err != nil {
			b.Fatal(err)
		}
	}
	slots := volSize / size
	var refused int64
	var mu sync.Mutex
	b.SetBytes(int64(size))
	var wg sync.WaitGroup
	var ready sync.WaitGroup // every writer has its thread (and P)
	ready.Add(writers)
	start := make(chan struct{})
	for w := range writers {
		n := b.N / writers
		if w < b.N%writers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if ownP {
				defer lowprio.SyscallThreadP()()
			}
			ready.Done()
			<-start
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			p := make([]byte, size)
			for i := range p {
				p[i] = byte(w + i)
			}
			var r int64
			for range n {
				off := int64(rng.IntN(slots)) * int64(size)
				ok, err := v.TryWriteAt(p, off)
				if !ok {
					r++
					_, err = v.WriteAt(p, off)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
			mu.Lock()
			refused += r
			mu.Unlock()
		}()
	}
	ready.Wait()
	p0 := usage(b)
	t0 := time.Now()
	b.ResetTimer()
	close(start)
	wg.Wait()
	b.StopTimer()
	wall := time.Since(t0)
	p1 := usage(b)
	cpu := time.Duration(p1.Utime.Nano() + p1.Stime.Nano() - p0.Utime.Nano() - p0.Stime.Nano())
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "proc-cpu-µs/write")
	b.ReportMetric(float64(refused)/float64(b.N), "refused/write")
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cpus")
}
