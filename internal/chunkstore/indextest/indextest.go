// Package indextest is the conformance suite for chunkstore.Index
// implementations (chunkstore.MemIndex, the SQLite and PostgreSQL
// indexes), and RunChunkStore, the chunk store's life over a durable one.
package indextest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"coffer/internal/blobstore/local"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
)

// Run runs the suite; newIndex returns an empty index.
func Run(t *testing.T, newIndex func(t *testing.T) chunkstore.Index) {
	t.Run("AddLookup", func(t *testing.T) { testAddLookup(t, newIndex(t)) })
	t.Run("Conditional", func(t *testing.T) { testConditional(t, newIndex(t)) })
	t.Run("PacksAndStats", func(t *testing.T) { testPacksAndStats(t, newIndex(t)) })
	t.Run("LargeBatch", func(t *testing.T) { testLargeBatch(t, newIndex(t)) })
	t.Run("ForEachID", func(t *testing.T) { testForEachID(t, newIndex(t)) })
}

// testForEachID checks chunkstore.IDLister, for indexes that implement it:
// every indexed ID (live or condemned) exactly once.
func testForEachID(t *testing.T, idx chunkstore.Index) {
	l, ok := idx.(chunkstore.IDLister)
	if !ok {
		t.Skip("index does not implement chunkstore.IDLister")
	}
	ctx := context.Background()
	es := []chunkstore.Entry{entry(1, "packs/a"), entry(2, "packs/a"), entry(3, "packs/b")}
	es[2].DeletedAt = 9
	if err := idx.Add(ctx, es); err != nil {
		t.Fatal(err)
	}
	if err := idx.Delete(ctx, "packs/a", []chunk.ID{id(2)}); err != nil {
		t.Fatal(err)
	}
	var got []chunk.ID
	if err := l.ForEachID(ctx, func(x chunk.ID) { got = append(got, x) }); err != nil {
		t.Fatal(err)
	}
	want := []chunk.ID{id(1), id(3)}
	cmp := func(a, b chunk.ID) int { return slices.Compare(a[:], b[:]) }
	slices.SortFunc(got, cmp)
	slices.SortFunc(want, cmp)
	if !slices.Equal(got, want) {
		t.Errorf("ForEachID = %v, want %v", got, want)
	}
}

func id(n int) chunk.ID { return chunk.Hash([]byte(fmt.Sprint(n))) }

func entry(n int, pack string) chunkstore.Entry {
	return chunkstore.Entry{
		ID: id(n), Pack: pack, Offset: int64(8 + 100*n), Length: uint32(50 + n),
		RawLength: uint32(100 + n), Compression: chunkstore.CompressionZstd,
	}
}

func lookup(t *testing.T, idx chunkstore.Index, ids ...chunk.ID) map[chunk.ID]chunkstore.Entry {
	t.Helper()
	m, err := idx.Lookup(context.Background(), ids)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	return m
}

func testAddLookup(t *testing.T, idx chunkstore.Index) {
	ctx := context.Background()
	if m := lookup(t, idx, id(1)); len(m) != 0 {
		t.Fatalf("empty index Lookup = %v", m)
	}
	if m := lookup(t, idx); len(m) != 0 {
		t.Fatalf("Lookup() = %v", m)
	}
	es := []chunkstore.Entry{entry(1, "packs/a"), entry(2, "packs/a"), entry(3, "packs/b")}
	es[1].Compression = chunkstore.CompressionNone
	es[1].DeletedAt = 12345
	if err := idx.Add(ctx, es); err != nil {
		t.Fatal(err)
	}
	m := lookup(t, idx, id(1), id(2), id(3), id(4))
	if len(m) != 3 {
		t.Fatalf("Lookup found %d, want 3", len(m))
	}
	for _, e := range es {
		if m[e.ID] != e {
			t.Errorf("Lookup(%s) = %+v, want %+v", e.ID.Short(), m[e.ID], e)
		}
	}
	// Add replaces.
	moved := entry(1, "packs/c")
	if err := idx.Add(ctx, []chunkstore.Entry{moved}); err != nil {
		t.Fatal(err)
	}
	if got := lookup(t, idx, id(1))[id(1)]; got != moved {
		t.Errorf("after re-Add: %+v, want %+v", got, moved)
	}
}

