package blockdev

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
)

// TestReadFillOffReadPath: a read of a block not hydrated yet is served
// from the block it fetched without waiting for the block's write into
// the data file (fillLater): with that write held, the read returns the
// source's bytes and the block is not hydrated yet. A write of whole
// units made meanwhile keeps its units when the held write is done, and
// a whole-block write made meanwhile is not overwritten; the file then
// holds the blocks as the user sees them, and the hydration ends with
// the volume equal to the model.
func TestReadFillOffReadPath(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs, Workers: 1})
	const size = EntriesPerPage * bs
	src, err := env.e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(41, 42)), model)
	if _, err := src.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	v, held, release := restoreHeld(t, env, "src")
	<-held // the hydrator waits: only the reads hydrate
	fills, fillRelease := make(chan int64, 8), make(chan struct{})
	env.e.hooks.readFill = func(vol string, b int64) {
		fills <- b
		<-fillRelease
	}
	const b1, b2 = 5, 9
	for _, b := range []int64{b1, b2} {
		got := make([]byte, 100)
		if _, err := v.ReadAt(got, b*bs+10); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, model[b*bs+10:b*bs+110]) {
			t.Fatalf("block %d: read differs from the source", b)
		}
		if v.isHydrated(b) {
			t.Fatalf("block %d hydrated before its write into the file was done: the read wrote it on its path", b)
		}
	}
	if n := v.Hydration().ReadFetched; n != 2 {
		t.Errorf("reads fetched %d blocks, want 2", n)
	}
	// Meanwhile: whole units of b1 (units of 64 bytes), all of b2.
	unit := bytes.Repeat([]byte{0xa5}, 2*bs/writeUnits)
	copy(model[b1*bs+bs/2:], unit)
	if _, err := v.WriteAt(unit, b1*bs+bs/2); err != nil {
		t.Fatal(err)
	}
	whole := bytes.Repeat([]byte{0x5a}, bs)
	copy(model[b2*bs:], whole)
	if _, err := v.WriteAt(whole, b2*bs); err != nil {
		t.Fatal(err)
	}
	close(fillRelease)
	v.fills.wg.Wait()
	for _, b := range []int64{b1, b2} {
		if !v.isHydrated(b) {
			t.Errorf("block %d not hydrated after its write", b)
		}
		file := make([]byte, bs)
		if _, err := v.f.ReadAt(file, b*bs); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(file, model[b*bs:(b+1)*bs]); i >= 0 {
			t.Errorf("block %d: the file differs from what the user wrote and read at byte %d", b, i)
		}
	}
	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	if got := image(t, v); !bytes.Equal(got, model) {
		t.Fatalf("volume differs from the model at %d", firstDiff(got, model))
	}
}
