package chunkstore_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/mem"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
	"coffer/internal/store/sqlite"
)

// addLog is a chunk index that records every Add it passes on.
type addLog struct {
	chunkstore.Index
	mu    sync.Mutex
	adds  [][]chunk.ID
	added chan struct{} // when not nil, gets a value per Add
}

func (l *addLog) Add(ctx context.Context, entries []chunkstore.Entry) error {
	ids := make([]chunk.ID, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	l.mu.Lock()
	l.adds = append(l.adds, ids)
	l.mu.Unlock()
	err := l.Index.Add(ctx, entries)
	if l.added != nil {
		l.added <- struct{}{}
	}
	return err
}

func (l *addLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.adds)
}

// putPacks puts n chunks of random data of size bytes, filling several
// small packs, and returns them.
func putPacks(t *testing.T, s *chunkstore.Store, seed uint64, n, size int) (ids []chunk.ID, data [][]byte) {
	t.Helper()
	for i := range n {
		d := randomData(seed+uint64(i), size)
		ids = append(ids, mustPut(t, s, d))
		data = append(data, d)
	}
	return ids, data
}

// TestIndexAddsGathered: the entries of the packs a writer fills reach
// the index in one Add per Flush, sorted by ID, instead of one Add per
// pack (a 4 GiB snapshot made 40 Adds, each rewriting most of SQLite's
// index B-tree); until then every chunk is pending, readable from its
// written pack and deduplicated.
func TestIndexAddsGathered(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(epoch)
	db, err := sqlite.Open(ctx, t.TempDir()+"/index.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	idx := &addLog{Index: db.ChunkIndex()}
	blobs := mem.New()
	s := newStore(t, blobs, idx, chunkstore.Options{Clock: clk, PackSize: 64 << 10})
	ids, data := putPacks(t, s, 100, 40, 20<<10) // three chunks a pack
	s.WaitWritten()

	packs := countPacks(t, blobs)
	if packs < 5 {
		t.Fatalf("%d packs written before Flush, want at least 5", packs)
	}
	if n := idx.count(); n != 0 {
		t.Fatalf("%d index Adds before Flush, want 0 (they wait for Flush)", n)
	}
	// Written, not indexed: still pending, so readable and not stored twice.
	for i, id := range ids {
		checkGet(t, s, id, data[i])
	}
	got := map[chunk.ID][]byte{}
	if err := s.GetMany(ctx, ids, func(i int, d []byte) error { got[ids[i]] = bytes.Clone(d); return nil }); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if !bytes.Equal(got[id], data[i]) {
			t.Fatalf("GetMany: chunk %d differs", i)
		}
	}
	has, err := s.Has(ctx, ids)
	if err != nil || slices.Contains(has, false) {
		t.Fatalf("Has = %v, %v; want all true", has, err)
	}
	mustPut(t, s, data[0])
	if rep := mustVerify(t, s); len(rep.Unindexed) != 0 {
		t.Fatalf("Verify lists the packs waiting for their entries as unindexed: %v", rep.Unindexed)
	}
	if st := stats(t, s); st.PendingChunks != int64(len(ids)) || st.Chunks != 0 {
		t.Fatalf("stats before Flush: %+v, want %d pending and none indexed", st, len(ids))
	}

	mustFlush(t, s)
	if n := idx.count(); n != 1 {
		t.Fatalf("%d index Adds for %d packs, want 1", n, countPacks(t, blobs))
	}
	if a := idx.adds[0]; len(a) != len(ids) || !slices.IsSortedFunc(a, func(x, y chunk.ID) int { return bytes.Compare(x[:], y[:]) }) {
		t.Fatalf("the Add has %d IDs (want %d), sorted %v", len(a), len(ids), slices.IsSortedFunc(a, func(x, y chunk.ID) int { return bytes.Compare(x[:], y[:]) }))
	}
	if st := stats(t, s); st.PendingChunks != 0 || st.Chunks != int64(len(ids)) {
		t.Fatalf("stats after Flush: %+v", st)
	}
	if c, n := s.Counters(), countPacks(t, blobs); c.Chunks != uint64(len(ids)) || c.Packs != uint64(n) {
		t.Fatalf("counters %+v, want %d chunks in %d packs", c, len(ids), n)
	}
	for i, id := range ids {
		checkGet(t, s, id, data[i])
	}
	mustVerify(t, s)
}

