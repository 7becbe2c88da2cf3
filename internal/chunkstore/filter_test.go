package chunkstore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"coffer/internal/blobstore/mem"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
)

// countingIndex counts Lookup calls.
type countingIndex struct {
	chunkstore.Index
	lookups int
}

func (c *countingIndex) Lookup(ctx context.Context, ids []chunk.ID) (map[chunk.ID]chunkstore.Entry, error) {
	c.lookups++
	return c.Index.Lookup(ctx, ids)
}

// noListIndex hides IDLister, so the filter is built from Packs/PackEntries.
type noListIndex struct{ chunkstore.Index }

// TestFilterSkipsLookups: new chunks are stored without asking the index;
// chunks already indexed (by an earlier Store over the same index) are
// still deduplicated, whichever way the filter is built.
func TestFilterSkipsLookups(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(chunkstore.Index) chunkstore.Index
	}{
		{"lister", func(x chunkstore.Index) chunkstore.Index { return x }},
		{"packs", func(x chunkstore.Index) chunkstore.Index { return noListIndex{x} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blobs := mem.New()
			mi := chunkstore.NewMemIndex()
			s1 := newStore(t, blobs, mi, chunkstore.Options{PackSize: 32 << 10})
			var old [][]byte
			for i := range 20 {
				d := randomData(uint64(i), 4<<10)
				old = append(old, d)
				mustPut(t, s1, d)
			}
			mustFlush(t, s1)
			packs := countPacks(t, blobs)

			ci := &countingIndex{Index: tc.wrap(mi)}
			s2 := newStore(t, blobs, ci, chunkstore.Options{PackSize: 32 << 10})
			for _, d := range old {
				mustPut(t, s2, d) // known: looked up, deduplicated
			}
			mustFlush(t, s2)
			if n := countPacks(t, blobs); n != packs {
				t.Fatalf("re-putting indexed chunks wrote %d packs", n-packs)
			}
			if err := s2.BuildFilter(context.Background()); err != nil {
				t.Fatal(err)
			}
			if st := s2.FilterStats(); !st.Ready || st.IDs < int64(len(old)) || st.Bytes == 0 {
				t.Fatalf("filter stats %+v", st)
			}
			before := ci.lookups
			for i := range 50 {
				mustPut(t, s2, randomData(uint64(1000+i), 4<<10))
			}
			mustFlush(t, s2)
			// Each new ID is a false positive with probability ~1%.
			if n := ci.lookups - before; n > 5 {
				t.Errorf("%d index lookups for 50 new chunks", n)
			}
			mustVerify(t, s2)
		})
	}
}

// TestFilterAfterGC: chunks GC condemned or deleted are stored again by a
// Put (the filter only ever says "maybe" for them), and read back.
func TestFilterAfterGC(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(epoch)
	blobs := mem.New()
	idx := chunkstore.NewMemIndex()
	s := newStore(t, blobs, idx, chunkstore.Options{Clock: clk, PackSize: 16 << 10})
	live := newLiveSet()
	var dead [][]byte
	for i := range 30 {
		d := randomData(uint64(i), 4<<10)
		id := mustPut(t, s, d)
		if i%2 == 0 {
			live.add(id)
		} else {
			dead = append(dead, d)
		}
	}
	mustFlush(t, s)
	clk.Advance(2 * margin)
	if rep := gc(t, s, live); rep.Condemned != len(dead) {
		t.Fatalf("condemned %d, want %d", rep.Condemned, len(dead))
	}
	// Condemned: Has says absent, Put stores a fresh copy.
	if h, err := s.Has(ctx, []chunk.ID{chunk.Hash(dead[0])}); err != nil || h[0] {
		t.Fatalf("Has(condemned) = %v, %v", h, err)
	}
	mustPut(t, s, dead[0])
	mustFlush(t, s)
	live.add(chunk.Hash(dead[0]))
	clk.Advance(2 * margin)
	gc(t, s, live) // deletes the other dead chunks
	for _, d := range dead[1:] {
		if _, err := s.Get(ctx, chunk.Hash(d)); !errors.Is(err, chunkstore.ErrNotFound) {
			t.Fatalf("deleted chunk: Get = %v", err)
		}
	}
	// Deleted: Put must store them again, not trust stale filter bits.
	for _, d := range dead {
		mustPut(t, s, d)
	}
	mustFlush(t, s)
	for _, d := range dead {
		checkGet(t, s, chunk.Hash(d), d)
	}
	mustVerify(t, s)
}

