package chunkstore_test

import (
	"context"
	"fmt"
	"testing"

	"coffer/internal/blobstore/faulty"
	"coffer/internal/blobstore/mem"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
)

// faultKinds are the ways a pack write fails in the crash tests.
var faultKinds = []struct {
	name  string
	fault faulty.Fault
}{
	{"fail", faulty.Fault{Op: faulty.OpPut, Sticky: true}},
	{"torn", faulty.Fault{Op: faulty.OpPut, Sticky: true, Truncate: true}},
	{"nospace", faulty.Fault{Op: faulty.OpPut, Sticky: true, Err: faulty.ErrNoSpace()}},
}

// writeRounds puts rounds of chunks, flushing after each, until an error.
// It returns the chunks of the rounds whose Flush succeeded.
func writeRounds(s *chunkstore.Store) (committed map[chunk.ID][]byte, err error) {
	ctx := context.Background()
	committed = map[chunk.ID][]byte{}
	for round := range 3 {
		batch := map[chunk.ID][]byte{}
		for i := range 12 {
			d := randomData(uint64(round*100+i), 6<<10)
			id, err := s.Put(ctx, d)
			if err != nil {
				return committed, err
			}
			batch[id] = d
		}
		if err := s.Flush(ctx); err != nil {
			return committed, err
		}
		for id, d := range batch {
			committed[id] = d
		}
	}
	return committed, nil
}

// TestCrashDuringFlush fails pack write k (and everything after it, as a
// crash would) for every k, then reopens the store: Verify must pass and
// every chunk committed before the failure must read back.
func TestCrashDuringFlush(t *testing.T) {
	opts := chunkstore.Options{PackSize: 20 << 10}
	// Count the pack writes of an undisturbed run.
	ref := faulty.New(mem.New())
	if _, err := writeRounds(newStore(t, ref, chunkstore.NewMemIndex(), opts)); err != nil {
		t.Fatal(err)
	}
	total := ref.Count(faulty.OpPut)
	if total < 6 {
		t.Fatalf("only %d pack writes; the test needs automatic sealing", total)
	}
	for _, kind := range faultKinds {
		for k := 1; k <= total; k++ {
			t.Run(fmt.Sprintf("%s/%d", kind.name, k), func(t *testing.T) {
				blobs := faulty.New(mem.New())
				idx := chunkstore.NewMemIndex()
				f := kind.fault
				f.Nth = k
				blobs.Inject(f)
				committed, err := writeRounds(newStore(t, blobs, idx, opts))
				if err == nil {
					t.Fatalf("no error with pack write %d failing", k)
				}
				// "Restart": the backend works again, the memory is gone.
				blobs.Reset()
				s := newStore(t, blobs, idx, opts)
				mustVerify(t, s)
				for id, d := range committed {
					checkGet(t, s, id, d)
				}
				// Writing everything again completes the store.
				all, err := writeRounds(s)
				if err != nil {
					t.Fatal(err)
				}
				for id, d := range all {
					checkGet(t, s, id, d)
				}
				mustVerify(t, s)
			})
		}
	}
}

// TestTransientWriteFailure: a failed pack write is retried by the next
// Flush (under a new name) without losing chunks.
func TestTransientWriteFailure(t *testing.T) {
	ctx := context.Background()
	blobs := faulty.New(mem.New())
	s := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{PackSize: 20 << 10})
	blobs.Inject(faulty.Fault{Op: faulty.OpPut, Nth: 2})
	blobs.Inject(faulty.Fault{Op: faulty.OpPut, Nth: 3, Truncate: true})
	datas := map[chunk.ID][]byte{}
	failures := 0
	for i := range 40 {
		d := randomData(uint64(i), 6<<10)
		id, err := s.Put(ctx, d)
		if err != nil {
			failures++ // the chunk stays pending
		}
		datas[id] = d
	}
	for s.Flush(ctx) != nil {
		failures++
		if failures > 10 {
			t.Fatal("Flush keeps failing")
		}
	}
	if blobs.Failures(faulty.OpPut) != 2 {
		t.Errorf("%d injected failures, want 2", blobs.Failures(faulty.OpPut))
	}
	for id, d := range datas {
		checkGet(t, s, id, d)
	}
	s2 := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{})
	if err := s2.RebuildIndex(ctx); err == nil {
		t.Log("rebuild skipped no pack")
	}
	for id, d := range datas {
		checkGet(t, s2, id, d) // the torn pack is skipped, its chunks were rewritten
	}
}

