// Package chunkstore is Coffer's deduplicating, compressing,
// content-addressed chunk store over a blobstore.Store.
//
// Put hashes a chunk (chunk.Hash), compresses it with zstd when that pays,
// and appends it to an open pack held in memory; packs are sealed at about
// Options.PackSize and written whole, durably, as one blob named
// packs/<shard>/<time>-<random>. Each pack ends with a trailer listing its
// chunks (ID, offset, stored and raw length, compression) protected by a
// CRC-32C, so the Index (chunk ID → pack location), which normally lives in
// the metadata database, can always be rebuilt from the packs alone
// (RebuildIndex). Get reads one chunk with a ranged read, decompresses it and
// checks it against its ID.
//
// Verify re-reads packs; VerifyChunks checks a given set of chunks. GC is a
// two-cycle mark-and-sweep with a safety margin that runs concurrently with
// Put and Flush; the protocol is written down in docs/design.md.
package chunkstore
