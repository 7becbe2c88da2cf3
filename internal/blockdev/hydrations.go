package blockdev

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
)

// Hydrations returns the hydration status of every open volume that is
// still hydrating (for metrics).
func (e *Engine) Hydrations() []HydrationStatus {
	e.mu.Lock()
	vols := make([]*Volume, 0, len(e.vols))
	for _, v := range e.vols {
		vols = append(vols, v)
	}
	e.mu.Unlock()
	var out []HydrationStatus
	for _, v := range vols {
		if h := v.Hydration(); h.Hydrating {
			out = append(out, h)
		}
	}
	return out
}

// chunkLocator is implemented by chunk stores that say where chunks lie
// and read them by those entries without looking them up again
// (chunkstore.Store: Locate, GetLocatedInto). A hydration uses it to look
// up the chunks of a source page once, with one batched lookup, for every
// read of a block not hydrated yet in that page and for the hydrator's
// job of the page, where each such read looked up its one chunk (a query
// of the chunk index per read).
type chunkLocator interface {
	Locate(ctx context.Context, ids []chunk.ID) (map[chunk.ID]chunkstore.Entry, error)
	GetLocatedInto(ctx context.Context, es []chunkstore.Entry, rbuf []byte, ahead int, dst func(i int) []byte, fn func(i int, data []byte) error) error
}

// chunkPrefetcher is implemented by chunk stores that can have located
// chunks read ahead of the reads that want them (chunkstore.Store:
// PrefetchLocated, a hint to the blob store). When a hydration locates a
// source page for a read of a block not hydrated yet, it hints the
// chunks of the page's other blocks not hydrated yet, so that the reads of
// those that follow find their chunk read ahead with the page's few large
// reads instead of each waiting on the disk for its own (packs are
// written with O_DIRECT, so a chunk is in no cache until read).
type chunkPrefetcher interface {
	PrefetchLocated(ctx context.Context, es []chunkstore.Entry) int
}

// chunkLoc is where one block's chunk lies (a chunkstore.Entry without its
// ID, which the source page holds, and with its pack's name interned).
type chunkLoc struct {
	off         int64
	length, raw uint32
	pack        uint32 // index into locCache.packs
	comp        chunkstore.Compression
	ok          bool // located
}

// locCache keeps, per index page of a hydration's source, where the chunks
// of its blocks not hydrated yet lie: 24 bytes per block, at most max
// pages (those of hydrationPageCache: 6 MiB at most). A page's entries go
// when the hydrator's job of the page has read by them; those of a page
// whose blocks the reads hydrated all (no job) stay until the hydration
// ends and the cache goes with it.
type locCache struct {
	mu      sync.Mutex
	max     int
	pages   map[int64][]chunkLoc
	packs   []string
	packIdx map[string]uint32
	// locating holds the pages being located, each with a channel closed
	// when it is done: one lookup per page, however many reads of its
	// blocks miss at once (each looked the page up itself, holding a
	// connection of the chunk index's read pool and its block's stripe).
	locating map[int64]chan struct{}
	// unhinted holds the pages located ahead (locateAhead) that no read
	// has missed in yet: the first miss in such a page hints its chunks
	// not hydrated yet to be read ahead, as the miss that locates a page
	// does.
	unhinted map[int64]struct{}
	// hinted counts the read-ahead hints given for located pages
	// (chunkPrefetcher), for tests.
	hinted atomic.Int64
	// The read-ahead of located pages (prefetchLoop): pfq holds the
	// pages waiting for it, newest last, at most prefetchQueue; pfRun is
	// set while a goroutine reads them ahead (pfWG counts it); pfStop
	// ends it (stopPrefetch).
	pfq    []pfPage
	pfRun  bool
	pfStop bool
	pfWG   sync.WaitGroup
	// waiting, if set (tests), is called when a caller starts waiting
	// for another's lookup of page p; readAhead, if set (tests), when
	// page p's read-ahead starts.
	waiting   func(p int64)
	readAhead func(p int64)
}

// pfPage is a located page waiting to be read ahead: its chunks not
// hydrated yet when it was located.
type pfPage struct {
	p  int64
	es []chunkstore.Entry
}

// prefetchQueue is how many located pages wait at most for their
// read-ahead; a page located beyond it pushes out the one that has
// waited longest (its misses then read their own chunks, as without
// read-ahead). Random reads of a 4 GiB disk locate all of its 256 pages
// within their first few hundred misses: hinted all at once, as they
// were on each locating read's path, they queued the read-ahead of
// nearly every pack of the image (2 GiB) on the disk ahead of the misses'
// own small reads, the index page loads and the hydrator's reads
// (docs/design.md, "Session perf14an").
const prefetchQueue = 8

