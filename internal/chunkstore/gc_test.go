package chunkstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"coffer/internal/blobstore/mem"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
)

const margin = time.Hour

// liveSet is what the tests' "manifests" reference.
type liveSet struct {
	mu  sync.Mutex
	ids map[chunk.ID]bool
}

func newLiveSet() *liveSet { return &liveSet{ids: map[chunk.ID]bool{}} }

func (l *liveSet) add(id chunk.ID) {
	l.mu.Lock()
	l.ids[id] = true
	l.mu.Unlock()
}

func (l *liveSet) remove(id chunk.ID) {
	l.mu.Lock()
	delete(l.ids, id)
	l.mu.Unlock()
}

func (l *liveSet) list() []chunk.ID {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []chunk.ID
	for id := range l.ids {
		out = append(out, id)
	}
	return out
}

func (l *liveSet) mark(ctx context.Context, mark func(chunk.ID)) error {
	for _, id := range l.list() {
		mark(id)
	}
	return nil
}

func gc(t testing.TB, s *chunkstore.Store, live *liveSet) chunkstore.GCReport {
	t.Helper()
	rep, err := s.GC(context.Background(), live.mark, chunkstore.GCOptions{SafetyMargin: margin, RewriteThreshold: 0.1})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("GC problems: %v", rep.Problems)
	}
	return rep
}

func TestGCTwoCycles(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(epoch)
	blobs := mem.New()
	s := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{Clock: clk, PackSize: 40 << 10})
	live := newLiveSet()
	datas := map[chunk.ID][]byte{}
	var dead []chunk.ID
	for i := range 30 {
		d := randomData(uint64(i), 8<<10)
		id := mustPut(t, s, d)
		datas[id] = d
		// Chunks 0-9 all dead (whole packs), then every third one dead.
		if i < 10 || i%3 == 0 {
			dead = append(dead, id)
		} else {
			live.add(id)
		}
	}
	mustFlush(t, s)
	packsBefore := countPacks(t, blobs)

	// Right after writing, everything is younger than the margin.
	if rep := gc(t, s, live); rep.Condemned != 0 || rep.BytesReclaimed != 0 {
		t.Fatalf("GC of young packs: %+v", rep)
	}
	clk.Advance(2 * margin)
	rep := gc(t, s, live)
	if rep.Condemned != len(dead) || rep.PacksDeleted != 0 {
		t.Fatalf("first cycle: %+v, want %d condemned and nothing deleted", rep, len(dead))
	}
	// Condemned chunks are still readable but no longer deduplicate.
	checkGet(t, s, dead[0], datas[dead[0]])
	has, _ := s.Has(ctx, dead[:1])
	if has[0] {
		t.Errorf("Has(condemned) = true")
	}
	if rep := gc(t, s, live); rep.DeletedChunks != 0 {
		t.Fatalf("second run within the margin deleted: %+v", rep)
	}
	clk.Advance(2 * margin)
	rep = gc(t, s, live)
	if rep.DeletedChunks != len(dead) || rep.PacksDeleted == 0 || rep.PacksRewritten == 0 || rep.BytesReclaimed <= 0 {
		t.Fatalf("second cycle: %+v, want %d chunks deleted with packs deleted and rewritten", rep, len(dead))
	}
	for _, id := range dead {
		if _, err := s.Get(ctx, id); !errors.Is(err, chunkstore.ErrNotFound) {
			t.Errorf("Get(dead %s) = %v, want ErrNotFound", id.Short(), err)
		}
	}
	for _, id := range live.list() {
		checkGet(t, s, id, datas[id])
	}
	st := stats(t, s)
	if st.Chunks != int64(len(live.list())) {
		t.Errorf("Stats.Chunks = %d, want %d", st.Chunks, len(live.list()))
	}
	if n := countPacks(t, blobs); n >= packsBefore {
		t.Errorf("%d packs after GC, %d before", n, packsBefore)
	}
	mustVerify(t, s)
}

