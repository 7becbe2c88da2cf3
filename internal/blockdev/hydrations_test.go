package blockdev

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/store/memstore"
)

// TestHydrationsListsHydratingVolumes: Hydrations (what the hydration
// metrics read) lists a restored volume while it hydrates, with its size
// and progress, and no volume that is not hydrating.
func TestHydrationsListsHydratingVolumes(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	e, err := Open(ctx, t.TempDir(), newMemChunks(), newMemBlobs(), Options{BlockSize: 4096, Clock: clk, Catalogue: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const size = 1 << 20
	src, err := e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(3, 4)), data)
	if _, err := src.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Snapshot(ctx, "src", "s1"); err != nil {
		t.Fatal(err)
	}
	if hs := e.Hydrations(); len(hs) != 0 {
		t.Fatalf("hydrations before a restore: %+v", hs)
	}

	_, hold := holdHydrators(e)
	v, err := e.RestoreVolume(ctx, "s1", "r")
	if err != nil {
		t.Fatal(err)
	}
	hs := e.Hydrations()
	if len(hs) != 1 || !hs[0].Hydrating || hs[0].TotalBytes != size || hs[0].DoneBytes >= size {
		t.Fatalf("hydrations while restoring: %+v, want one of %d bytes, not done", hs, size)
	}
	close(hold)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := v.WaitHydrated(wctx); err != nil {
		t.Fatal(err)
	}
	if hs := e.Hydrations(); len(hs) != 0 {
		t.Fatalf("hydrations after hydration ended: %+v", hs)
	}
}

// holdHydrators makes e's hydrators wait before their first job until
// hold is closed (or their context ends); reached is closed when the
// first of them gets there.
func holdHydrators(e *Engine) (reached, hold chan struct{}) {
	reached, hold = make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.hooks.hydrator = func(ctx context.Context, _ string) {
		once.Do(func() { close(reached) })
		select {
		case <-hold:
		case <-ctx.Done():
		}
	}
	return reached, hold
}
