package chunkstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/mem"
	"coffer/internal/chunkstore"
)

// refusingBlobs fails every pack Put while refuse is set.
type refusingBlobs struct {
	blobstore.Store
	refuse bool
}

var errRefused = errors.New("pack write refused")

func (r *refusingBlobs) Put(ctx context.Context, name string, data []byte) error {
	if r.refuse && strings.HasPrefix(name, "packs/") {
		return errRefused
	}
	return r.Store.Put(ctx, name, data)
}

// TestStreamFlushAlso: FlushAlso runs its function only once the stream's
// pack is written (never when it cannot be), and returns its error with
// the Flush's.
func TestStreamFlushAlso(t *testing.T) {
	ctx := context.Background()
	under := mem.New()
	blobs := &refusingBlobs{Store: under, refuse: true}
	s := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{})
	st := s.NewStream()
	defer st.Close()
	d := randomData(3, 8<<10)
	id, err := st.Put(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	packs := func() int {
		n := 0
		if err := under.List(ctx, "packs/", func(blobstore.Info) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	also := func(context.Context) error {
		ran++
		if packs() == 0 {
			t.Error("FlushAlso ran its function before the stream's pack was written")
		}
		return nil
	}
	if err := st.FlushAlso(ctx, also); !errors.Is(err, errRefused) {
		t.Fatalf("FlushAlso with its pack refused: %v, want the refusal", err)
	}
	if ran != 0 {
		t.Fatal("FlushAlso ran its function although the pack was not written")
	}
	blobs.refuse = false
	if err := st.FlushAlso(ctx, also); err != nil {
		t.Fatal(err)
	}
	if ran != 1 {
		t.Fatalf("FlushAlso ran its function %d times, want 1", ran)
	}
	if got, err := s.Get(ctx, id); err != nil || string(got) != string(d) {
		t.Fatalf("chunk after FlushAlso: %v", err)
	}
	errAlso := errors.New("also failed")
	if _, err := st.Put(ctx, randomData(4, 8<<10)); err != nil {
		t.Fatal(err)
	}
	if err := st.FlushAlso(ctx, func(context.Context) error { return errAlso }); !errors.Is(err, errAlso) {
		t.Fatalf("FlushAlso whose function failed: %v, want its error", err)
	}
}
