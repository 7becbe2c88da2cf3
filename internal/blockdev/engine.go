package blockdev

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/capacity"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
	"coffer/internal/store"
)

// Chunks is what the engine needs from the chunk store (chunkstore.Store
// satisfies it).
//
//   - Put stores data and returns its ID; it is safe for concurrent use and
//     must not retain data after it returns (the engine reuses buffers).
//   - Get returns the contents of a chunk, verified against its ID.
//   - Flush makes every chunk Put before it durable and readable.
type Chunks interface {
	Put(ctx context.Context, data []byte) (chunk.ID, error)
	Get(ctx context.Context, id chunk.ID) ([]byte, error)
	Flush(ctx context.Context) error
}

// chunkPutter stores chunks and commits them: the engine's Chunks, or one
// of its streams (whose Flush commits what the stream stored).
type chunkPutter interface {
	Put(ctx context.Context, data []byte) (chunk.ID, error)
	Flush(ctx context.Context) error
}

// flushAlso flushes put and runs also once put's chunks are durable:
// alongside their index add when put can (chunkstore.Stream.FlushAlso),
// else after its Flush. also must not make the chunks reachable.
func flushAlso(ctx context.Context, put chunkPutter, also func(context.Context) error) error {
	if f, ok := put.(interface {
		FlushAlso(context.Context, func(context.Context) error) error
	}); ok {
		return f.FlushAlso(ctx, also)
	}
	if err := put.Flush(ctx); err != nil {
		return err
	}
	return also(ctx)
}

// chunkStreams is implemented by a chunk store that keeps each writer's new
// chunks together in packs of their own (chunkstore.Stream), so that a
// disk's snapshot taken while other disks' ran is restored with long reads.
type chunkStreams interface {
	NewStream() *chunkstore.Stream
}

// newStream returns where one snapshot's chunks go: a stream of its own when
// the chunk store has streams, else the chunk store; and the func that ends
// it.
func (e *Engine) newStream() (chunkPutter, func()) {
	if cs, ok := e.chunks.(chunkStreams); ok {
		st := cs.NewStream()
		return st, st.Close
	}
	return e.chunks, func() {}
}

// Errors returned (wrapped) by the engine. Test with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrInvalid      = errors.New("invalid argument")
	ErrClosed       = errors.New("volume closed")
	ErrOutOfRange   = errors.New("offset out of range")
	ErrCorrupt      = errors.New("snapshot data corrupt or missing")
	ErrBlockSize    = errors.New("block size mismatch")
	ErrShrink       = errors.New("volume shrink refused")
	ErrStillHydrate = errors.New("volume is still hydrating")
	ErrDeleting     = errors.New("volume is being deleted")
)

// DefaultBlockSize is the block size of a new engine when Options.BlockSize
// is zero.
const DefaultBlockSize = 64 << 10

// Options configures an Engine. The zero value is usable.
type Options struct {
	// BlockSize is fixed when the engine directory is created: a power of
	// two from 4 KiB to 4 MiB (default 64 KiB). Opening an existing engine
	// with a different non-zero value fails with ErrBlockSize.
	BlockSize int64
	// Workers is the parallelism of snapshot, restore, hydration and
	// verify (default GOMAXPROCS).
	Workers int
	// CBWMemory bounds the memory a snapshot uses for copy-before-write
	// blocks per volume; past it old contents spill to an unlinked side
	// file in the volume directory (default 64 MiB).
	CBWMemory int64
	// Clock stamps snapshots and times hydration retries (default
	// clock.Real).
	Clock clock.Clock
	// Space, when set, is told of every no-space failure.
	Space *capacity.Monitor
	// HydrationRetry is how long a hydration stalled for lack of space
	// waits before it tries again (default 10 s).
	HydrationRetry time.Duration
	// Catalogue is the metadata store that indexes the snapshot catalogue
	// and the volume records (see catalogue.go): the server passes its
	// metadata store, shared by every node; tools and tests may pass an
	// in-memory store (memstore), which the first Open builds from a
	// listing of the blob store. Required.
	Catalogue store.Store
}