func newLocCache(max int) *locCache {
	return &locCache{max: max, pages: map[int64][]chunkLoc{}, packIdx: map[string]uint32{}, locating: map[int64]chan struct{}{}, unhinted: map[int64]struct{}{}}
}

// locate makes sure the cache holds page p's locations: those of the
// chunks of page (the page's entries) whose blocks pending reports not
// hydrated, and of id (a chunk of the page the caller is about to read).
// One caller per page looks them up; the others wait for it (or their
// context) and look again. The caller that located the page then hints
// the located chunks of the blocks not hydrated yet to the chunk store
// (pf, when not nil), after the waiting callers are let go; a page
// located with pf nil (locateAhead) is hinted by the first caller that
// finds it cached with pf not nil.
func (c *locCache) locate(ctx context.Context, cl chunkLocator, pf chunkPrefetcher, p int64, id chunk.ID, page []chunk.ID, pending func(b int64) bool) ([]chunkLoc, error) {
	for {
		c.mu.Lock()
		if locs, ok := c.pages[p]; ok {
			var es []chunkstore.Entry
			if _, ok := c.unhinted[p]; ok && pf != nil {
				delete(c.unhinted, p)
				for i, l := range locs {
					if l.ok && pending(p*EntriesPerPage+int64(i)) {
						es = append(es, chunkstore.Entry{ID: page[i], Pack: c.packs[l.pack], Offset: l.off, Length: l.length, RawLength: l.raw, Compression: l.comp})
					}
				}
			}
			c.mu.Unlock()
			if len(es) > 0 {
				c.queuePrefetch(pf, p, es)
			}
			return locs, nil
		}
		wait, busy := c.locating[p]
		if !busy {
			wait = make(chan struct{})
			c.locating[p] = wait
		}
		c.mu.Unlock()
		if !busy {
			break
		}
		if c.waiting != nil {
			c.waiting(p)
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ids := make([]chunk.ID, 0, len(page))
	for i, pid := range page {
		if !pid.IsZero() && (pid == id || pending(p*EntriesPerPage+int64(i))) {
			ids = append(ids, pid)
		}
	}
	found, err := cl.Locate(ctx, ids)
	c.mu.Lock()
	wait := c.locating[p]
	delete(c.locating, p)
	if err != nil {
		c.mu.Unlock()
		close(wait)
		return nil, err
	}
	locs := make([]chunkLoc, len(page))
	for i, pid := range page {
		e, ok := found[pid]
		if !ok || pid.IsZero() {
			continue
		}
		k, ok := c.packIdx[e.Pack]
		if !ok {
			k = uint32(len(c.packs))
			c.packs = append(c.packs, e.Pack)
			c.packIdx[e.Pack] = k
		}
		locs[i] = chunkLoc{off: e.Offset, length: e.Length, raw: e.RawLength, pack: k, comp: e.Compression, ok: true}
	}
	putBounded(c.pages, c.max, p, locs)
	if pf == nil {
		c.unhinted[p] = struct{}{}
	}
	c.mu.Unlock()
	close(wait)
	if pf != nil && len(found) > 0 {
		es := make([]chunkstore.Entry, 0, len(found))
		for _, e := range found {
			es = append(es, e)
		}
		c.queuePrefetch(pf, p, es)
	}
	return locs, nil
}

// queuePrefetch queues page p's located chunks es for read-ahead, and
// starts prefetchLoop if it does not run. The read that located the page
// returns meanwhile: a hint's call took 1.1 ms (median) to 24 ms on its
// path, the kernel allocating and submitting the read-ahead in it.
func (c *locCache) queuePrefetch(pf chunkPrefetcher, p int64, es []chunkstore.Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pfStop {
		return
	}
	c.pfq = append(c.pfq, pfPage{p: p, es: es})
	if len(c.pfq) > prefetchQueue {
		c.pfq = slices.Delete(c.pfq, 0, len(c.pfq)-prefetchQueue)
	}
	if !c.pfRun {
		c.pfRun = true
		c.pfWG.Add(1)
		go c.prefetchLoop(pf)
	}
}

// prefetchLoop has the queued pages read ahead, the newest first, one at
// a time: PrefetchLocated returns once its runs are read (the local
// store's Prefetch waits for each), so a hydration has at most one
// page's runs of read-ahead on the disk beside the misses' own reads and
// the hydrator's. A page the hydrator has read meanwhile (its entries
// dropped) is not read ahead. It returns when the queue is empty or the
// read-ahead is stopped.
func (c *locCache) prefetchLoop(pf chunkPrefetcher) {
	defer c.pfWG.Done()
	for {
		c.mu.Lock()
		if c.pfStop || len(c.pfq) == 0 {
			c.pfRun = false
			c.mu.Unlock()
			return
		}
		next := c.pfq[len(c.pfq)-1]
		c.pfq = c.pfq[:len(c.pfq)-1]
		_, live := c.pages[next.p]
		c.mu.Unlock()
		if live {
			if c.readAhead != nil {
				c.readAhead(next.p)
			}
			// Its own context: the read that located the page has
			// returned; stopPrefetch ends the loop between pages.
			c.hinted.Add(int64(pf.PrefetchLocated(context.Background(), next.es)))
		}
	}
}

// stopPrefetch drops the pages waiting for read-ahead and ends
// prefetchLoop after the page it reads ahead, if any; waitPrefetch waits
// for that.
func (c *locCache) stopPrefetch() {
	c.mu.Lock()
	c.pfStop = true
	c.pfq = nil
	c.mu.Unlock()
}

// waitPrefetch waits until no page is being read ahead.
func (c *locCache) waitPrefetch() { c.pfWG.Wait() }

// entry returns the entry of block b's chunk id, locating the chunks of
// b's page first when the cache does not hold them (locate). false means
// the chunk was not located (not committed when located): read it by ID.
func (c *locCache) entry(ctx context.Context, cl chunkLocator, pf chunkPrefetcher, b int64, id chunk.ID, page []chunk.ID, pending func(b int64) bool) (chunkstore.Entry, bool, error) {
	locs, err := c.locate(ctx, cl, pf, b/EntriesPerPage, id, page, pending)
	if err != nil {
		return chunkstore.Entry{}, false, err
	}
	e, ok := c.at(locs, b, id)
	return e, ok, nil
}

// located returns the entries of the chunks ids of blocks (all in one
// page) if the cache holds that page and every one of them was located.
func (c *locCache) located(blocks []int64, ids []chunk.ID) ([]chunkstore.Entry, bool) {
	if len(blocks) == 0 {
		return nil, false
	}
	c.mu.Lock()
	locs, ok := c.pages[blocks[0]/EntriesPerPage]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	es := make([]chunkstore.Entry, len(blocks))
	for i, b := range blocks {
		e, ok := c.at(locs, b, ids[i])
		if !ok || b/EntriesPerPage != blocks[0]/EntriesPerPage {
			return nil, false
		}
		es[i] = e
	}
	return es, true
}

// at returns block b's entry in locs, its page's locations.
func (c *locCache) at(locs []chunkLoc, b int64, id chunk.ID) (chunkstore.Entry, bool) {
	l := locs[b%EntriesPerPage]
	if !l.ok {
		return chunkstore.Entry{}, false
	}
	c.mu.Lock()
	pack := c.packs[l.pack]
	c.mu.Unlock()
	return chunkstore.Entry{ID: id, Pack: pack, Offset: l.off, Length: l.length, RawLength: l.raw, Compression: l.comp}, true
}

// drop forgets page p (its blocks are hydrated).
func (c *locCache) drop(p int64) {
	c.mu.Lock()
	delete(c.pages, p)
	delete(c.unhinted, p)
	c.mu.Unlock()
}

// full reports whether the cache holds as many pages as its bound: a page
// located ahead then would push out one a read or a job may want.
func (c *locCache) full() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pages) >= c.max
}

