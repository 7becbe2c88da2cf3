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

// BenchmarkChunkIndexLookup looks up n IDs at a time in an index of the
// 4 GiB bench's 32,768 entries, as hydration looks up a block's chunk
// (n=1) and a restore job its batch (n=64); about a tenth of the IDs
// are absent. It reports CPU-µs per lookup.
func BenchmarkChunkIndexLookup(b *testing.B) {
	const chunks = 32768
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	entries := make([]chunkstore.Entry, chunks)
	for i := range entries {
		var id chunk.ID
		for j := range id {
			id[j] = byte(rng.Uint32())
		}
		entries[i] = chunkstore.Entry{ID: id, Pack: fmt.Sprintf("packs/p%02d", i/820), Offset: int64(i%820) * 40000,
			Length: 30000, RawLength: 65536, Compression: chunkstore.CompressionZstd}
	}
	s, err := Open(ctx, b.TempDir()+"/index.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	x := s.ChunkIndex()
	if err := x.Add(ctx, entries); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			ids := make([]chunk.ID, n)
			cpu0, lookups := cpuTime(), 0
			for b.Loop() {
				present := map[chunk.ID]bool{}
				for i := range ids {
					if rng.IntN(10) == 0 {
						ids[i] = chunk.ID{byte(i), 1} // absent
						continue
					}
					ids[i] = entries[rng.IntN(chunks)].ID
					present[ids[i]] = true
				}
				got, err := x.Lookup(ctx, ids)
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != len(present) {
					b.Fatalf("looked up %d of %d present IDs", len(got), len(present))
				}
				lookups++
			}
			b.ReportMetric((cpuTime()-cpu0)*1e6/float64(lookups), "CPU-µs/lookup")
		})
	}
}