func TestGCReviveAndRestore(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(epoch)
	s := newStore(t, mem.New(), chunkstore.NewMemIndex(), chunkstore.Options{Clock: clk})
	live := newLiveSet()
	a, b := randomData(1, 4096), randomData(2, 4096)
	ida, idb := mustPut(t, s, a), mustPut(t, s, b)
	mustFlush(t, s)
	clk.Advance(2 * margin)
	if rep := gc(t, s, live); rep.Condemned != 2 {
		t.Fatalf("condemned %d, want 2", rep.Condemned)
	}
	// a is referenced again by a new manifest that was written before the
	// next run: it is revived.
	live.add(ida)
	// b is stored again by a backup: a fresh copy is written.
	mustPut(t, s, b)
	mustFlush(t, s)
	live.add(idb)
	clk.Advance(2 * margin)
	rep := gc(t, s, live)
	if rep.Revived != 1 {
		t.Errorf("revived %d, want 1", rep.Revived)
	}
	clk.Advance(2 * margin)
	gc(t, s, live)
	checkGet(t, s, ida, a)
	checkGet(t, s, idb, b)
	has, err := s.Has(ctx, []chunk.ID{ida, idb})
	if err != nil || !has[0] || !has[1] {
		t.Errorf("Has = %v, %v", has, err)
	}
	mustVerify(t, s)
}

func TestGCOrphanPacks(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(epoch)
	blobs := mem.New()
	idx := chunkstore.NewMemIndex()
	s := newStore(t, blobs, idx, chunkstore.Options{Clock: clk})
	id := mustPut(t, s, randomData(1, 1000))
	mustFlush(t, s)
	e := lookupEntry(t, idx, id)
	if err := idx.Delete(ctx, e.Pack, []chunk.ID{id}); err != nil { // as if indexing had failed
		t.Fatal(err)
	}
	live := newLiveSet()
	if rep := gc(t, s, live); rep.OrphansDeleted != 0 {
		t.Fatalf("young orphan deleted: %+v", rep)
	}
	rep, err := s.Verify(ctx, chunkstore.VerifyOptions{})
	if err != nil || !rep.OK() || len(rep.Unindexed) != 1 {
		t.Fatalf("Verify: %+v %v, want one unindexed pack", rep, err)
	}
	clk.Advance(2 * margin)
	if rep := gc(t, s, live); rep.OrphansDeleted != 1 {
		t.Fatalf("orphan not deleted: %+v", rep)
	}
	if n := countPacks(t, blobs); n != 0 {
		t.Errorf("%d packs left", n)
	}
}

func TestGCDryRun(t *testing.T) {
	clk := clock.NewFake(epoch)
	blobs := mem.New()
	s := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{Clock: clk})
	id := mustPut(t, s, randomData(1, 1000))
	mustFlush(t, s)
	live := newLiveSet()
	clk.Advance(2 * margin)
	gc(t, s, live)
	clk.Advance(2 * margin)
	rep, err := s.GC(context.Background(), live.mark, chunkstore.GCOptions{SafetyMargin: margin, DryRun: true})
	if err != nil || rep.PacksDeleted != 1 || rep.BytesReclaimed <= 0 {
		t.Fatalf("dry run: %+v %v", rep, err)
	}
	checkGet(t, s, id, randomData(1, 1000))
}