// errLocCacheFull ends locateAhead when the location cache is full.
var errLocCacheFull = errors.New("location cache full")

// locateAhead locates the chunks of h's source blocks not hydrated yet,
// page after page in index order, one lookup of the chunk index per page,
// into h.locs, from the hydration's start: the reads of blocks not
// hydrated yet then find their chunk's location in memory instead of each
// page's first miss waiting for a connection of the chunk index's read
// pool and for its lookup (docs/design.md, "Session perf14av"), and the
// hydrator's jobs read their pages by those locations. A miss in a page
// not located yet locates it itself (or waits for this lookup of it when
// it is under way). It loads the pages through h.cache (shared with
// preallocate's and the hydrator's loads) and gives no read-ahead hints
// (the first miss in a page does, locCache.locate). It ends at the last
// page, when ctx ends, on the first error (the reads and the hydrator
// then locate as without it), or when h.locs is full (a source of more
// than hydrationPageCache pages: the pages past it are located by their
// misses). Memory: 24 bytes a block of data not hydrated yet
// (chunkLoc), 1.5 MiB for a 4 GiB source of 64 KiB blocks, a page's
// going when the hydrator has read it.
func (v *Volume) locateAhead(ctx context.Context, h *hydration) {
	if hk := v.e.hooks.locatedAhead; hk != nil {
		defer hk(v.id)
	}
	if hk := v.e.hooks.locateAhead; hk != nil && !hk(v.id) {
		return
	}
	cl, ok := v.e.chunks.(chunkLocator)
	if !ok {
		return
	}
	_ = h.cache.batches(ctx, 0, int64(len(h.src.Pages)), func(b0 int64, pages [][]chunk.ID) error {
		for i, page := range pages {
			p := b0 + int64(i)
			if page == nil || !v.pagePending(p, page) {
				continue
			}
			if h.locs.full() {
				return errLocCacheFull
			}
			if _, err := h.locs.locate(ctx, cl, nil, p, chunk.ID{}, page, v.pending); err != nil {
				return err
			}
		}
		return nil
	})
}

