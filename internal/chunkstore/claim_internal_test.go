package chunkstore

import (
	"bytes"
	"context"
	"math/rand/v2"
	"runtime"
	"testing"

	"coffer/internal/blobstore/mem"
	"coffer/internal/chunk"
)

// TestClaimedPack holds a Put after it claimed an open pack (it compresses
// straight into the pack's spare capacity, outside the store's lock) and
// checks what goes on meanwhile: another Put fills another open pack, the
// chunks already in both read back with Get and GetMany, and a Flush waits
// for the claimer to seal the claimed pack, so that the chunk Put into it
// before the Flush is committed when Flush returns.
func TestClaimedPack(t *testing.T) {
	ctx := context.Background()
	idx := NewMemIndex()
	s, err := New(mem.New(), idx, Options{MaxOpen: 2})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	block := func() []byte {
		b := make([]byte, 64<<10)
		for i := range b {
			b[i] = "abcdefgh"[rng.IntN(8)] // compressible
		}
		return b
	}
	before, held, other := block(), block(), block()
	beforeID, err := s.Put(ctx, before) // into the first open pack
	if err != nil {
		t.Fatal(err)
	}

	claimed, release := make(chan struct{}), make(chan struct{})
	s.beforeEncode = func() {
		s.beforeEncode = nil // only this Put stops
		close(claimed)
		<-release
	}
	heldDone := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, held) // claims the first open pack
		heldDone <- err
	}()
	<-claimed
	otherID, err := s.Put(ctx, other) // opens a second pack
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, beforeID); err != nil || !bytes.Equal(got, before) {
		t.Fatalf("Get of a chunk in the claimed pack: %v", err)
	}
	n := 0
	err = s.GetMany(ctx, []chunk.ID{beforeID, otherID}, func(i int, d []byte) error {
		n++
		if !bytes.Equal(d, [][]byte{before, other}[i]) {
			t.Errorf("GetMany: chunk %d differs", i)
		}
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("GetMany while a pack is claimed: %d chunks, %v", n, err)
	}

	flushed := make(chan error, 1)
	go func() { flushed <- s.Flush(ctx) }()
	for !s.sealWhenFree() { // Flush found the claimed pack
		runtime.Gosched()
	}
	close(release)
	if err := <-heldDone; err != nil {
		t.Fatal(err)
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	// Every chunk Put before the Flush is in the index; so is the held
	// one, which its claimer put into the pack before sealing it.
	found, err := idx.Lookup(ctx, []chunk.ID{beforeID, otherID, chunk.Hash(held)})
	if err != nil || len(found) != 3 {
		t.Fatalf("after Flush: %d of 3 chunks indexed, %v", len(found), err)
	}
	for _, d := range [][]byte{before, held, other} {
		if got, err := s.Get(ctx, chunk.Hash(d)); err != nil || !bytes.Equal(got, d) {
			t.Fatalf("after Flush: %v", err)
		}
	}
	if st, err := s.Stats(ctx); err != nil || st.PendingChunks != 0 {
		t.Fatalf("after Flush: %d chunks pending, %v", st.PendingChunks, err)
	}
}

// sealWhenFree reports whether an open pack waits for its claimer to seal it.
func (s *Store) sealWhenFree() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.opens {
		if p.sealWhenFree {
			return true
		}
	}
	return false
}