// Engine owns a directory of live volumes and the snapshots of those
// volumes. All methods are safe for concurrent use.
type Engine struct {
	dir    string
	chunks Chunks
	blobs  blobstore.Store
	index  store.Store // the catalogue index (Options.Catalogue)
	bs     int64
	opts   Options

	mu   sync.Mutex
	vols map[string]*Volume
	// deleting holds the volumes DeleteVolume is removing: none of them
	// is opened, created or deleted again until it ends.
	deleting map[string]bool

	// blocks holds one-block scratch buffers (*[]byte of bs bytes) for
	// the live I/O path: copy-before-write, partial writes to blocks not
	// hydrated yet, hydrate-on-read.
	blocks sync.Pool

	// What the filesystem holds in one file: fits is the largest size
	// tried that fitted, limit (once known) the largest size that fits.
	limitMu     sync.Mutex
	fits, limit int64

	iobufs ioBufs // restore and hydration job buffers (iobufs.go)

	// hooks for tests; nil in production.
	hooks testHooks
}

type testHooks struct {
	beforeSwap  func(volume string)
	afterSwap   func(volume string)
	published   func(volume string)          // right after the swap made the snapshot visible to writers (v.mu released)
	arenaReady  func(volume string, i int64) // a snapshot's arena i is ready ahead of need (or was taken first)
	spilled     func(volume string, n int64) // a snapshot moved n kept pieces from memory to the side file
	blockStored func(volume string, n int64) // after each snapshot block
	hydrated    func(volume string, block int64)
	hydrator    func(ctx context.Context, volume string) // before each block the hydrator copies
	prefetch    func(volume string, lo, hi int64)        // a snapshot reads blocks [lo, hi) ahead
	truncate    func(size int64) error                   // before a volume's data file is resized
	sync        func() error                             // before a volume's data file is synced after a resize
	punch       func(volume string, off, n int64)        // before a hole is punched in a volume's data file
	write       func(volume string, off, n int64)        // before a write's data goes to a volume's data file
	dataSynced  func(volume string)                      // after a volume's data file is synced (syncData)
	deleting    func(volume string)                      // after DeleteVolume closed the volume, before its files go
	restored    func(path string, syncs int64)           // RestoreToFile's writes ended; syncs: its background fdatasyncs
	// locateAhead, if set, is called when a hydration's locateAhead
	// starts; false makes it locate nothing (tests of the misses' own
	// lookups). locatedAhead is called when it has ended.
	locateAhead  func(volume string) bool
	locatedAhead func(volume string)
}

// OnDeleting sets f (nil: none) as the function DeleteVolume calls once
// it has closed a volume and before its files go, while the volume counts
// as being deleted: for tests outside this package that need a deletion
// held at that point (a second deletion of the volume racing it). It is
// not for production use.
func (e *Engine) OnDeleting(f func(volume string)) {
	e.mu.Lock()
	e.hooks.deleting = f
	e.mu.Unlock()
}

type engineMeta struct {
	Version   int   `json:"version"`
	BlockSize int64 `json:"blockSize"`
}

func checkBlockSize(bs int64) error {
	if bs < 4<<10 || bs > 4<<20 || bs&(bs-1) != 0 {
		return fmt.Errorf("block size %d is not a power of two from 4 KiB to 4 MiB", bs)
	}
	return nil
}

// Open opens (creating if needed) the engine directory dir. Volumes are
// opened lazily by OpenVolume.
func Open(ctx context.Context, dir string, chunks Chunks, blobs blobstore.Store, opts Options) (*Engine, error) {
	if opts.Catalogue == nil {
		return nil, fmt.Errorf("open block engine: no catalogue index (Options.Catalogue): %w", ErrInvalid)
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.CBWMemory <= 0 {
		opts.CBWMemory = 64 << 20
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.HydrationRetry <= 0 {
		opts.HydrationRetry = 10 * time.Second
	}
	if err := os.MkdirAll(filepath.Join(dir, "volumes"), 0o700); err != nil {
		return nil, fmt.Errorf("open block engine: %w", err)
	}
	metaPath := filepath.Join(dir, "engine.json")
	var meta engineMeta
	b, err := os.ReadFile(metaPath)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &meta); err != nil {
			return nil, fmt.Errorf("open block engine: read %s: %w", metaPath, err)
		}
		if meta.Version != 1 {
			return nil, fmt.Errorf("open block engine: unsupported engine.json version %d", meta.Version)
		}
		if err := checkBlockSize(meta.BlockSize); err != nil {
			return nil, fmt.Errorf("open block engine: %w", err)
		}
		if opts.BlockSize != 0 && opts.BlockSize != meta.BlockSize {
			return nil, fmt.Errorf("open block engine: want block size %d, store has %d: %w", opts.BlockSize, meta.BlockSize, ErrBlockSize)
		}
	case errors.Is(err, os.ErrNotExist):
		meta = engineMeta{Version: 1, BlockSize: opts.BlockSize}
		if meta.BlockSize == 0 {
			meta.BlockSize = DefaultBlockSize
		}
		if err := checkBlockSize(meta.BlockSize); err != nil {
			return nil, fmt.Errorf("open block engine: %w: %w", ErrInvalid, err)
		}
		b, _ := json.Marshal(meta)
		if err := writeFileAtomic(metaPath, b); err != nil {
			return nil, fmt.Errorf("open block engine: %w", err)
		}
	default:
		return nil, fmt.Errorf("open block engine: %w", err)
	}
	opts.BlockSize = meta.BlockSize
	e := &Engine{dir: dir, chunks: chunks, blobs: blobs, index: opts.Catalogue, bs: meta.BlockSize, opts: opts, vols: map[string]*Volume{}, deleting: map[string]bool{}}
	e.blocks.New = func() any { b := make([]byte, e.bs); return &b }
	if err := e.openCatalogue(ctx); err != nil {
		return nil, fmt.Errorf("open block engine: %w", err)
	}
	return e, nil
}

