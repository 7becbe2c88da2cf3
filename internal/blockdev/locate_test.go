package blockdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/local"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
)

// countingIndex counts the chunk index's lookups.
type countingIndex struct {
	chunkstore.Index
	calls atomic.Int64
}

func (x *countingIndex) Lookup(ctx context.Context, ids []chunk.ID) (map[chunk.ID]chunkstore.Entry, error) {
	x.calls.Add(1)
	return x.Index.Lookup(ctx, ids)
}

// TestReadMissLocatesPagesOnce: the reads of blocks not hydrated yet look
// the chunks of a source page up with one lookup of the chunk index for
// the page, not one per read, and the hydrator's job of a page so located
// looks up nothing; what they read is the source, before and after
// hydration, and a page's locations are dropped once it is hydrated.
func TestReadMissLocatesPagesOnce(t *testing.T) {
	ctx := context.Background()
	var x *countingIndex
	e, _, _ := newRealEngineWith(t, Options{BlockSize: 4096}, func(i chunkstore.Index) chunkstore.Index {
		x = &countingIndex{Index: i}
		return x
	})
	const bs, pages = 4096, 3
	const size = pages * EntriesPerPage * bs
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(31, 32))
	for b := range int64(size / bs) {
		blk := model[b*bs : (b+1)*bs]
		switch b % 5 {
		case 0, 1: // incompressible: stored raw
			fillRandom(rng, blk)
		case 2, 3: // text: compressed
			for i := range blk {
				blk[i] = "abcdefgh\n"[rng.IntN(9)]
			}
		} // case 4: a hole
	}
	v, held, release := restoreModelHeld(t, e, model)
	<-held // the hydrator has loaded its batch of pages
	h := v.hyd
	calls := x.calls.Load()
	buf := make([]byte, 1000)
	for b := int64(0); b < size/bs; b += 2 { // half the blocks of each page
		off := b*bs + 77
		if _, err := v.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, model[off:off+int64(len(buf))]) {
			t.Fatalf("read of block %d differs from the source", b)
		}
	}
	// Each page: its load and its chunks' locations.
	if n := x.calls.Load() - calls; n > 2*pages {
		t.Errorf("reads of %d blocks in %d pages looked up the index %d times, want at most %d", size/bs/2, pages, n, 2*pages)
	}
	calls = x.calls.Load()
	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	// The hydrator reads the chunks of the pages by their located entries.
	if n := x.calls.Load() - calls; n > 0 {
		t.Errorf("the hydrator looked up the index %d times after the reads located every page, want 0", n)
	}
	h.locs.mu.Lock()
	left := len(h.locs.pages)
	h.locs.mu.Unlock()
	if left != 0 {
		t.Errorf("%d pages' locations kept after hydration", left)
	}
	wantImage(t, v, model, "after hydration")
}

// TestReadMissLocatedCorrupt: a chunk read by its located entry is checked
// against its ID as any: a byte flipped in a pack fails the read of a
// block not hydrated yet, and the hydrator's job of the page, with
// ErrCorrupt, for a chunk stored raw (no decompression to trip on) and a
// compressed one.
func TestReadMissLocatedCorrupt(t *testing.T) {
	for _, kind := range []string{"raw", "compressed"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			e, blobs, index := newRealEngineWith(t, Options{BlockSize: 4096}, nil)
			const bs = 4096
			const size = EntriesPerPage * bs
			model := make([]byte, size)
			rng := rand.New(rand.NewPCG(33, 34))
			for b := range int64(size / bs) {
				blk := model[b*bs : (b+1)*bs]
				if kind == "raw" {
					fillRandom(rng, blk)
				} else {
					// A 16-byte random pattern repeated: every codec
					// compresses it (cgo zstd and the pure-Go one alike),
					// and each block's chunk is its own.
					var pat [16]byte
					fillRandom(rng, pat[:])
					for i := range blk {
						blk[i] = pat[i%len(pat)]
					}
				}
			}
			v, _, release := restoreModelHeld(t, e, model)
			defer close(release)
			// Locate the page with a read of block 0.
			buf := make([]byte, bs)
			if _, err := v.ReadAt(buf, 0); err != nil {
				t.Fatal(err)
			}
			// Flip a byte of block 5's and block 9's chunks in their pack.
			for _, b := range []int64{5, 9} {
				id := chunk.Hash(model[b*bs : (b+1)*bs])
				found, err := index.Lookup(ctx, []chunk.ID{id})
				if err != nil {
					t.Fatal(err)
				}
				ent, ok := found[id]
				if !ok || ent.Compression != map[string]chunkstore.Compression{"raw": chunkstore.CompressionNone, "compressed": chunkstore.CompressionZstd}[kind] {
					t.Fatalf("block %d's chunk: %+v, %v", b, ent, ok)
				}
				f, err := os.OpenFile(blobs.Path(ent.Pack), os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				one := make([]byte, 1)
				at := ent.Offset + int64(ent.Length)/2
				if _, err := f.ReadAt(one, at); err != nil {
					t.Fatal(err)
				}
				one[0] ^= 0x10
				if _, err := f.WriteAt(one, at); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			if _, err := v.ReadAt(buf, 5*bs); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("read of a block whose chunk is corrupt: %v, want ErrCorrupt", err)
			}
			if _, err := v.ReadAt(buf, 6*bs); err != nil {
				t.Fatalf("read of a sound block: %v", err)
			}
			release <- struct{}{} // let one job go: the page's
			if err := v.WaitHydrated(ctx); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("hydration of a page with corrupt chunks: %v, want ErrCorrupt", err)
			}
		})
	}
}