// TestGCConcurrentWriters runs GC cycles while writers Put chunks (new ones
// and ones that were garbage), flush, and commit references — the way
// backups run during maintenance. A writer's Put-to-commit never spans a
// clock advance, which models "backups commit within the safety margin".
// Every referenced chunk must survive.
func TestGCConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(epoch)
	s := newStore(t, mem.New(), chunkstore.NewMemIndex(), chunkstore.Options{Clock: clk, PackSize: 32 << 10})
	live := newLiveSet()
	const (
		writers = 4
		pool    = 100
		size    = 2 << 10
	)
	rounds := 60
	gcRuns := 12
	if testing.Short() {
		rounds, gcRuns = 30, 8
	}
	content := func(i int) []byte { return randomData(uint64(i), size) }
	var (
		inflight sync.RWMutex // writers hold it shared from Put to commit
		wg       sync.WaitGroup
		stop     = make(chan struct{})
		errc     = make(chan error, 1000)
	)
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 99))
			for n := 0; n < rounds; n++ {
				select {
				case <-stop:
					return
				default:
				}
				inflight.RLock()
				var ids []chunk.ID
				for range 4 {
					id, err := s.Put(ctx, content(r.IntN(pool)))
					if err != nil {
						inflight.RUnlock()
						errc <- err
						return
					}
					ids = append(ids, id)
				}
				if err := s.Flush(ctx); err != nil {
					inflight.RUnlock()
					errc <- err
					return
				}
				for _, id := range ids {
					live.add(id) // the "manifest" commits
				}
				inflight.RUnlock()
				// Some snapshots expire: their chunks become garbage.
				for range 4 {
					if ids := live.list(); len(ids) > 0 {
						live.remove(ids[r.IntN(len(ids))])
					}
				}
			}
		})
	}
	var writersWG sync.WaitGroup
	writersWG.Add(1)
	go func() { // stop the collector once the writers are done
		defer writersWG.Done()
		wg.Wait()
		close(stop)
	}()
	var gcWG sync.WaitGroup
	var runs, deleted, after int
	gcWG.Go(func() {
		for {
			select {
			case <-stop:
				// Deleting takes two runs past the margin; the writers can
				// finish first, even all between two runs (they did in 1
				// of 200-500 runs here), so the collector goes on after
				// them until the garbage they left (expired "snapshots")
				// is deleted, or for 12 runs.
				if runs >= 3 && deleted > 0 || after >= 12 {
					return
				}
				after++
			default:
			}
			inflight.Lock()
			clk.Advance(margin / 2)
			inflight.Unlock()
			slowMark := func(ctx context.Context, mark func(chunk.ID)) error {
				for _, id := range live.list() {
					runtime.Gosched() // widen the window for writers
					mark(id)
				}
				return nil
			}
			rep, err := s.GC(ctx, slowMark, chunkstore.GCOptions{SafetyMargin: margin, RewriteThreshold: 0.1})
			if err != nil {
				errc <- err
				return
			}
			runs++
			deleted += rep.DeletedChunks
			// With no writer in flight, every committed reference must
			// resolve (checked now, before a later Put could heal a loss).
			inflight.Lock()
			for _, id := range live.list() {
				if _, err := s.Get(ctx, id); err != nil {
					errc <- fmt.Errorf("after GC run %d: referenced chunk lost: %w", runs, err)
				}
			}
			inflight.Unlock()
			if runs >= gcRuns && testing.Short() {
				<-stop
				return
			}
		}
	})
	writersWG.Wait()
	gcWG.Wait()
	t.Logf("%d GC runs deleted %d chunks while writers ran", runs, deleted)
	if deleted == 0 {
		t.Errorf("no chunk was deleted; the test exercises nothing")
	}
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	// Let GC finish all it can, then check every referenced chunk.
	for range 3 {
		clk.Advance(2 * margin)
		gc(t, s, live)
	}
	for _, id := range live.list() {
		if _, err := s.Get(ctx, id); err != nil {
			t.Errorf("referenced chunk lost: %v", err)
		}
	}
	st := stats(t, s)
	if st.Chunks != int64(len(live.list())) {
		t.Errorf("after final GC: %d chunks indexed, %d referenced", st.Chunks, len(live.list()))
	}
	mustVerify(t, s)
}

// TestGCPutDuringSweep stores again, while a GC run is marking, a chunk that
// the run is about to delete (condemned more than the margin ago, and not
// reachable from what the run marks). The new reference must survive.
func TestGCPutDuringSweep(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(epoch)
	s := newStore(t, mem.New(), chunkstore.NewMemIndex(), chunkstore.Options{Clock: clk})
	live := newLiveSet()
	x := randomData(1, 4096)
	idx := mustPut(t, s, x)
	keep := mustPut(t, s, randomData(2, 4096))
	live.add(keep)
	mustFlush(t, s)
	clk.Advance(2 * margin)
	gc(t, s, live) // condemns x
	clk.Advance(2 * margin)
	racingMark := func(ctx context.Context, mark func(chunk.ID)) error {
		if err := live.mark(ctx, mark); err != nil {
			return err
		}
		// A backup writes x now; its manifest commits after the mark.
		if _, err := s.Put(ctx, x); err != nil {
			return err
		}
		if err := s.Flush(ctx); err != nil {
			return err
		}
		live.add(idx)
		return nil
	}
	if _, err := s.GC(ctx, racingMark, chunkstore.GCOptions{SafetyMargin: margin}); err != nil {
		t.Fatal(err)
	}
	checkGet(t, s, idx, x)
	checkGet(t, s, keep, randomData(2, 4096))
	mustVerify(t, s)
}
