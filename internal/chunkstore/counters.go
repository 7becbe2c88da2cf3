package chunkstore

import "sync/atomic"

// Counters are what a Store added to its repository since it was opened:
// the chunks Put committed in new packs (not deduplicated away), their
// bytes before compression and the bytes they take in packs. A garbage
// collection's repacking adds nothing here.
type Counters struct {
	Packs       uint64
	Chunks      uint64
	RawBytes    uint64
	StoredBytes uint64
}

type addedCounters struct {
	packs, chunks, raw, stored atomic.Uint64
}

// count adds a committed pack's entries.
func (a *addedCounters) count(entries []trailerEntry) {
	var raw, stored uint64
	for _, e := range entries {
		raw += uint64(e.RawLength)
		stored += uint64(e.Length)
	}
	a.packs.Add(1)
	a.chunks.Add(uint64(len(entries)))
	a.raw.Add(raw)
	a.stored.Add(stored)
}

// Counters returns what the store added since it was opened.
func (s *Store) Counters() Counters {
	return Counters{Packs: s.added.packs.Load(), Chunks: s.added.chunks.Load(), RawBytes: s.added.raw.Load(), StoredBytes: s.added.stored.Load()}
}
