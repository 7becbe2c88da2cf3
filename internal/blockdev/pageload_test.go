package blockdev

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"coffer/internal/chunk"
	"coffer/internal/clock"
	"coffer/internal/store/memstore"
)

// pageGets is a chunk store (memChunks) that counts the Gets of each
// chunk and holds those of the chunks in held until release is closed,
// sending each one it holds to holding.
type pageGets struct {
	*memChunks
	mu      sync.Mutex
	gets    map[chunk.ID]int
	held    map[chunk.ID]bool
	holding chan chunk.ID
	release chan struct{}
}

func (c *pageGets) Get(ctx context.Context, id chunk.ID) ([]byte, error) {
	c.mu.Lock()
	c.gets[id]++
	hold := c.held[id]
	c.mu.Unlock()
	if hold {
		c.holding <- id
		select {
		case <-c.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c.memChunks.Get(ctx, id)
}

// pageLoadBS and pageLoadPages are the shape of pageLoadSource's volume.
const pageLoadBS, pageLoadPages = 4096, 4

// pageLoadSource is an engine over a pageGets chunk store (closed with the
// test) with a snapshot "s" of a volume of pageLoadPages full index pages
// of random blocks (block 1 of each page a hole when holes is set): the
// chunk store, the engine, the image and the snapshot's record.
func pageLoadSource(t *testing.T, seed uint64, holes bool) (*pageGets, *Engine, []byte, *record) {
	t.Helper()
	ctx := context.Background()
	const bs, pages = pageLoadBS, pageLoadPages
	const size = pages * EntriesPerPage * bs
	chunks := &pageGets{memChunks: newMemChunks(), gets: map[chunk.ID]int{}, held: map[chunk.ID]bool{},
		holding: make(chan chunk.ID, 64), release: make(chan struct{})}
	e, err := Open(ctx, t.TempDir(), chunks, newMemBlobs(), Options{BlockSize: bs, Catalogue: memstore.New(),
		Clock: clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	src, err := e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	img := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := 0; i < size; i += 8 {
		binary.LittleEndian.PutUint64(img[i:], rng.Uint64())
	}
	if holes {
		for p := range int64(pages) {
			clear(img[(p*EntriesPerPage+1)*bs : (p*EntriesPerPage+2)*bs])
		}
	}
	if _, err := src.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Snapshot(ctx, "src", "s"); err != nil {
		t.Fatal(err)
	}
	_, rec, err := e.loadSnapshot(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	return chunks, e, img, rec
}

// TestHydrationLoadsIndexPagesOnce: a hydration reads each index page of
// its source from the chunk store once — preallocate's batch caches them
// (pageCache.batches), the hydrator's jobs and the reads of blocks not
// hydrated yet take them from the cache — and a read of a block whose page
// the batch is loading waits for that load instead of loading the page
// itself. What the reads and the hydrated volume hold is the source's.
func TestHydrationLoadsIndexPagesOnce(t *testing.T) {
	ctx := context.Background()
	const bs, pages = pageLoadBS, pageLoadPages
	chunks, e, img, rec := pageLoadSource(t, 15, true)
	for _, id := range rec.Pages {
		if id.IsZero() {
			t.Fatal("a page of holes in the source")
		}
		chunks.held[id] = true
	}
	release := sync.OnceFunc(func() { close(chunks.release) })
	defer release()                   // a failed check must not leave a Get held
	reached, hold := holdHydrators(e) // the jobs: the reads hydrate the blocks below
	v, err := e.RestoreVolume(ctx, "s", "dst")
	if err != nil {
		t.Fatal(err)
	}
	<-chunks.holding // preallocate's batch is loading the pages (the first)
	c := v.hyd.cache
	waited := make(chan int64, 16)
	c.mu.Lock()
	c.waiting = func(p int64) { waited <- p }
	c.mu.Unlock()
	read := func(b int64) {
		t.Helper()
		buf := make([]byte, bs)
		if _, err := v.ReadAt(buf, b*bs); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, img[b*bs:(b+1)*bs]) {
			t.Fatalf("block %d differs from the source", b)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		read(2 * EntriesPerPage) // page 2's first block
	}()
	select {
	case p := <-waited:
		if p != 2 {
			t.Fatalf("the read waited for page %d, want 2", p)
		}
	case id := <-chunks.holding:
		t.Fatalf("index page %s read again while the batch loads it", id.Short())
	}
	release()
	<-done
	<-reached
	for p := range int64(pages) {
		for _, b := range []int64{p * EntriesPerPage, p*EntriesPerPage + 1, p*EntriesPerPage + 7} {
			read(b)
		}
	}
	close(hold)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(img))
	if _, err := v.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Error("the hydrated volume differs from the source")
	}
	chunks.mu.Lock()
	defer chunks.mu.Unlock()
	for p, id := range rec.Pages {
		if n := chunks.gets[id]; n != 1 {
			t.Errorf("index page %d read %d times from the chunk store, want 1", p, n)
		}
	}
}

// TestPageBatchLetsPagesGoAsTheyArrive: a batch of index pages
// (pageCache.batches, here preallocate's) caches each page as it arrives,
// so a read of a block whose page has arrived while the batch still waits
// for a later page neither waits for the batch nor loads the page again;
// what the reads and the hydrated volume hold is the source's.
func TestPageBatchLetsPagesGoAsTheyArrive(t *testing.T) {
	ctx := context.Background()
	const bs, pages = pageLoadBS, pageLoadPages
	chunks, e, img, rec := pageLoadSource(t, 16, false)
	chunks.held[rec.Pages[pages-1]] = true // the batch's last page
	release := sync.OnceFunc(func() { close(chunks.release) })
	defer release()
	_, hold := holdHydrators(e)
	v, err := e.RestoreVolume(ctx, "s", "dst")
	if err != nil {
		t.Fatal(err)
	}
	<-chunks.holding // the batch has fetched pages 0-2 and waits for page 3
	c := v.hyd.cache
	waited := make(chan int64, 16)
	c.mu.Lock()
	c.waiting = func(p int64) { waited <- p }
	c.mu.Unlock()
	done := make(chan error, 1)
	buf := make([]byte, bs)
	go func() {
		_, err := v.ReadAt(buf, (EntriesPerPage+5)*bs) // page 1
		done <- err
	}()
	select {
	case p := <-waited:
		t.Fatalf("the read of a block of page 1 waited for page %d while the batch held page %d", p, pages-1)
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(buf, img[(EntriesPerPage+5)*bs:(EntriesPerPage+6)*bs]) {
		t.Fatal("block read differs from the source")
	}
	release()
	close(hold)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(img))
	if _, err := v.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Error("the hydrated volume differs from the source")
	}
	chunks.mu.Lock()
	defer chunks.mu.Unlock()
	for p, id := range rec.Pages {
		if n := chunks.gets[id]; n != 1 {
			t.Errorf("index page %d read %d times from the chunk store, want 1", p, n)
		}
	}
}
