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

// TestReadWhileFilling reads a chunk whose record a Put has reserved in the
// open pack but not copied in yet (Put copies outside the store's lock): a
// second Put of the same data returns at once (the chunk is pending), and
// Get, GetMany and Flush must wait for the copy instead of reading or
// writing the unfilled room.
func TestReadWhileFilling(t *testing.T) {
	ctx := context.Background()
	s, err := New(mem.New(), NewMemIndex(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = "abcdefgh"[rng.IntN(8)] // compressible: stored from the pool's buffer
	}
	id := chunk.Hash(data)
	reserved, release := make(chan struct{}), make(chan struct{})
	s.beforeFill = func() {
		s.beforeFill = nil // only the first Put stops
		close(reserved)
		<-release
	}
	putErr := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, data)
		putErr <- err
	}()
	<-reserved
	if got, err := s.Put(ctx, data); err != nil || got != id {
		t.Fatalf("second Put while the first fills: %s, %v", got.Short(), err)
	}

	type result struct {
		data []byte
		err  error
	}
	gets := make(chan result, 2)
	go func() {
		d, err := s.Get(ctx, id)
		gets <- result{d, err}
	}()
	go func() {
		var got []byte
		err := s.GetMany(ctx, []chunk.ID{id}, func(_ int, d []byte) error {
			got = append([]byte(nil), d...)
			return nil
		})
		gets <- result{got, err}
	}()
	flushed := make(chan error, 1)
	go func() { flushed <- s.Flush(ctx) }()
	// Both readers and the pack's write wait for the room to be filled.
	for s.fillWaiters() < 3 {
		runtime.Gosched()
	}
	close(release)
	if err := <-putErr; err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := <-gets
		if r.err != nil || !bytes.Equal(r.data, data) {
			t.Fatalf("read while filling: %d bytes, equal %v, %v", len(r.data), bytes.Equal(r.data, data), r.err)
		}
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Get(ctx, id); err != nil || !bytes.Equal(d, data) {
		t.Fatalf("after flush: %v", err)
	}
}

// fillWaiters counts who waits for a record of the open or a sealed pack
// to be filled.
func (s *Store) fillWaiters() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	if s.open != nil {
		n += s.open.fillWaiters
	}
	for _, p := range s.sealed {
		n += p.fillWaiters
	}
	return n
}
