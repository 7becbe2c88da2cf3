package chunkstore

import (
	"context"

	"coffer/internal/chunk"
)

// Compression names how a chunk is stored in its pack.
type Compression uint8

// Compression codecs. The values are part of the pack format.
const (
	CompressionNone Compression = 0 // stored as is
	CompressionZstd Compression = 1 // one zstd frame
)

func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionZstd:
		return "zstd"
	}
	return "unknown"
}

// Entry locates one chunk in a pack.
type Entry struct {
	ID          chunk.ID
	Pack        string // blob name of the pack
	Offset      int64  // of the stored bytes within the pack
	Length      uint32 // stored (possibly compressed) length
	RawLength   uint32 // uncompressed length
	Compression Compression
	// DeletedAt is 0 for a live entry, or the time (Unix nanoseconds) at
	// which garbage collection found the chunk unreferenced. Such a chunk is
	// still readable but counts as absent for deduplication, so a writer
	// that needs it again stores a fresh copy.
	DeletedAt int64
}

// IndexStats summarizes an index.
type IndexStats struct {
	Chunks      int64
	Packs       int64
	StoredBytes int64
	RawBytes    int64
	Deleted     int64 // entries with DeletedAt set
}

// Index maps chunk IDs to their location in packs. The metadata store
// provides the durable implementation (store/sqlite); MemIndex is an
// in-memory one for tests. All methods are safe for concurrent use, take
// batches, and are each atomic.
type Index interface {
	// Lookup returns the entries of those ids that are indexed.
	Lookup(ctx context.Context, ids []chunk.ID) (map[chunk.ID]Entry, error)
	// Add inserts entries, replacing any entry with the same ID.
	Add(ctx context.Context, entries []Entry) error
	// Move replaces the entries with the same IDs as entries, but only
	// those that are still located in pack from (a garbage collector
	// relocating chunks must not undo a concurrent writer's newer copy).
	Move(ctx context.Context, from string, entries []Entry) error
	// SetDeleted sets DeletedAt to at (0 to revive) on the entries of ids
	// that are located in pack.
	SetDeleted(ctx context.Context, pack string, ids []chunk.ID, at int64) error
	// Delete removes the entries of ids that are located in pack.
	Delete(ctx context.Context, pack string, ids []chunk.ID) error
	// Packs returns the names of the packs that have entries, sorted.
	Packs(ctx context.Context) ([]string, error)
	// PackEntries returns the entries located in pack, ordered by offset.
	PackEntries(ctx context.Context, pack string) ([]Entry, error)
	// Stats counts entries, packs and bytes.
	Stats(ctx context.Context) (IndexStats, error)
	// Clear removes every entry.
	Clear(ctx context.Context) error
}