// BlockSize returns the engine's block size in bytes.
func (e *Engine) BlockSize() int64 { return e.bs }

// Close closes every open volume (stopping hydrators; they resume when the
// volume is opened again).
func (e *Engine) Close() error {
	e.mu.Lock()
	vols := make([]*Volume, 0, len(e.vols))
	for _, v := range e.vols {
		vols = append(vols, v)
	}
	e.mu.Unlock()
	var errs []error
	for _, v := range vols {
		errs = append(errs, v.Close())
	}
	return errors.Join(errs...)
}

// validID checks a caller-chosen volume or snapshot ID: 1–128 characters of
// [A-Za-z0-9._-], not "." or "..", so it is safe as a file and blob name.
func validID(id string) error {
	if id == "" || len(id) > maxIDLen || id == "." || id == ".." {
		return fmt.Errorf("ID %q: %w", id, ErrInvalid)
	}
	for _, c := range []byte(id) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("ID %q has character %q: %w", id, c, ErrInvalid)
		}
	}
	return nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SnapshotInfo describes a committed snapshot.
type SnapshotInfo struct {
	ID        string    `json:"id"`
	Volume    string    `json:"volume"`
	Parent    string    `json:"parent,omitempty"`
	Created   time.Time `json:"created"`
	Size      int64     `json:"size"`
	BlockSize int64     `json:"blockSize"`
	// Record is the chunk ID of the snapshot record (the manifest root).
	Record chunk.ID `json:"record"`
	// Stats describe the work done when the snapshot was taken; they are
	// not stored in the catalogue.
	Stats SnapshotStats `json:"-"`
}

// SnapshotStats count the work of one Snapshot call.
type SnapshotStats struct {
	BlocksRead   int64 // dirty blocks read from the volume
	BlocksStored int64 // non-zero blocks Put into the chunk store
	BlocksZero   int64 // dirty blocks found all-zero (holes, never stored)
	BytesRead    int64
	PagesWritten int64 // index pages Put
	PagesReused  int64 // index pages taken from the parent by ID
	CBWBlocks    int64 // blocks copied from by writers during the snapshot
	CBWBytes     int64 // bytes they copied (the pieces they changed, cbwPiece)
	CBWSideBytes int64 // of them, bytes the writers put in the side file (CBWMemory full)
	// CBWSpilledBytes is how much the snapshot moved from memory to the
	// side file in batches.
	CBWSpilledBytes int64
}

// catalogueEntry is the blob snapshots/<id>, version 1 (JSON).
type catalogueEntry struct {
	Version int `json:"version"`
	SnapshotInfo
}

// volumeRecord is the blob volumes/<id>, version 1 (JSON): what a volume's
// future snapshots and its hydration depend on, so that GC on any node keeps
// it live.
type volumeRecord struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	// Base is the record of the manifest the next snapshot is incremental
	// to (the volume's last snapshot, or the snapshot it was restored from).
	Base         chunk.ID `json:"base"`
	BaseSnapshot string   `json:"baseSnapshot,omitempty"`
	// HydrateFrom is the record a restored volume is still hydrating from.
	HydrateFrom chunk.ID `json:"hydrateFrom"`
}

func snapshotBlob(id string) string { return "snapshots/" + id }
func volumeBlob(id string) string   { return "volumes/" + id }