// hintingBlobs counts the read-ahead hints (blobstore.Prefetcher) the
// chunk store gives its blob store, and passes them on.
type hintingBlobs struct {
	*local.Store
	mu    sync.Mutex
	hints []blobRange
}

type blobRange struct {
	name   string
	off, n int64
}

func (h *hintingBlobs) Prefetch(ctx context.Context, name string, off, n int64) error {
	h.mu.Lock()
	h.hints = append(h.hints, blobRange{name, off, n})
	h.mu.Unlock()
	return h.Store.Prefetch(ctx, name, off, n)
}

func (h *hintingBlobs) taken() []blobRange {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.hints
	h.hints = nil
	return out
}

// quarterImage is an image of size bytes in blocks of bs, seeded with
// (s1, s2): of every four blocks two random (stored raw), one text
// (compressed) and one a hole.
func quarterImage(s1, s2 uint64, size, bs int64) []byte {
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(s1, s2))
	for b := range size / bs {
		blk := model[b*bs : (b+1)*bs]
		switch b % 4 {
		case 0, 1:
			fillRandom(rng, blk)
		case 2:
			for i := range blk {
				blk[i] = "abcdefgh\n"[rng.IntN(9)]
			}
		} // case 3: a hole
	}
	return model
}

// TestReadMissHintsPageReadAhead: the first read of a block not hydrated
// yet in a source page has the chunks of the page's blocks not hydrated
// yet read ahead with a few hints to the blob store (one per run of
// nearby chunks in a pack, not one per chunk) that cover every one of
// them; the next reads in the page give none, a read in another page
// hints that page's; what the reads return is the source's.
func TestReadMissHintsPageReadAhead(t *testing.T) {
	ctx := context.Background()
	var hb *hintingBlobs
	e, _, index, _ := newRealEngineDB(t, Options{BlockSize: 4096}, nil, func(s *local.Store) blobstore.Store {
		hb = &hintingBlobs{Store: s}
		return hb
	})
	const bs, pages = 4096, 2
	const size = pages * EntriesPerPage * bs
	model := quarterImage(41, 42, size, bs)
	v, _, release := restoreModelHeld(t, e, model)
	defer close(release)
	hb.taken() // the snapshot's and the restore's own reads
	read := func(b int64) {
		t.Helper()
		buf := make([]byte, 1000)
		off := b*bs + 33
		if _, err := v.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, model[off:off+int64(len(buf))]) {
			t.Fatalf("read of block %d differs from the source", b)
		}
	}
	// covered reports the chunks of page p's data blocks that no hint
	// covers, and how many data blocks the page has.
	covered := func(p int64, hints []blobRange) (missing, data int) {
		t.Helper()
		ids, err := v.hyd.cache.page(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		for b := p * EntriesPerPage; b < (p+1)*EntriesPerPage; b++ {
			id := ids[b%EntriesPerPage]
			if id.IsZero() {
				continue
			}
			data++
			found, err := index.Lookup(ctx, []chunk.ID{id})
			if err != nil {
				t.Fatal(err)
			}
			ent := found[id]
			in := false
			for _, h := range hints {
				in = in || h.name == ent.Pack && h.off <= ent.Offset && ent.Offset+int64(ent.Length) <= h.off+h.n
			}
			if !in {
				t.Logf("block %d: %+v not in %v", b, ent, hints)
				missing++
			}
		}
		return missing, data
	}
	read(5)
	v.hyd.locs.waitPrefetch() // the page is read ahead off the read's path
	hints := hb.taken()
	missing, data := covered(0, hints)
	if len(hints) == 0 || missing > 0 || len(hints)*16 > data {
		t.Fatalf("the first read in page 0 gave %d hints, leaving %d of its %d data blocks' chunks unhinted; want every one hinted, with at most %d hints", len(hints), missing, data, data/16)
	}
	for _, b := range []int64{6, 100, 254} {
		read(b)
	}
	v.hyd.locs.waitPrefetch()
	if hints := hb.taken(); len(hints) != 0 {
		t.Errorf("later reads in a located page gave %d hints, want 0", len(hints))
	}
	read(EntriesPerPage + 9)
	v.hyd.locs.waitPrefetch()
	hints = hb.taken()
	if missing, data := covered(1, hints); len(hints) == 0 || missing > 0 || len(hints)*16 > data {
		t.Errorf("the first read in page 1 gave %d hints, leaving %d of its %d data blocks' chunks unhinted", len(hints), missing, data)
	}
	if n := v.hyd.locs.hinted.Load(); n != 2*int64(len(hints)) && n < 2 {
		t.Errorf("hinted count %d", n)
	}
	wantImage(t, v, model, "while hydrating")
}