// TestIndexAddsBounded: a writer that never flushes still indexes its
// written packs once a minute has passed since the oldest was written.
func TestIndexAddsBounded(t *testing.T) {
	clk := clock.NewFake(epoch)
	idx := &addLog{Index: chunkstore.NewMemIndex(), added: make(chan struct{}, 10)}
	s := newStore(t, mem.New(), idx, chunkstore.Options{Clock: clk, PackSize: 64 << 10})
	putPacks(t, s, 200, 12, 20<<10)
	s.WaitWritten()
	if n := idx.count(); n != 0 {
		t.Fatalf("%d Adds, want 0", n)
	}
	clk.Advance(2 * time.Minute)
	putPacks(t, s, 300, 12, 20<<10) // writes more packs: the first is overdue
	select {
	case <-idx.added: // by the goroutine that wrote the next pack
	case <-time.After(time.Minute):
		t.Fatal("no index Add after the oldest written pack waited 2 minutes")
	}
	if st := stats(t, s); st.Chunks == 0 {
		t.Fatalf("nothing indexed: %+v", st)
	}
	mustFlush(t, s)
	mustVerify(t, s)
}

// TestGCSparesWaitingPacks: a garbage collection running while written
// packs wait for their index entries, however old, does not take them for
// orphans; and a waiting pack that vanished anyway (deleted by another
// node's GC after hours without a Flush) makes Flush fail instead of
// indexing chunks that are gone.
func TestGCSparesWaitingPacks(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(epoch)
	blobs := mem.New()
	s := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{Clock: clk, PackSize: 64 << 10})
	ids, data := putPacks(t, s, 400, 9, 20<<10)
	s.WaitWritten()
	// The written packs get older than the safety margin with no Put or
	// Flush to index them.
	clk.Advance(2 * margin)
	live := newLiveSet()
	for _, id := range ids {
		live.add(id)
	}
	if rep := gc(t, s, live); rep.OrphansDeleted != 0 {
		t.Fatalf("GC deleted %d packs waiting to be indexed", rep.OrphansDeleted)
	}
	mustFlush(t, s)
	for i, id := range ids {
		checkGet(t, s, id, data[i])
	}

	before := packNames(t, blobs)
	ids2, _ := putPacks(t, s, 500, 9, 20<<10)
	s.WaitWritten()
	var fresh []string
	for _, name := range packNames(t, blobs) {
		if !slices.Contains(before, name) {
			fresh = append(fresh, name)
		}
	}
	if len(fresh) < 2 {
		t.Fatalf("%d packs written, want several", len(fresh))
	}
	if err := blobs.Delete(ctx, fresh[0]); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	if err := s.Flush(ctx); !errors.Is(err, chunkstore.ErrCorrupt) {
		t.Fatalf("Flush after a waiting pack vanished: %v, want ErrCorrupt", err)
	}
	// Its chunks are neither pending nor indexed: a writer stores them
	// again. The other packs' chunks are committed.
	has, err := s.Has(ctx, ids2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(has, false) || !slices.Contains(has, true) {
		t.Fatalf("Has = %v, want the lost pack's chunks absent and the others present", has)
	}
	mustFlush(t, s)
	mustVerify(t, s)
}

func packNames(t *testing.T, b blobstore.Store) []string {
	t.Helper()
	var names []string
	if err := b.List(context.Background(), "packs/", func(in blobstore.Info) error { names = append(names, in.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	return names
}