func testConditional(t *testing.T, idx chunkstore.Index) {
	ctx := context.Background()
	if err := idx.Add(ctx, []chunkstore.Entry{entry(1, "packs/a"), entry(2, "packs/a"), entry(3, "packs/b")}); err != nil {
		t.Fatal(err)
	}
	// SetDeleted only touches entries in the named pack.
	if err := idx.SetDeleted(ctx, "packs/a", []chunk.ID{id(1), id(3)}, 99); err != nil {
		t.Fatal(err)
	}
	m := lookup(t, idx, id(1), id(2), id(3))
	if m[id(1)].DeletedAt != 99 || m[id(2)].DeletedAt != 0 || m[id(3)].DeletedAt != 0 {
		t.Errorf("SetDeleted: %d %d %d, want 99 0 0", m[id(1)].DeletedAt, m[id(2)].DeletedAt, m[id(3)].DeletedAt)
	}
	if err := idx.SetDeleted(ctx, "packs/a", []chunk.ID{id(1)}, 0); err != nil {
		t.Fatal(err)
	}
	if got := lookup(t, idx, id(1))[id(1)].DeletedAt; got != 0 {
		t.Errorf("revive: DeletedAt = %d", got)
	}
	// Move only relocates entries still in the source pack.
	n1, n3 := entry(1, "packs/n"), entry(3, "packs/n")
	n1.Offset, n3.Offset = 8, 200
	if err := idx.Move(ctx, "packs/a", []chunkstore.Entry{n1, n3}); err != nil {
		t.Fatal(err)
	}
	m = lookup(t, idx, id(1), id(3))
	if m[id(1)] != n1 {
		t.Errorf("Move: %+v, want %+v", m[id(1)], n1)
	}
	if m[id(3)].Pack != "packs/b" {
		t.Errorf("Move relocated an entry of another pack: %+v", m[id(3)])
	}
	// Delete only removes entries in the named pack.
	if err := idx.Delete(ctx, "packs/a", []chunk.ID{id(1), id(2), id(3)}); err != nil {
		t.Fatal(err)
	}
	m = lookup(t, idx, id(1), id(2), id(3))
	if _, ok := m[id(2)]; ok || len(m) != 2 {
		t.Errorf("after Delete: %v, want ids 1 and 3 only", m)
	}
}

func testPacksAndStats(t *testing.T, idx chunkstore.Index) {
	ctx := context.Background()
	es := []chunkstore.Entry{entry(3, "packs/b"), entry(1, "packs/a"), entry(2, "packs/a"), entry(4, "packs/b")}
	es[3].DeletedAt = 7
	if err := idx.Add(ctx, es); err != nil {
		t.Fatal(err)
	}
	packs, err := idx.Packs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(packs, []string{"packs/a", "packs/b"}) {
		t.Errorf("Packs = %v", packs)
	}
	pe, err := idx.PackEntries(ctx, "packs/b")
	if err != nil {
		t.Fatal(err)
	}
	if len(pe) != 2 || pe[0] != es[0] || pe[1] != es[3] {
		t.Errorf("PackEntries(b) = %+v", pe)
	}
	st, err := idx.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := chunkstore.IndexStats{Chunks: 4, Packs: 2, StoredBytes: 50*4 + 1 + 2 + 3 + 4, RawBytes: 100*4 + 10, Deleted: 1}
	if st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	// A pack whose entries all moved away is no longer listed.
	if err := idx.Delete(ctx, "packs/a", []chunk.ID{id(1), id(2)}); err != nil {
		t.Fatal(err)
	}
	if packs, _ := idx.Packs(ctx); !slices.Equal(packs, []string{"packs/b"}) {
		t.Errorf("after Delete Packs = %v", packs)
	}
	if err := idx.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := idx.Stats(ctx); st != (chunkstore.IndexStats{}) {
		t.Errorf("after Clear Stats = %+v", st)
	}
}