// fakeLocator is a chunkLocator whose Locate reports each call on calls
// and returns only once release is closed.
type fakeLocator struct {
	calls   chan struct{}
	release chan struct{}
}

func (f *fakeLocator) Locate(ctx context.Context, ids []chunk.ID) (map[chunk.ID]chunkstore.Entry, error) {
	f.calls <- struct{}{}
	<-f.release
	out := map[chunk.ID]chunkstore.Entry{}
	for i, id := range ids {
		out[id] = chunkstore.Entry{ID: id, Pack: "p", Offset: int64(i) << 16, Length: 1 << 16, RawLength: 1 << 16}
	}
	return out, nil
}

func (f *fakeLocator) GetLocatedInto(context.Context, []chunkstore.Entry, []byte, int, func(int) []byte, func(int, []byte) error) error {
	return errors.New("not read")
}

// TestLocCacheLocatesPageOnce: reads of several blocks of one page that
// miss at once look the page up once: the first looks up, the others
// wait for it and then find its entries.
func TestLocCacheLocatesPageOnce(t *testing.T) {
	ctx := context.Background()
	const readers = 6
	c := newLocCache(8)
	waiting := make(chan int64, readers)
	c.waiting = func(p int64) { waiting <- p }
	fl := &fakeLocator{calls: make(chan struct{}, readers), release: make(chan struct{})}
	page := make([]chunk.ID, EntriesPerPage)
	for i := range page {
		page[i] = chunk.Hash([]byte{byte(i), byte(i >> 8)})
	}
	pending := func(int64) bool { return true }
	errs := make(chan error, readers)
	got := make(chan chunkstore.Entry, readers)
	for r := range readers {
		go func() {
			b := int64(EntriesPerPage + 10*r) // page 1
			e, ok, err := c.entry(ctx, fl, nil, b, page[b%EntriesPerPage], page, pending)
			if err == nil && !ok {
				err = fmt.Errorf("block %d not located", b)
			}
			errs <- err
			got <- e
		}()
	}
	// One lookup, and every other reader waiting for it.
	<-fl.calls
	for range readers - 1 {
		select {
		case p := <-waiting:
			if p != 1 {
				t.Fatalf("waited for page %d, want 1", p)
			}
		case <-fl.calls:
			t.Fatal("a second lookup of a page being looked up")
		}
	}
	close(fl.release)
	for range readers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if e := <-got; e.Pack != "p" || e.Length != 1<<16 {
			t.Fatalf("entry %+v", e)
		}
	}
	if n := len(fl.calls); n != 0 {
		t.Errorf("%d more lookups after the first", n)
	}
}

