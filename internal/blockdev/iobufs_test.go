package blockdev

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"golang.org/x/sync/errgroup"

	"coffer/internal/blobstore/local"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/store/memstore"
)

// mappedIOBufs returns how many read buffers and spans the engine has
// mapped and how many users hold them open.
func (e *Engine) mappedIOBufs() (reads, spans, users int) {
	p := &e.iobufs
	_, reads = p.reads.held()
	_, spans = p.spans.held()
	p.mu.Lock()
	defer p.mu.Unlock()
	return reads, spans, p.users
}

// peakWriter is an in-memory io.WriterAt that records the most read
// buffers and spans the engine had mapped at any of its writes.
type peakWriter struct {
	e                *Engine
	mu               sync.Mutex
	b                []byte
	peakRead, peakSp int
}

func (w *peakWriter) WriteAt(p []byte, off int64) (int, error) {
	r, s, _ := w.e.mappedIOBufs()
	w.mu.Lock()
	w.peakRead, w.peakSp = max(w.peakRead, r), max(w.peakSp, s)
	w.mu.Unlock()
	copy(w.b[off:], p)
	return len(p), nil
}

// TestRestoresShareBuffers runs four full restores and the hydration of
// an instant restore at once, over the real chunk store and local blob
// store: every restored image is exact, the five never hold more than
// Workers+restoreIODepth of the engine's read buffers, nor of its spans,
// together (one restore's worth), and none is left mapped once they end.
func TestRestoresShareBuffers(t *testing.T) {
	ctx := context.Background()
	blobs, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := chunkstore.New(blobs, chunkstore.NewMemIndex(), chunkstore.Options{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(ctx, t.TempDir(), cs, blobs, Options{BlockSize: 4 << 10, Workers: 2, Catalogue: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// 24 MiB: compressible and random blocks, and holes.
	const size = 12 << 20
	v, err := e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(5, 6))
	for off := int64(0); off < size; off += 16 << 10 {
		p := model[off : off+12<<10]
		if off%(48<<10) == 0 {
			fillRandom(rng, p)
		} else {
			copy(p, bytes.Repeat([]byte{byte(off >> 14), 'x', 'y'}, len(p)/3))
		}
		if _, err := v.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Snapshot(ctx, "vol", "s1"); err != nil {
		t.Fatal(err)
	}
	writers := make([]*peakWriter, 4)
	g, gctx := errgroup.WithContext(ctx)
	for i := range writers {
		w := &peakWriter{e: e, b: make([]byte, size)}
		writers[i] = w
		g.Go(func() error { return e.RestoreTo(gctx, "s1", w) })
	}
	g.Go(func() error {
		rv, err := e.RestoreVolume(gctx, "s1", "restored")
		if err != nil {
			return err
		}
		return rv.WaitHydrated(gctx)
	})
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	limit := e.opts.Workers + restoreIODepth
	for i, w := range writers {
		if !bytes.Equal(w.b, model) {
			t.Errorf("restore %d differs from the volume at byte %d", i, firstDiff(w.b, model))
		}
		if w.peakRead > limit || w.peakRead == 0 || w.peakSp > limit || w.peakSp == 0 {
			t.Errorf("restore %d saw %d read buffers and %d spans mapped, want 1 to %d of each", i, w.peakRead, w.peakSp, limit)
		}
	}
	rv, err := e.OpenVolume(ctx, "restored")
	if err != nil {
		t.Fatal(err)
	}
	if got := image(t, rv); !bytes.Equal(got, model) {
		t.Errorf("hydrated volume differs at byte %d", firstDiff(got, model))
	}
	if reads, spans, users := e.mappedIOBufs(); reads != 0 || spans != 0 || users != 0 {
		t.Errorf("after the restores: %d read buffers and %d spans mapped, %d users", reads, spans, users)
	}
}

// gatedChunks is the real chunk store with a gate before every job's
// batched read (one with a read buffer): each counts itself in, and once want of them are
// waiting, inside is closed; they go on when open is closed.
type gatedChunks struct {
	*chunkstore.Store
	want         int
	mu           sync.Mutex
	n            int
	inside, open chan struct{}
}

func (g *gatedChunks) GetManyInto(ctx context.Context, ids []chunk.ID, rbuf []byte, ahead int, dst func(i int) []byte, fn func(i int, data []byte) error) error {
	if rbuf == nil { // not a job's read: the index pages'
		return g.Store.GetManyInto(ctx, ids, rbuf, ahead, dst, fn)
	}
	g.mu.Lock()
	if g.n++; g.n == g.want {
		close(g.inside)
	}
	g.mu.Unlock()
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Store.GetManyInto(ctx, ids, rbuf, ahead, dst, fn)
}

// gatedWriter is an in-memory io.WriterAt whose writes wait in the same
// way: once want of them are waiting, inside is closed; they go on when
// open is closed.
type gatedWriter struct {
	b            []byte
	want         int
	mu           sync.Mutex
	n            int
	inside, open chan struct{}
}

func (w *gatedWriter) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	if w.n++; w.n == w.want {
		close(w.inside)
	}
	w.mu.Unlock()
	<-w.open
	copy(w.b[off:], p)
	return len(p), nil
}

// TestRestoreJobsSplitBuffers restores a disk of exactly one span per
// buffer of each pool (Workers+restoreIODepth jobs, each one run of data
// blocks, so one write) over the real chunk store, holding every job
// first in its batched read and then in its write: while every job waits
// for its read, all hold a read buffer and none a span; while every job
// writes, all hold a span and none a read buffer. Either way round the
// pool a job does not need is left to the others (ioBufs), and the image
// comes out exact.
func TestRestoreJobsSplitBuffers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	blobs, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := chunkstore.New(blobs, chunkstore.NewMemIndex(), chunkstore.Options{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const (
		workers = 2
		bs      = 4 << 10
		jobs    = workers + restoreIODepth
	)
	gc := &gatedChunks{Store: cs, want: jobs, inside: make(chan struct{}), open: make(chan struct{})}
	e, err := Open(ctx, t.TempDir(), gc, blobs, Options{BlockSize: bs, Workers: workers, Catalogue: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	close(gc.open) // the snapshot's reads, if any, pass
	size := int64(jobs) * min(EntriesPerPage*bs, restoreBufBytes)
	v, err := e.CreateVolume(ctx, "vol", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(7, 8)), model) // no holes, nothing shared
	if _, err := v.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Snapshot(ctx, "vol", "s1"); err != nil {
		t.Fatal(err)
	}
	gc.mu.Lock()
	gc.n, gc.inside, gc.open = 0, make(chan struct{}), make(chan struct{})
	gc.mu.Unlock()
	w := &gatedWriter{b: make([]byte, size), want: jobs, inside: make(chan struct{}), open: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- e.RestoreTo(ctx, "s1", w) }()
	held := func() (reads, spans int) {
		reads, _ = e.iobufs.reads.held()
		spans, _ = e.iobufs.spans.held()
		return reads, spans
	}
	wait := func(c chan struct{}) {
		select {
		case <-c:
		case err := <-done:
			t.Fatalf("restore ended before its jobs met at the gate: %v", err)
		}
	}
	wait(gc.inside)
	if r, s := held(); r != jobs || s != 0 {
		t.Errorf("with every job waiting for its read: %d read buffers and %d spans held, want %d and 0", r, s, jobs)
	}
	close(gc.open)
	wait(w.inside)
	if r, s := held(); r != 0 || s != jobs {
		t.Errorf("with every job writing: %d read buffers and %d spans held, want 0 and %d", r, s, jobs)
	}
	close(w.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.b, model) {
		t.Errorf("restore differs from the volume at byte %d", firstDiff(w.b, model))
	}
}