func testLargeBatch(t *testing.T, idx chunkstore.Index) {
	ctx := context.Background()
	const n = 2500
	var es []chunkstore.Entry
	var ids []chunk.ID
	for i := range n {
		es = append(es, entry(i, fmt.Sprintf("packs/p%d", i%7)))
		ids = append(ids, id(i), id(i+n)) // half are absent
	}
	if err := idx.Add(ctx, es); err != nil {
		t.Fatal(err)
	}
	if m := lookup(t, idx, ids...); len(m) != n {
		t.Fatalf("Lookup of %d ids found %d, want %d", len(ids), len(m), n)
	}
	// Lookups of every size across an index's batching (an IN list per
	// batch, lists padded to a prepared size) find exactly what is there.
	for _, size := range []int{1, 2, 3, 5, 63, 64, 65, 511, 512, 513, 1023, 1025} {
		got := lookup(t, idx, ids[:size]...)
		if want := (size + 1) / 2; len(got) != want {
			t.Fatalf("Lookup of %d ids found %d, want %d", size, len(got), want)
		}
		for _, id := range ids[:size] {
			if e, ok := got[id]; ok && e.ID != id {
				t.Fatalf("Lookup of %d ids: entry %s under %s", size, e.ID.Short(), id.Short())
			}
		}
	}
	if err := idx.SetDeleted(ctx, "packs/p0", ids, 5); err != nil {
		t.Fatal(err)
	}
	st, _ := idx.Stats(ctx)
	if want := int64((n + 6) / 7); st.Deleted != want {
		t.Errorf("Deleted = %d, want %d", st.Deleted, want)
	}
}

// RunChunkStore runs the chunk store over a local directory and the index
// that openIndex opens (on the same durable data each time), reopening
// both between steps: Put and Flush, Get and Verify after a reopen,
// RebuildIndex from the packs after Clear, and two GC cycles.
func RunChunkStore(t *testing.T, openIndex func(t *testing.T) chunkstore.Index) {
	ctx := context.Background()
	dir := t.TempDir()
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	open := func() *chunkstore.Store {
		blobs, err := local.Open(filepath.Join(dir, "blobs"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := chunkstore.New(blobs, openIndex(t), chunkstore.Options{Clock: clk, PackSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	datas := map[chunk.ID][]byte{}
	s := open()
	for i := range 40 {
		d := bytes.Repeat([]byte(fmt.Sprintf("chunk %d ", i)), 1000+i)
		if i%2 == 1 {
			d = make([]byte, 8<<10)
			rand.Read(d)
		}
		id, err := s.Put(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		datas[id] = d
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(s *chunkstore.Store) {
		t.Helper()
		for id, d := range datas {
			got, err := s.Get(ctx, id)
			if err != nil || !bytes.Equal(got, d) {
				t.Fatalf("Get(%s): %v", id.Short(), err)
			}
		}
		rep, err := s.Verify(ctx, chunkstore.VerifyOptions{})
		if err != nil || !rep.OK() {
			t.Fatalf("Verify: %v %v", err, rep.Problems)
		}
	}
	// Flush durability: a new Store over a reopened database.
	s = open()
	check(s)
	st, err := s.Stats(ctx)
	if err != nil || st.Chunks != int64(len(datas)) || st.Packs < 2 {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	// RebuildIndex from the packs alone.
	if err := openIndex(t).Clear(ctx); err != nil {
		t.Fatal(err)
	}
	s = open()
	if err := s.RebuildIndex(ctx); err != nil {
		t.Fatal(err)
	}
	check(s)
	// GC: drop half of the chunks over two cycles.
	live := map[chunk.ID]bool{}
	n := 0
	for id := range datas {
		if n%2 == 0 {
			live[id] = true
		} else {
			delete(datas, id)
		}
		n++
	}
	mark := func(ctx context.Context, mark func(chunk.ID)) error {
		for id := range live {
			mark(id)
		}
		return nil
	}
	for range 2 {
		clk.Advance(10 * time.Hour)
		// A tiny rewrite threshold rewrites every pack with a dead chunk, so
		// the outcome does not depend on how map order spread the chunks.
		if _, err := s.GC(ctx, mark, chunkstore.GCOptions{RewriteThreshold: 1e-9}); err != nil {
			t.Fatal(err)
		}
	}
	s = open()
	check(s)
	if st, _ := s.Stats(ctx); st.Chunks != int64(len(live)) {
		t.Errorf("after GC %d chunks, want %d", st.Chunks, len(live))
	}
}
