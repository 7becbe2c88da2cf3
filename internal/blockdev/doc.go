// Package blockdev is Coffer's block engine: live volumes (sparse files on
// local disk with a dirty bitmap of changed blocks), point-in-time,
// crash-consistent snapshots taken while writes continue (copy-before-write),
// snapshot manifests stored as a Merkle tree of index pages in the chunk
// store, diff between snapshots, instant restore with background hydration,
// full restore, per-snapshot verification, and the mark phase of garbage
// collection.
//
// The engine depends only on two small contracts: Chunks (a content-addressed
// chunk store; chunkstore.Store satisfies it) for block data and manifests,
// blobstore.Store for the durable copy of the small snapshot catalogue and
// volume records (names under snapshots/ and volumes/), and store.Store
// (the metadata store) for the index of that catalogue that every read
// uses (catalogue.go). On-disk formats and the protocols' invariants are
// written down in docs/volumes.md and docs/design.md.
package blockdev