// putVolumeRecord writes a volume record: its blob, then its row.
func (e *Engine) putVolumeRecord(ctx context.Context, vr volumeRecord) error {
	vr.Version = 1
	b, _ := json.Marshal(vr)
	if err := e.blobs.Put(ctx, volumeBlob(vr.ID), b); err != nil {
		return fmt.Errorf("write volume record %s: %w", vr.ID, err)
	}
	if err := e.putRow(ctx, KindVolume, vr.ID, b, store.PutOptions{}); err != nil {
		return fmt.Errorf("index volume record %s: %w", vr.ID, err)
	}
	return nil
}

// deleteVolumeRecord removes a volume record: its row, then its blob.
func (e *Engine) deleteVolumeRecord(ctx context.Context, id string) error {
	if err := e.deleteRow(ctx, KindVolume, id); err != nil {
		return fmt.Errorf("delete volume record %s: %w", id, err)
	}
	if err := e.blobs.Delete(ctx, volumeBlob(id)); err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		return fmt.Errorf("delete volume record %s: %w", id, err)
	}
	return nil
}

func (e *Engine) getVolumeRecord(ctx context.Context, id string) (volumeRecord, error) {
	b, err := e.getRow(ctx, KindVolume, id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return volumeRecord{}, fmt.Errorf("volume record %s: %w", id, ErrNotFound)
		}
		return volumeRecord{}, fmt.Errorf("read volume record %s: %w", id, err)
	}
	return decodeVolumeRecord(id, b)
}

func decodeVolumeRecord(id string, b []byte) (volumeRecord, error) {
	var vr volumeRecord
	if err := json.Unmarshal(b, &vr); err != nil || vr.Version != 1 || vr.ID != id {
		return vr, fmt.Errorf("read volume record %s: bad encoding: %w", id, ErrFormat)
	}
	return vr, nil
}

// StatSnapshot returns the catalogue entry of a committed snapshot (one
// read of the index).
func (e *Engine) StatSnapshot(ctx context.Context, id string) (SnapshotInfo, error) {
	if err := validID(id); err != nil {
		return SnapshotInfo{}, err
	}
	b, err := e.getRow(ctx, KindSnapshot, id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return SnapshotInfo{}, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
		}
		return SnapshotInfo{}, fmt.Errorf("read snapshot %s: %w", id, err)
	}
	return decodeCatalogue(id, b)
}

func decodeCatalogue(id string, b []byte) (SnapshotInfo, error) {
	var ce catalogueEntry
	if err := json.Unmarshal(b, &ce); err != nil || ce.Version != 1 || ce.ID != id {
		return SnapshotInfo{}, fmt.Errorf("read snapshot %s: bad catalogue entry: %w", id, ErrFormat)
	}
	return ce.SnapshotInfo, nil
}

