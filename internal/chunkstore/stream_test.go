package chunkstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"coffer/internal/blobstore/mem"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
)

// TestStreamsKeepChunksApart: streams written at the same time, block by
// block in turn, leave each pack holding one stream's chunks only; every
// chunk is readable from its open pack before the Flush and committed by
// it; and while four streams hold open packs, each seals its packs at a
// quarter of PackSize (no less than 8 MiB), so the open packs together hold
// about one pack's memory.
func TestStreamsKeepChunksApart(t *testing.T) {
	ctx := context.Background()
	const (
		streams  = 4
		perPack  = 8 << 20 // PackSize ÷ streams
		chunkLen = 64 << 10
		perSt    = 3 * perPack / chunkLen // three packs' worth each
	)
	idx := chunkstore.NewMemIndex()
	s := newStore(t, mem.New(), idx, chunkstore.Options{PackSize: streams * perPack, Level: chunkstore.LevelNone})
	content := func(st, i int) []byte { return randomData(uint64(st<<20|i), chunkLen) }

	sts := make([]*chunkstore.Stream, streams)
	for i := range sts {
		sts[i] = s.NewStream()
	}
	// The streams write in lock step, so that with one open pack for all
	// (the Store's Put) every pack would hold chunks of all four.
	var wg sync.WaitGroup
	step := make([]chan struct{}, streams)
	for i := range step {
		step[i] = make(chan struct{}, 1)
	}
	step[0] <- struct{}{}
	errs := make([]error, streams)
	for st := range streams {
		wg.Go(func() {
			for i := range perSt {
				<-step[st]
				d := content(st, i)
				id, err := sts[st].Put(ctx, d)
				if err == nil {
					_, err = s.Get(ctx, id) // from the open pack or a written one
				}
				step[(st+1)%streams] <- struct{}{}
				if err != nil {
					errs[st] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range sts {
		st.Close()
	}
	mustFlush(t, s)

	packOf := map[string]int{} // pack → the one stream whose chunks it holds
	packs := map[int]map[string]bool{}
	for st := range streams {
		packs[st] = map[string]bool{}
		for i := range perSt {
			d := content(st, i)
			e := lookupEntry(t, idx, chunk.Hash(d))
			if o, ok := packOf[e.Pack]; ok && o != st {
				t.Fatalf("pack %s holds chunks of streams %d and %d", e.Pack, o, st)
			}
			packOf[e.Pack] = st
			packs[st][e.Pack] = true
			checkGet(t, s, chunk.Hash(d), d)
		}
	}
	// Each stream's 24 MiB went into packs sealed at 8 MiB: 3 of them,
	// or 4 when the last chunk of one spilled over.
	for st, ps := range packs {
		if n := len(ps); n < 3 || n > 4 {
			t.Errorf("stream %d: %d packs, want 3-4 of about %d MiB", st, n, perPack>>20)
		}
	}
	if n := s.PackBuffers(); n != 0 {
		t.Errorf("after Flush the Store holds %d pack buffers", n)
	}
	mustVerify(t, s)
}

// TestStreamCloseAndFlush: a closed stream's last pack is committed by the
// next Flush, a Flush seals the open packs of streams not closed, and a
// stream used again after a Flush opens a new pack.
func TestStreamCloseAndFlush(t *testing.T) {
	ctx := context.Background()
	blobs := mem.New()
	s := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{PackSize: 1 << 20})
	a, b := s.NewStream(), s.NewStream()
	da, db := textData(1, 10<<10), textData(2, 10<<10)
	ida, err := a.Put(ctx, da)
	if err != nil {
		t.Fatal(err)
	}
	idb, err := b.Put(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	mustFlush(t, s) // b stays open
	if n := countPacks(t, blobs); n != 2 {
		t.Fatalf("%d packs after the Flush, want 2 (one per stream)", n)
	}
	if st := stats(t, s); st.Chunks != 2 || st.PendingChunks != 0 {
		t.Fatalf("Stats = %+v, want 2 committed chunks", st)
	}
	dc := textData(3, 10<<10)
	idc, err := b.Put(ctx, dc)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	a.Close() // twice is harmless
	mustFlush(t, s)
	if n := countPacks(t, blobs); n != 3 {
		t.Fatalf("%d packs, want 3", n)
	}
	checkGet(t, s, ida, da)
	checkGet(t, s, idb, db)
	checkGet(t, s, idc, dc)
	if n := s.PackBuffers(); n != 0 {
		t.Errorf("an idle Store holds %d pack buffers", n)
	}
}

// TestStreamFlushCommitsWhatItFoundPending: a stream's Flush commits its own
// chunks and the chunks it found pending in another stream's open pack (it
// did not store them again), so a new Store over the same blobs and index,
// as after a crash, reads them all; it leaves an unrelated stream's open
// pack open.
func TestStreamFlushCommitsWhatItFoundPending(t *testing.T) {
	ctx := context.Background()
	blobs := mem.New()
	idx := chunkstore.NewMemIndex()
	s := newStore(t, blobs, idx, chunkstore.Options{PackSize: 1 << 20})
	a, b, c := s.NewStream(), s.NewStream(), s.NewStream()
	shared, own, other := textData(1, 10<<10), textData(2, 10<<10), textData(3, 10<<10)
	for _, put := range []struct {
		st *chunkstore.Stream
		d  []byte
	}{{a, shared}, {b, shared}, {b, own}, {c, other}} {
		if _, err := put.st.Put(ctx, put.d); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// a's pack (holding the shared chunk) and b's were written; c's not.
	if n := countPacks(t, blobs); n != 2 {
		t.Errorf("%d packs after b's Flush, want 2 (a's and b's)", n)
	}
	after := newStore(t, blobs, idx, chunkstore.Options{PackSize: 1 << 20})
	checkGet(t, after, chunk.Hash(shared), shared)
	checkGet(t, after, chunk.Hash(own), own)
	if _, err := after.Get(ctx, chunk.Hash(other)); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Errorf("c's chunk, never flushed: Get = %v, want ErrNotFound", err)
	}
	mustFlush(t, s)
	checkGet(t, after, chunk.Hash(other), other)
}
