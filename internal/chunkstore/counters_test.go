package chunkstore_test

import (
	"testing"

	"coffer/internal/blobstore/mem"
	"coffer/internal/chunkstore"
)

// TestCountersCountWhatWasAdded: the counters hold the chunks Put
// committed in new packs, once each however often they were Put, and
// nothing a second store over the same repository deduplicated.
func TestCountersCountWhatWasAdded(t *testing.T) {
	blobs, idx := mem.New(), chunkstore.NewMemIndex()
	s := newStore(t, blobs, idx, chunkstore.Options{})
	text, random := textData(3, 64<<10), randomData(4, 32<<10)
	for range 3 {
		mustPut(t, s, text)
	}
	if c := s.Counters(); c != (chunkstore.Counters{}) {
		t.Errorf("counters before a pack was written: %+v", c)
	}
	mustPut(t, s, random)
	mustFlush(t, s)
	mustPut(t, s, text) // committed already
	mustFlush(t, s)
	c := s.Counters()
	st := stats(t, s)
	if c.Packs != 1 || c.Chunks != 2 || c.RawBytes != uint64(len(text)+len(random)) || c.StoredBytes != uint64(st.StoredBytes) {
		t.Errorf("Counters = %+v, want 1 pack, 2 chunks, %d raw bytes, %d stored (Stats %+v)", c, len(text)+len(random), st.StoredBytes, st)
	}
	if c.StoredBytes >= c.RawBytes {
		t.Errorf("the text chunk did not count compressed: %+v", c)
	}
	s2 := newStore(t, blobs, idx, chunkstore.Options{})
	mustPut(t, s2, random)
	mustFlush(t, s2)
	if c := s2.Counters(); c != (chunkstore.Counters{}) {
		t.Errorf("a deduplicated Put counted: %+v", c)
	}
}
