package blockdev

import (
	"bytes"
	"context"
	"math/rand/v2"
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

	hold := make(chan struct{})
	e.hooks.hydrator = func(ctx context.Context, _ string) {
		select {
		case <-hold:
		case <-ctx.Done():
		}
	}
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

// TestReadHydratesAround: a read of a block not hydrated yet fills in the
// aligned run of hydrateAroundBlocks blocks around it, fetching the
// chunks of its data blocks (a hole needs none) and nothing beyond it,
// and every block reads as the snapshot.
func TestReadHydratesAround(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	const size = 4 * hydrateAroundBlocks * bs
	src, err := env.e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(14, 15)), model)
	hole := int64(hydrateAroundBlocks + 4) // in the run read below
	clear(model[hole*bs : (hole+1)*bs])
	if _, err := src.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	v, held, release := restoreHeld(t, env, "src")
	defer close(release)
	<-held
	gets := env.chunks.gets.Load()
	b := int64(hydrateAroundBlocks + 5)
	got := make([]byte, 512)
	if _, err := v.ReadAt(got, b*bs+100); err != nil || !bytes.Equal(got, model[b*bs+100:b*bs+612]) {
		t.Fatalf("read: %v, differs at %d", err, firstDiff(got, model[b*bs+100:]))
	}
	if n := env.chunks.gets.Load() - gets; n != hydrateAroundBlocks {
		t.Errorf("the read fetched %d chunks, want %d (its run's but the hole's, and their index page)", n, hydrateAroundBlocks)
	}
	for x := int64(0); x < size/bs; x++ {
		in := x >= hydrateAroundBlocks && x < 2*hydrateAroundBlocks
		if v.isHydrated(x) != in {
			t.Errorf("block %d hydrated %v, want %v", x, v.isHydrated(x), in)
		}
	}
	if img := image(t, v); !bytes.Equal(img, model) {
		t.Fatalf("volume differs from the snapshot at %d", firstDiff(img, model))
	}
}
