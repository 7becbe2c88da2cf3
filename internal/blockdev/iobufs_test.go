package blockdev

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"golang.org/x/sync/errgroup"

	"coffer/internal/blobstore/local"
	"coffer/internal/chunkstore"
	"coffer/internal/store/memstore"
)

// mappedIOBufs returns how many job buffers the engine has mapped and
// how many users hold them open.
func (e *Engine) mappedIOBufs() (mapped, users int) {
	p := &e.iobufs
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mapped, p.users
}

// peakWriter is an in-memory io.WriterAt that records the most job
// buffers the engine had mapped at any of its writes.
type peakWriter struct {
	e    *Engine
	mu   sync.Mutex
	b    []byte
	peak int
}

func (w *peakWriter) WriteAt(p []byte, off int64) (int, error) {
	n, _ := w.e.mappedIOBufs()
	w.mu.Lock()
	w.peak = max(w.peak, n)
	w.mu.Unlock()
	copy(w.b[off:], p)
	return len(p), nil
}

// TestRestoresShareBuffers runs four full restores and the hydration of
// an instant restore at once, over the real chunk store and local blob
// store: every restored image is exact, the five never hold more than
// Workers+restoreIODepth of the engine's job buffers together (one
// restore's worth), and none is left mapped once they end.
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
		if w.peak > limit || w.peak == 0 {
			t.Errorf("restore %d saw %d job buffers mapped, want 1 to %d", i, w.peak, limit)
		}
	}
	rv, err := e.OpenVolume(ctx, "restored")
	if err != nil {
		t.Fatal(err)
	}
	if got := image(t, rv); !bytes.Equal(got, model) {
		t.Errorf("hydrated volume differs at byte %d", firstDiff(got, model))
	}
	if mapped, users := e.mappedIOBufs(); mapped != 0 || users != 0 {
		t.Errorf("after the restores: %d job buffers mapped, %d users", mapped, users)
	}
}