// heldIndex holds the lookups of the chunk index while armed: each
// reports itself on entered, then waits for release.
type heldIndex struct {
	chunkstore.Index
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (x *heldIndex) Lookup(ctx context.Context, ids []chunk.ID) (map[chunk.ID]chunkstore.Entry, error) {
	if x.armed.Load() {
		x.entered <- struct{}{}
		<-x.release
	}
	return x.Index.Lookup(ctx, ids)
}

// TestReadMissLooksUpOutsideStripe: a read of a block not hydrated yet
// loads its source page and looks up where the page's chunks lie before
// it takes the block's stripe, so a slow lookup (a busy read pool) holds
// up no read of another block of that stripe; the read then returns the
// source's bytes.
func TestReadMissLooksUpOutsideStripe(t *testing.T) {
	x := &heldIndex{entered: make(chan struct{}), release: make(chan struct{})}
	e, _, _ := newRealEngineWith(t, Options{BlockSize: 4096}, func(i chunkstore.Index) chunkstore.Index {
		x.Index = i
		return x
	})
	const bs = 4096
	const size = 2 * EntriesPerPage * bs
	model := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(43, 44)), model)
	e.hooks.locateAhead = func(string) bool { return false } // the read locates its page
	v, held, release := restoreModelHeld(t, e, model)
	defer close(release)
	<-held
	x.armed.Store(true)
	done := make(chan error, 1)
	buf := make([]byte, 512)
	go func() {
		_, err := v.ReadAt(buf, 5*bs+100)
		done <- err
	}()
	// Every lookup the read makes (its page's load, its page's chunks) is
	// held in turn; meanwhile block 5's stripe is free.
	for n := 0; ; n++ {
		select {
		case <-x.entered:
			if v.stripe(5).TryLock() {
				v.stripe(5).Unlock()
			} else {
				t.Errorf("lookup %d of the read of block 5 runs under the block's stripe", n)
			}
			x.release <- struct{}{}
			continue
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Fatal("the read looked nothing up")
			}
		}
		break
	}
	x.armed.Store(false)
	if !bytes.Equal(buf, model[5*bs+100:5*bs+100+512]) {
		t.Fatal("read of block 5 differs from the source")
	}
}

