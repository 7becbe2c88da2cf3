package chunkstore_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/faulty"
	"coffer/internal/blobstore/mem"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
)

// gatedBlobs holds every pack Put until the gate opens, and reports each
// pack Put that starts.
type gatedBlobs struct {
	blobstore.Store
	started chan string
	gate    chan struct{}
}

func (g *gatedBlobs) Put(ctx context.Context, name string, data []byte) error {
	if strings.HasPrefix(name, "packs/") {
		g.started <- name
		<-g.gate
	}
	return g.Store.Put(ctx, name, data)
}

// TestBackgroundPackWrite: sealed packs are written in the background, so
// Put goes on (and chunks stay readable) while up to MaxUnwritten pack
// writes are in flight; past the bound Put waits; Flush waits for them.
func TestBackgroundPackWrite(t *testing.T) {
	ctx := context.Background()
	g := &gatedBlobs{Store: mem.New(), started: make(chan string, 16), gate: make(chan struct{})}
	s := newStore(t, g, chunkstore.NewMemIndex(), chunkstore.Options{PackSize: 16 << 10, MaxUnwritten: 2})
	datas := map[chunk.ID][]byte{}
	put := func(i int) {
		d := randomData(uint64(i), 6<<10)
		datas[mustPut(t, s, d)] = d
	}
	// Three 6 KiB chunks fill a 16 KiB pack, which is sealed and handed to
	// a writer that blocks; Put returns anyway. (Were Put to write the pack
	// itself, this test would hang.)
	// Each pack's writer must be seen blocked before the next pack fills:
	// polling len(g.started) instead let a third pack pass the bound of two
	// while the writers had not yet been scheduled, and Put then waited
	// behind the closed gate for ever.
	i := 0
	for range 2 { // the second pack makes two writes in flight
		for range 3 {
			put(i)
			i++
		}
		select {
		case <-g.started:
		case <-time.After(30 * time.Second):
			t.Fatal("a full pack was not handed to a writer")
		}
	}
	for id, d := range datas {
		checkGet(t, s, id, d) // readable from the packs being written
	}
	if st := stats(t, s); st.PendingChunks != int64(len(datas)) {
		t.Fatalf("pending %d, want %d", st.PendingChunks, len(datas))
	}
	// Past the bound a Put waits until a write ends.
	done := make(chan error, 1)
	more := map[chunk.ID][]byte{}
	go func() {
		for j := range 12 {
			d := randomData(uint64(1000+j), 6<<10)
			id, err := s.Put(ctx, d)
			if err != nil {
				done <- err
				return
			}
			more[id] = d
		}
		done <- s.Flush(ctx)
	}()
	go func() {
		for range g.started {
		}
	}()
	close(g.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(g.started)
	mustFlush(t, s)
	for id, d := range more {
		datas[id] = d
	}
	if st := stats(t, s); st.PendingChunks != 0 || st.Chunks != int64(len(datas)) {
		t.Fatalf("after Flush: %+v, want %d chunks committed", st, len(datas))
	}
	for id, d := range datas {
		checkGet(t, s, id, d)
	}
	mustVerify(t, s)
}

// TestBackgroundWriteErrorSurfaces: a failing background pack write is
// reported by a later Put (at the latest when MaxUnwritten is reached) and
// by Flush; once the backend works again, Flush commits every chunk,
// including those whose Put returned the error.
func TestBackgroundWriteErrorSurfaces(t *testing.T) {
	ctx := context.Background()
	for _, kind := range faultKinds {
		t.Run(kind.name, func(t *testing.T) {
			blobs := faulty.New(mem.New())
			idx := chunkstore.NewMemIndex()
			f := kind.fault
			f.Nth = 1
			blobs.Inject(f)
			opts := chunkstore.Options{PackSize: 16 << 10, MaxUnwritten: 2}
			s := newStore(t, blobs, idx, opts)
			datas := map[chunk.ID][]byte{}
			var putErr error
			// 3 chunks per pack: the error must surface before the store
			// holds more than MaxUnwritten+1 packs' worth.
			for i := 0; i < 3*(opts.MaxUnwritten+2) && putErr == nil; i++ {
				d := randomData(uint64(i), 6<<10)
				var id chunk.ID
				id, putErr = s.Put(ctx, d)
				datas[id] = d // the chunk stays pending even if Put failed
			}
			if putErr == nil {
				t.Fatal("no Put reported the failing pack write")
			}
			if err := s.Flush(ctx); err == nil {
				t.Fatal("Flush succeeded with the backend failing")
			}
			for id, d := range datas {
				checkGet(t, s, id, d) // still readable from memory
			}
			blobs.Reset()
			mustFlush(t, s)
			for id, d := range datas {
				checkGet(t, s, id, d)
			}
			mustVerify(t, s)
			// A fresh store over the same index and blobs (a restart) sees it all.
			s2 := newStore(t, blobs, idx, opts)
			for id, d := range datas {
				checkGet(t, s2, id, d)
			}
		})
	}
}

// TestConcurrentPutWithBackgroundWrites: many writers, small packs, so
// that sealing, background writes and the MaxUnwritten bound interleave.
func TestConcurrentPutWithBackgroundWrites(t *testing.T) {
	s := newStore(t, mem.New(), chunkstore.NewMemIndex(), chunkstore.Options{PackSize: 8 << 10, MaxUnwritten: 1})
	var mu sync.Mutex
	datas := map[chunk.ID][]byte{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				d := randomData(uint64(w*1000+i%30), 3<<10) // repeats across writers
				id := mustPut(t, s, d)
				mu.Lock()
				datas[id] = d
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	mustFlush(t, s)
	for id, d := range datas {
		checkGet(t, s, id, d)
	}
	mustVerify(t, s)
}