// TestSilentTruncationDetected: a backend that loses the end of a pack
// without an error is caught by Verify.
func TestSilentTruncationDetected(t *testing.T) {
	ctx := context.Background()
	blobs := faulty.New(mem.New())
	s := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{})
	blobs.Inject(faulty.Fault{Op: faulty.OpPut, Nth: 1, Truncate: true, Silent: true})
	var ids []chunk.ID
	for i := range 4 {
		ids = append(ids, mustPut(t, s, randomData(uint64(i), 4096)))
	}
	mustFlush(t, s)
	rep, err := s.Verify(ctx, chunkstore.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.CorruptPacks) != 1 || len(rep.CorruptChunks) < 2 {
		t.Errorf("Verify after silent truncation: packs %v chunks %d", rep.CorruptPacks, len(rep.CorruptChunks))
	}
}

// setupGC writes packs with a mix of live and dead chunks and runs the
// condemning cycle, so the next GC deletes and rewrites.
func setupGC(t *testing.T, blobs *faulty.Store, idx chunkstore.Index, clk *clock.Fake) (*chunkstore.Store, *liveSet, map[chunk.ID][]byte) {
	s := newStore(t, blobs, idx, chunkstore.Options{Clock: clk, PackSize: 24 << 10})
	live := newLiveSet()
	datas := map[chunk.ID][]byte{}
	for i := range 24 {
		d := randomData(uint64(i), 6<<10)
		id := mustPut(t, s, d)
		if i >= 8 && i%3 != 0 {
			live.add(id)
			datas[id] = d
		}
	}
	mustFlush(t, s)
	clk.Advance(2 * margin)
	gc(t, s, live)
	clk.Advance(2 * margin)
	return s, live, datas
}

// TestCrashDuringGC fails the k-th blob write or delete of a collecting GC
// run, for every k, then checks the store and finishes the collection.
func TestCrashDuringGC(t *testing.T) {
	ctx := context.Background()
	counts := map[faulty.Op]int{}
	{
		blobs := faulty.New(mem.New())
		clk := clock.NewFake(epoch)
		s, live, _ := setupGC(t, blobs, chunkstore.NewMemIndex(), clk)
		puts, dels := blobs.Count(faulty.OpPut), blobs.Count(faulty.OpDelete)
		rep := gc(t, s, live)
		if rep.PacksRewritten == 0 || rep.PacksDeleted == 0 {
			t.Fatalf("reference GC did not rewrite and delete: %+v", rep)
		}
		counts[faulty.OpPut] = blobs.Count(faulty.OpPut) - puts
		counts[faulty.OpDelete] = blobs.Count(faulty.OpDelete) - dels
	}
	for _, op := range []faulty.Op{faulty.OpPut, faulty.OpDelete} {
		for k := 1; k <= counts[op]; k++ {
			t.Run(fmt.Sprintf("%v/%d", op, k), func(t *testing.T) {
				blobs := faulty.New(mem.New())
				idx := chunkstore.NewMemIndex()
				clk := clock.NewFake(epoch)
				s, live, datas := setupGC(t, blobs, idx, clk)
				blobs.Inject(faulty.Fault{Op: op, Nth: k, Sticky: true, Truncate: op == faulty.OpPut})
				if _, err := s.GC(ctx, live.mark, chunkstore.GCOptions{SafetyMargin: margin, RewriteThreshold: 0.1}); err == nil {
					t.Fatalf("GC succeeded with %v %d failing", op, k)
				}
				blobs.Reset()
				s = newStore(t, blobs, idx, chunkstore.Options{Clock: clk})
				mustVerify(t, s)
				for id, d := range datas {
					checkGet(t, s, id, d)
				}
				clk.Advance(2 * margin)
				gc(t, s, live)
				for id, d := range datas {
					checkGet(t, s, id, d)
				}
				mustVerify(t, s)
				if st := stats(t, s); st.Chunks != int64(len(datas)) {
					t.Errorf("after recovery GC: %d chunks indexed, %d live", st.Chunks, len(datas))
				}
			})
		}
	}
}
