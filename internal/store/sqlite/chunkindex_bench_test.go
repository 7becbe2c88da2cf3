package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
)

// BenchmarkChunkIndexAdd adds the index entries of a 4 GiB bench snapshot
// (32768 chunks in 40 packs) to an empty index: one Add per pack, as the
// chunk store did, or all in one Add sorted by ID, as it does since its
// adds are gathered (docs/design.md, "Write path and durability").
func BenchmarkChunkIndexAdd(b *testing.B) {
	const chunks, packs = 32768, 40
	rng := rand.New(rand.NewPCG(1, 2))
	entries := make([]chunkstore.Entry, chunks)
	for i := range entries {
		var id chunk.ID
		for j := range id {
			id[j] = byte(rng.Uint32())
		}
		p := i * packs / chunks
		entries[i] = chunkstore.Entry{ID: id, Pack: fmt.Sprintf("packs/p%02d", p), Offset: int64(i%(chunks/packs)) * 40000,
			Length: 30000, RawLength: 65536, Compression: chunkstore.CompressionZstd}
	}
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b chunkstore.Entry) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	for _, mode := range []string{"per-pack", "one-sorted"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			cpu0 := cpuTime()
			for b.Loop() {
				b.StopTimer()
				s, err := Open(ctx, b.TempDir()+"/index.db")
				if err != nil {
					b.Fatal(err)
				}
				x := s.ChunkIndex()
				b.StartTimer()
				if mode == "per-pack" {
					per := chunks / packs
					for i := 0; i < chunks; i += per {
						if err := x.Add(ctx, entries[i:min(i+per, chunks)]); err != nil {
							b.Fatal(err)
						}
					}
				} else if err := x.Add(ctx, sorted); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
			// CPU-seconds transfer between runs on a shared machine.
			b.ReportMetric((cpuTime()-cpu0)/float64(b.N), "cpu-s/op")
		})
	}
}

// cpuTime is the process's user and system CPU time in seconds.
func cpuTime() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