// ListSnapshots lists the committed snapshots of a volume ("" for all
// volumes), oldest first, from one read of the index.
func (e *Engine) ListSnapshots(ctx context.Context, volume string) ([]SnapshotInfo, error) {
	all, _, err := e.catalogue(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	out := all[:0]
	for _, si := range all {
		if volume == "" || si.Volume == volume {
			out = append(out, si)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// DeleteSnapshot removes a snapshot from the catalogue (its row, then its
// blob). Every other snapshot stays intact (each is a full logical map;
// pages are shared by ID). Chunks no longer referenced are reclaimed by the
// chunk store's GC, which asks MarkLive what is live. The last snapshot of
// a live volume stays pinned as the volume's base (see MarkLive) until its
// next snapshot.
func (e *Engine) DeleteSnapshot(ctx context.Context, id string) error {
	if _, err := e.StatSnapshot(ctx, id); err != nil {
		return fmt.Errorf("delete snapshot: %w", err)
	}
	if err := e.deleteRow(ctx, KindSnapshot, id); err != nil {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	if err := e.blobs.Delete(ctx, snapshotBlob(id)); err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	return nil
}

// loadRecord fetches and decodes a snapshot record.
func (e *Engine) loadRecord(ctx context.Context, id chunk.ID) (*record, error) {
	b, err := e.chunks.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read snapshot record %s: %w: %w", id.Short(), ErrCorrupt, err)
	}
	r, err := decodeRecord(b)
	if err != nil {
		return nil, fmt.Errorf("snapshot record %s: %w", id.Short(), err)
	}
	if r.BlockSize != e.bs {
		return nil, fmt.Errorf("snapshot record %s has block size %d, engine %d: %w", id.Short(), r.BlockSize, e.bs, ErrBlockSize)
	}
	return r, nil
}

// loadSnapshot resolves a snapshot ID to its catalogue entry and record.
func (e *Engine) loadSnapshot(ctx context.Context, id string) (SnapshotInfo, *record, error) {
	si, err := e.StatSnapshot(ctx, id)
	if err != nil {
		return si, nil, err
	}
	r, err := e.loadRecord(ctx, si.Record)
	return si, r, err
}

// loadPage fetches page p of r as exactly pageLen entries; a zero page ID
// yields all holes.
func (e *Engine) loadPage(ctx context.Context, r *record, p int64) ([]chunk.ID, error) {
	n := pageLen(r.nblocks(), p)
	id := r.Pages[p]
	if id.IsZero() {
		return make([]chunk.ID, n), nil
	}
	b, err := e.chunks.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read index page %d (%s): %w: %w", p, id.Short(), ErrCorrupt, err)
	}
	return decodePageOf(b, id, p, n)
}

// decodePageOf decodes b, the stored index page p (chunk id), which must
// hold exactly n entries.
func decodePageOf(b []byte, id chunk.ID, p int64, n int) ([]chunk.ID, error) {
	entries, err := decodePage(b)
	if err != nil {
		return nil, fmt.Errorf("index page %d (%s): %w", p, id.Short(), err)
	}
	if len(entries) != n {
		return nil, fmt.Errorf("index page %d (%s) has %d entries, want %d: %w", p, id.Short(), len(entries), n, ErrFormat)
	}
	return entries, nil
}

// pageCache is a small bounded cache of decoded index pages of one record,
// used by random-access readers (snapshot export, hydrating volumes). A
// page is loaded once however many callers want it at once: the others
// wait for the load under way (page), or for the batch that loads it
// (batches).
type pageCache struct {
	e   *Engine
	r   *record
	max int

	mu    sync.Mutex
	pages map[int64][]chunk.ID
	// loading holds the pages being loaded, each with a channel closed
	// when its load has ended (the page is then cached, unless it failed
	// or was evicted at once: the waiter then loads it itself).
	loading map[int64]chan struct{}
	// waiting, if set (tests), is called when a caller starts waiting
	// for another's load of page p.
	waiting func(p int64)
}

func newPageCache(e *Engine, r *record, max int) *pageCache {
	return &pageCache{e: e, r: r, max: max, pages: map[int64][]chunk.ID{}, loading: map[int64]chan struct{}{}}
}

// entry returns the chunk ID of block b (zero for a hole).
func (c *pageCache) entry(ctx context.Context, b int64) (chunk.ID, error) {
	if b >= c.r.nblocks() {
		return chunk.ID{}, nil
	}
	p := b / EntriesPerPage
	if c.r.Pages[p].IsZero() {
		return chunk.ID{}, nil
	}
	pg, err := c.page(ctx, p)
	if err != nil {
		return chunk.ID{}, err
	}
	return pg[b%EntriesPerPage], nil
}

// page returns the entries of page p, which is not a hole page: cached,
// or once another caller's load of it has ended, or loaded.
func (c *pageCache) page(ctx context.Context, p int64) ([]chunk.ID, error) {
	for {
		c.mu.Lock()
		if pg, ok := c.pages[p]; ok {
			c.mu.Unlock()
			return pg, nil
		}
		wait, busy := c.loading[p]
		if !busy {
			wait = make(chan struct{})
			c.loading[p] = wait
		}
		waiting := c.waiting
		c.mu.Unlock()
		if !busy {
			break
		}
		if waiting != nil {
			waiting(p)
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	pg, err := c.e.loadPage(ctx, c.r, p)
	c.loaded(map[int64][]chunk.ID{p: pg}, []int64{p}, err)
	if err != nil {
		return nil, err
	}
	return pg, nil
}

// loaded ends the loads of the pages mine (claimed in c.loading): it
// caches those in got unless err says the load failed, and lets their
// waiters go.
func (c *pageCache) loaded(got map[int64][]chunk.ID, mine []int64, err error) {
	c.mu.Lock()
	var done []chan struct{}
	for _, p := range mine {
		if pg, ok := got[p]; ok && err == nil {
			putBounded(c.pages, c.max, p, pg)
		}
		done = append(done, c.loading[p])
		delete(c.loading, p)
	}
	c.mu.Unlock()
	for _, ch := range done {
		close(ch)
	}
}

// batches is loadPageBatches through the cache: fn(b0, pages) gets the
// entries of the pages b0, b0+1, … of [p0, p1) a batch at a time (nil for
// a page of holes), the cached ones as they are, those another caller is
// loading when that load ends, and the others fetched together (one
// getMany a batch) and cached, each as it arrives (its waiters let go
// then, not at the batch's end). A hydration loads its source's pages this
// way before it starts (preallocate) and again for its jobs: each page is
// read from the chunk store once, and the reads of blocks not hydrated
// yet find their page cached or wait for the batch under way instead of
// each loading it alone (an index lookup and a cold pack read per page).
// Pages beyond the cache's bound are fetched and handed to fn all the
// same.
func (c *pageCache) batches(ctx context.Context, p0, p1 int64, fn func(b0 int64, pages [][]chunk.ID) error) error {
	for b0 := p0; b0 < p1; b0 += pageBatch {
		b1 := min(b0+pageBatch, p1)
		pages := make([][]chunk.ID, b1-b0)
		var mine, others []int64
		c.mu.Lock()
		for p := b0; p < b1; p++ {
			if c.r.Pages[p].IsZero() {
				continue
			}
			if pg, ok := c.pages[p]; ok {
				pages[p-b0] = pg
			} else if _, busy := c.loading[p]; busy {
				others = append(others, p)
			} else {
				c.loading[p] = make(chan struct{})
				mine = append(mine, p)
			}
		}
		c.mu.Unlock()
		// Each page is cached, and its waiters let go, as it arrives,
		// not when the whole batch has: a read of a block not hydrated
		// yet whose page the batch holds waits for that page only.
		err := c.e.fetchPages(ctx, c.r, mine, func(p int64, entries []chunk.ID) {
			if pages[p-b0] != nil {
				return // delivered already
			}
			pages[p-b0] = entries
			c.loaded(map[int64][]chunk.ID{p: entries}, []int64{p}, nil)
		})
		if err != nil {
			// The pages not fetched: their waiters load them themselves.
			var left []int64
			for _, p := range mine {
				if pages[p-b0] == nil {
					left = append(left, p)
				}
			}
			c.loaded(nil, left, err)
			return err
		}
		for _, p := range others {
			pg, err := c.page(ctx, p)
			if err != nil {
				return err
			}
			pages[p-b0] = pg
		}
		if err := fn(b0, pages); err != nil {
			return err
		}
	}
	return nil
}

// readChunkInto fills buf (one block) with chunk id, zero-padded (all
// zeroes for the zero ID). Through the chunk store's batched path it
// reads into a pooled buffer and decompresses straight into buf, where
// Get allocates both.
func (e *Engine) readChunkInto(ctx context.Context, id chunk.ID, buf []byte) error {
	if id.IsZero() {
		clear(buf)
		return nil
	}
	ids := [1]chunk.ID{id}
	return e.getManyInto(ctx, ids[:], nil, 1, func(int) []byte { return buf }, fillBlock(id, buf))
}

// fillBlock returns the callback of a batched read of chunk id into buf
// (one block): the chunk's data, copied unless it was decompressed in
// place, then zeroes to the block's end.
func fillBlock(id chunk.ID, buf []byte) func(int, []byte) error {
	return func(_ int, data []byte) error {
		if len(data) > len(buf) {
			return fmt.Errorf("chunk %s is %d bytes, larger than a block: %w", id.Short(), len(data), ErrCorrupt)
		}
		if len(data) > 0 && &data[0] != &buf[0] { // else decompressed in place
			copy(buf, data)
		}
		clear(buf[len(data):])
		return nil
	}
}

// getBlock returns a one-block scratch buffer; putBlock gives it back.
func (e *Engine) getBlock() *[]byte  { return e.blocks.Get().(*[]byte) }
func (e *Engine) putBlock(b *[]byte) { e.blocks.Put(b) }

// writeFileAtomic writes a small file durably: temp file, fsync, rename,
// fsync the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// putBounded sets m[k] = v, first evicting an arbitrary entry when m
// already holds max entries (a cache without recency: cheap, and good
// enough where entries are used in bursts).
func putBounded[K comparable, V any](m map[K]V, max int, k K, v V) {
	if _, ok := m[k]; !ok && len(m) >= max {
		for x := range m {
			delete(m, x)
			break
		}
	}
	m[k] = v
}