// TestFilterAfterRebuildIndex: a Store whose filter was built over an empty
// index learns the IDs RebuildIndex adds, so it deduplicates against them.
func TestFilterAfterRebuildIndex(t *testing.T) {
	ctx := context.Background()
	blobs := mem.New()
	s1 := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{PackSize: 32 << 10})
	var datas [][]byte
	for i := range 20 {
		d := textData(uint64(i), 8<<10)
		datas = append(datas, d)
		mustPut(t, s1, d)
	}
	mustFlush(t, s1)
	packs := countPacks(t, blobs)

	s2 := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{PackSize: 32 << 10})
	if err := s2.BuildFilter(ctx); err != nil || !s2.FilterStats().Ready {
		t.Fatalf("BuildFilter: %v", err)
	}
	if h, err := s2.Has(ctx, []chunk.ID{chunk.Hash(datas[0])}); err != nil || h[0] {
		t.Fatalf("Has before rebuild = %v, %v", h, err)
	}
	if err := s2.RebuildIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range datas {
		mustPut(t, s2, d)
	}
	mustFlush(t, s2)
	if n := countPacks(t, blobs); n != packs {
		t.Fatalf("after RebuildIndex, re-putting indexed chunks wrote %d packs", n-packs)
	}
	// Rebuilding again over the same index (Clear, then Add) changes nothing.
	if err := s2.RebuildIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range datas {
		mustPut(t, s2, d)
		checkGet(t, s2, chunk.Hash(d), d)
	}
	mustFlush(t, s2)
	if n := countPacks(t, blobs); n != packs {
		t.Fatalf("after a second RebuildIndex, %d new packs", n-packs)
	}
	mustVerify(t, s2)
}

// failingIndex fails Stats and Packs (the filter cannot be built) but
// serves lookups.
type failingIndex struct{ chunkstore.Index }

var errIndexDown = errors.New("index down")

func (failingIndex) Stats(context.Context) (chunkstore.IndexStats, error) {
	return chunkstore.IndexStats{}, errIndexDown
}
func (failingIndex) Packs(context.Context) ([]string, error) { return nil, errIndexDown }

// TestFilterBuildFailure: when the filter cannot be built, Put falls back
// to asking the index, so deduplication still works.
func TestFilterBuildFailure(t *testing.T) {
	blobs := mem.New()
	mi := chunkstore.NewMemIndex()
	s1 := newStore(t, blobs, mi, chunkstore.Options{})
	d := randomData(7, 4<<10)
	mustPut(t, s1, d)
	mustFlush(t, s1)
	packs := countPacks(t, blobs)
	s2 := newStore(t, blobs, failingIndex{mi}, chunkstore.Options{})
	mustPut(t, s2, d)
	mustFlush(t, s2)
	if n := countPacks(t, blobs); n != packs {
		t.Fatalf("wrote %d packs", n-packs)
	}
	if err := s2.BuildFilter(context.Background()); !errors.Is(err, errIndexDown) {
		t.Fatalf("BuildFilter: %v", err)
	}
	if st := s2.FilterStats(); st.Ready || !errors.Is(st.Err, errIndexDown) {
		t.Fatalf("filter stats %+v", st)
	}
	mustPut(t, s2, d) // still deduplicated through the index
	mustFlush(t, s2)
	if n := countPacks(t, blobs); n != packs {
		t.Fatalf("wrote %d packs", n-packs)
	}
}

// slowListIndex blocks ForEachID until released and counts lookups.
type slowListIndex struct {
	*chunkstore.MemIndex
	release chan struct{}
	lookups *atomic.Int64
}

func (x slowListIndex) Lookup(ctx context.Context, ids []chunk.ID) (map[chunk.ID]chunkstore.Entry, error) {
	x.lookups.Add(1)
	return x.MemIndex.Lookup(ctx, ids)
}

func (x slowListIndex) ForEachID(ctx context.Context, fn func(chunk.ID)) error {
	<-x.release
	return x.MemIndex.ForEachID(ctx, fn)
}

// TestFilterBuildInBackground: Put never waits for the filter to be built
// from a large index; it asks the index meanwhile, and deduplicates.
func TestFilterBuildInBackground(t *testing.T) {
	ctx := context.Background()
	blobs := mem.New()
	mi := chunkstore.NewMemIndex()
	s1 := newStore(t, blobs, mi, chunkstore.Options{})
	old := randomData(1, 4<<10)
	mustPut(t, s1, old)
	mustFlush(t, s1)
	packs := countPacks(t, blobs)

	x := slowListIndex{MemIndex: mi, release: make(chan struct{}), lookups: new(atomic.Int64)}
	s2 := newStore(t, blobs, x, chunkstore.Options{})
	mustPut(t, s2, old) // the build is blocked: the index is asked
	for i := range 5 {
		mustPut(t, s2, randomData(uint64(10+i), 4<<10))
	}
	if n := x.lookups.Load(); n != 6 {
		t.Errorf("%d lookups while the filter is being built, want 6", n)
	}
	if s2.FilterStats().Ready {
		t.Fatal("filter ready while its build is blocked")
	}
	close(x.release)
	if err := s2.BuildFilter(ctx); err != nil { // waits for the running build
		t.Fatal(err)
	}
	if !s2.FilterStats().Ready {
		t.Fatal("filter not ready")
	}
	mustFlush(t, s2)
	if n := countPacks(t, blobs); n != packs+1 {
		t.Fatalf("wrote %d packs, want 1", n-packs)
	}
}