// pagePending reports whether a data block of page p (its entries page)
// is not hydrated yet.
func (v *Volume) pagePending(p int64, page []chunk.ID) bool {
	for i, id := range page {
		if !id.IsZero() && v.pending(p*EntriesPerPage+int64(i)) {
			return true
		}
	}
	return false
}

// readSourceInto fills buf (one block) with block b's chunk id in h's
// source, zero-padded, as readChunkInto does, through h's located chunks
// when the chunk store can read by entry: a read of a block not hydrated
// yet then costs no query of the chunk index but the one per source page.
func (v *Volume) readSourceInto(ctx context.Context, h *hydration, b int64, id chunk.ID, buf []byte) error {
	cl, ok := v.e.chunks.(chunkLocator)
	if !ok || id.IsZero() {
		return v.e.readChunkInto(ctx, id, buf)
	}
	page, err := h.cache.page(ctx, b/EntriesPerPage)
	if err != nil {
		return err
	}
	pf, _ := v.e.chunks.(chunkPrefetcher)
	e, ok, err := h.locs.entry(ctx, cl, pf, b, id, page, v.pending)
	if err != nil {
		return fmt.Errorf("read chunk %s: %w", id.Short(), err)
	}
	if !ok {
		return v.e.readChunkInto(ctx, id, buf)
	}
	es := [1]chunkstore.Entry{e}
	return batchRead(ctx, 1, fillBlock(id, buf), func(fn func(i int, data []byte) error) error {
		return cl.GetLocatedInto(ctx, es[:], nil, 1, func(int) []byte { return buf }, fn)
	})
}

// pending reports whether block b is not hydrated yet.
func (v *Volume) pending(b int64) bool { return !v.isHydrated(b) }

// locateMiss readies what a read of block b, not hydrated yet, needs
// before it takes b's stripe: b's source index page (h.cache) and where
// the chunks of the page's blocks not hydrated yet lie (h.locs, which
// also hints them to be read ahead). Those are a page's work, not a
// block's: done under the block's stripe, they held up every read of the
// stripe's blocks behind a query of the chunk index (and its read pool)
// and a load of the index page. Its error is the read's to report; the
// read's own fetch then finds both in the caches (or does this itself
// when they were evicted meanwhile).
func (v *Volume) locateMiss(ctx context.Context, h *hydration, b int64) error {
	cl, ok := v.e.chunks.(chunkLocator)
	if !ok {
		return nil
	}
	id, err := h.cache.entry(ctx, b)
	if err != nil || id.IsZero() {
		return err
	}
	page, err := h.cache.page(ctx, b/EntriesPerPage)
	if err != nil {
		return err
	}
	pf, _ := v.e.chunks.(chunkPrefetcher)
	_, err = h.locs.locate(ctx, cl, pf, b/EntriesPerPage, id, page, v.pending)
	return err
}

// getSourceInto reads the chunks ids of blocks (the missing blocks of one
// source page: a hydrator's job) with one batched read into rbuf, by the
// entries h holds for that page when the reads of blocks not hydrated yet
// located them (then with no lookup), and drops the page's entries.
func (v *Volume) getSourceInto(ctx context.Context, h *hydration, blocks []int64, ids []chunk.ID, rbuf []byte, fn func(i int, data []byte) error) error {
	if cl, ok := v.e.chunks.(chunkLocator); ok {
		if es, ok := h.locs.located(blocks, ids); ok {
			defer h.locs.drop(blocks[0] / EntriesPerPage)
			return batchRead(ctx, len(ids), fn, func(fn func(i int, data []byte) error) error {
				return cl.GetLocatedInto(ctx, es, rbuf, hydrateReadAhead, nil, fn)
			})
		}
	}
	return v.e.getManyInto(ctx, ids, rbuf, hydrateReadAhead, nil, fn)
}
