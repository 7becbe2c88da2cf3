package blockdev

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"

	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
)

// countingIndex counts the chunk index's lookups.
type countingIndex struct {
	chunkstore.Index
	calls atomic.Int64
}

func (x *countingIndex) Lookup(ctx context.Context, ids []chunk.ID) (map[chunk.ID]chunkstore.Entry, error) {
	x.calls.Add(1)
	return x.Index.Lookup(ctx, ids)
}

// TestReadMissLocatesPagesOnce: the reads of blocks not hydrated yet look
// the chunks of a source page up with one lookup of the chunk index for
// the page, not one per read, and the hydrator's job of a page so located
// looks up nothing; what they read is the source, before and after
// hydration, and a page's locations are dropped once it is hydrated.
func TestReadMissLocatesPagesOnce(t *testing.T) {
	ctx := context.Background()
	var x *countingIndex
	e, _, _ := newRealEngineWith(t, Options{BlockSize: 4096}, func(i chunkstore.Index) chunkstore.Index {
		x = &countingIndex{Index: i}
		return x
	})
	const bs, pages = 4096, 3
	const size = pages * EntriesPerPage * bs
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(31, 32))
	for b := range int64(size / bs) {
		blk := model[b*bs : (b+1)*bs]
		switch b % 5 {
		case 0, 1: // incompressible: stored raw
			fillRandom(rng, blk)
		case 2, 3: // text: compressed
			for i := range blk {
				blk[i] = "abcdefgh\n"[rng.IntN(9)]
			}
		} // case 4: a hole
	}
	src, err := e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	v, held, release := restoreHeldOn(t, e, "src")
	<-held // the hydrator has loaded its batch of pages
	h := v.hyd
	calls := x.calls.Load()
	buf := make([]byte, 1000)
	for b := int64(0); b < size/bs; b += 2 { // half the blocks of each page
		off := b*bs + 77
		if _, err := v.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, model[off:off+int64(len(buf))]) {
			t.Fatalf("read of block %d differs from the source", b)
		}
	}
	// Each page: its load and its chunks' locations.
	if n := x.calls.Load() - calls; n > 2*pages {
		t.Errorf("reads of %d blocks in %d pages looked up the index %d times, want at most %d", size/bs/2, pages, n, 2*pages)
	}
	calls = x.calls.Load()
	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	// The hydrator reads the chunks of the pages by their located entries.
	if n := x.calls.Load() - calls; n > 0 {
		t.Errorf("the hydrator looked up the index %d times after the reads located every page, want 0", n)
	}
	h.locs.mu.Lock()
	left := len(h.locs.pages)
	h.locs.mu.Unlock()
	if left != 0 {
		t.Errorf("%d pages' locations kept after hydration", left)
	}
	wantImage(t, v, model, "after hydration")
}

// TestReadMissLocatedCorrupt: a chunk read by its located entry is checked
// against its ID as any: a byte flipped in a pack fails the read of a
// block not hydrated yet, and the hydrator's job of the page, with
// ErrCorrupt, for a chunk stored raw (no decompression to trip on) and a
// compressed one.
func TestReadMissLocatedCorrupt(t *testing.T) {
	for _, kind := range []string{"raw", "compressed"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			e, blobs, index := newRealEngineWith(t, Options{BlockSize: 4096}, nil)
			const bs = 4096
			const size = EntriesPerPage * bs
			model := make([]byte, size)
			rng := rand.New(rand.NewPCG(33, 34))
			for b := range int64(size / bs) {
				blk := model[b*bs : (b+1)*bs]
				if kind == "raw" {
					fillRandom(rng, blk)
				} else {
					// A 16-byte random pattern repeated: every codec
					// compresses it (cgo zstd and the pure-Go one alike),
					// and each block's chunk is its own.
					var pat [16]byte
					fillRandom(rng, pat[:])
					for i := range blk {
						blk[i] = pat[i%len(pat)]
					}
				}
			}
			src, err := e.CreateVolume(ctx, "src", size)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := src.WriteAt(model, 0); err != nil {
				t.Fatal(err)
			}
			v, _, release := restoreHeldOn(t, e, "src")
			defer close(release)
			// Locate the page with a read of block 0.
			buf := make([]byte, bs)
			if _, err := v.ReadAt(buf, 0); err != nil {
				t.Fatal(err)
			}
			// Flip a byte of block 5's and block 9's chunks in their pack.
			for _, b := range []int64{5, 9} {
				id := chunk.Hash(model[b*bs : (b+1)*bs])
				found, err := index.Lookup(ctx, []chunk.ID{id})
				if err != nil {
					t.Fatal(err)
				}
				ent, ok := found[id]
				if !ok || ent.Compression != map[string]chunkstore.Compression{"raw": chunkstore.CompressionNone, "compressed": chunkstore.CompressionZstd}[kind] {
					t.Fatalf("block %d's chunk: %+v, %v", b, ent, ok)
				}
				f, err := os.OpenFile(blobs.Path(ent.Pack), os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				one := make([]byte, 1)
				at := ent.Offset + int64(ent.Length)/2
				if _, err := f.ReadAt(one, at); err != nil {
					t.Fatal(err)
				}
				one[0] ^= 0x10
				if _, err := f.WriteAt(one, at); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			if _, err := v.ReadAt(buf, 5*bs); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("read of a block whose chunk is corrupt: %v, want ErrCorrupt", err)
			}
			if _, err := v.ReadAt(buf, 6*bs); err != nil {
				t.Fatalf("read of a sound block: %v", err)
			}
			release <- struct{}{} // let one job go: the page's
			if err := v.WaitHydrated(ctx); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("hydration of a page with corrupt chunks: %v, want ErrCorrupt", err)
			}
		})
	}
}