// restoreModelHeld writes model to a new volume "src" of e and restores
// it as restoreHeldOn does.
func restoreModelHeld(t *testing.T, e *Engine, model []byte) (v *Volume, held <-chan struct{}, release chan struct{}) {
	t.Helper()
	src, err := e.CreateVolume(context.Background(), "src", int64(len(model)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	return restoreHeldOn(t, e, "src")
}

// onReadPath marks the context of a user's read in
// TestReadMissReadAheadOffPathBounded.
type onReadPath struct{}

// holdingBlobs holds every read-ahead hint (blobstore.Prefetcher) until
// release gives it a turn, and records the hints, the most held at once,
// and any hint given with a user's read's context (onReadPath).
type holdingBlobs struct {
	*local.Store
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	hints   []blobRange
	now     int
	most    int
	onPath  int
}

func (h *holdingBlobs) Prefetch(ctx context.Context, name string, off, n int64) error {
	h.mu.Lock()
	if ctx.Value(onReadPath{}) != nil {
		h.onPath++
		h.mu.Unlock()
		h.entered <- struct{}{} // (the test goes on, and fails)
		return nil
	}
	h.hints = append(h.hints, blobRange{name, off, n})
	h.now++
	h.most = max(h.most, h.now)
	h.mu.Unlock()
	h.entered <- struct{}{}
	<-h.release
	h.mu.Lock()
	h.now--
	h.mu.Unlock()
	return h.Store.Prefetch(ctx, name, off, n)
}

// TestReadMissReadAheadOffPathBounded: the read that locates a page does
// not give the page's read-ahead hints itself (it returns while they are
// held); the pages wait for their read-ahead one at a time, the newest
// first, at most prefetchQueue of them (those located while the queue
// was full are pushed out, oldest first); a page the hydrator has read
// meanwhile is not read ahead; what the reads return is the source's.
func TestReadMissReadAheadOffPathBounded(t *testing.T) {
	ctx := context.Background()
	var hb *holdingBlobs
	e, _, index, _ := newRealEngineDB(t, Options{BlockSize: 4096}, nil, func(s *local.Store) blobstore.Store {
		hb = &holdingBlobs{Store: s, entered: make(chan struct{}, 1024), release: make(chan struct{})}
		return hb
	})
	const bs = 4096
	const pages = prefetchQueue + 4
	const size = pages * EntriesPerPage * bs
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(43, 44))
	for b := range int64(size / bs) {
		if b%4 != 3 { // a hole in four; the others data, each its own
			for i := range model[b*bs : (b+1)*bs] {
				model[b*bs+int64(i)] = "abcdefgh\n"[rng.IntN(9)]
			}
		}
	}
	v, _, release := restoreModelHeld(t, e, model)
	defer close(release)
	var order []int64 // written by the read-ahead's one goroutine, read after waitPrefetch
	v.hyd.locs.readAhead = func(p int64) { order = append(order, p) }
	rctx := context.WithValue(ctx, onReadPath{}, true)
	read := func(p int64) {
		t.Helper()
		off := (p*EntriesPerPage+5)*bs + 100
		buf := make([]byte, 1000)
		if _, err := v.ReadAtContext(rctx, buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, model[off:off+int64(len(buf))]) {
			t.Fatalf("read in page %d differs from the source", p)
		}
	}
	read(0)
	<-hb.entered // page 0's read-ahead, held; the read has returned
	for p := int64(1); p < pages; p++ {
		read(p)
	}
	// The hydrator's job of page 4 reads it meanwhile (and drops its
	// entries): no read-ahead of it then.
	v.hyd.locs.drop(4)
	close(hb.release)
	v.hyd.locs.waitPrefetch()
	hb.mu.Lock()
	hints, most, onPath := hb.hints, hb.most, hb.onPath
	hb.mu.Unlock()
	if onPath > 0 {
		t.Errorf("%d read-ahead hints given on a read's path", onPath)
	}
	if most != 1 {
		t.Errorf("%d read-ahead hints held at once, want 1", most)
	}
	if want := []int64{0, 11, 10, 9, 8, 7, 6, 5}; !slices.Equal(order, want) { // pages = prefetchQueue + 4
		t.Errorf("pages read ahead in the order %v, want %v: page 0 at once, then of pages 1-%d, located while it was, the newest %d (the others pushed out) but 4, which the hydrator read", order, want, pages-1, prefetchQueue)
	}
	// Page 0's hints cover every chunk of its data blocks.
	ids, err := v.hyd.cache.page(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	found, err := index.Lookup(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		ent, in := found[id], false
		for _, h := range hints {
			in = in || h.name == ent.Pack && h.off <= ent.Offset && ent.Offset+int64(ent.Length) <= h.off+h.n
		}
		if !id.IsZero() && !in {
			t.Errorf("block %d's chunk not hinted", i)
		}
	}
	wantImage(t, v, model, "while hydrating")
}

// TestHydrationLocatesAhead: from its start a hydration locates the chunks
// of its source's pages in memory, one lookup of the chunk index per page
// (locateAhead), so the reads of blocks not hydrated yet look nothing up
// (neither their page nor its chunks) and the hydrator's jobs neither;
// the first read in a page still has the page's chunks not hydrated yet
// read ahead (a hint per run, as when the read locates the page); what
// the reads and the hydrated volume hold is the source.
func TestHydrationLocatesAhead(t *testing.T) {
	ctx := context.Background()
	var x *countingIndex
	var hb *hintingBlobs
	e, _, _, _ := newRealEngineDB(t, Options{BlockSize: 4096}, func(i chunkstore.Index) chunkstore.Index {
		x = &countingIndex{Index: i}
		return x
	}, func(s *local.Store) blobstore.Store {
		hb = &hintingBlobs{Store: s}
		return hb
	})
	const bs, pages = 4096, 3
	const size = pages * EntriesPerPage * bs
	model := quarterImage(51, 52, size, bs)
	ahead := make(chan struct{})
	e.hooks.locatedAhead = func(string) { close(ahead) }
	v, held, release := restoreModelHeld(t, e, model)
	<-held
	<-ahead
	h := v.hyd
	h.locs.mu.Lock()
	located := len(h.locs.pages)
	h.locs.mu.Unlock()
	if located != pages {
		t.Fatalf("%d pages located ahead, want %d", located, pages)
	}
	hb.taken()
	calls := x.calls.Load()
	buf := make([]byte, 1000)
	for b := int64(1); b < size/bs; b += 3 {
		off := b*bs + 55
		if _, err := v.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, model[off:off+int64(len(buf))]) {
			t.Fatalf("read of block %d differs from the source", b)
		}
	}
	if n := x.calls.Load() - calls; n != 0 {
		t.Errorf("reads of blocks in %d pages located ahead looked up the index %d times, want 0", pages, n)
	}
	h.locs.waitPrefetch()
	if hints := hb.taken(); len(hints) < pages {
		t.Errorf("the reads in %d pages located ahead gave %d read-ahead hints, want at least one a page", pages, len(hints))
	}
	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	if n := x.calls.Load() - calls; n != 0 {
		t.Errorf("the reads and the hydrator looked up the index %d times, want 0", n)
	}
	wantImage(t, v, model, "after hydration")
}
