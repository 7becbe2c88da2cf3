package blockdev

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTryFileRunsAt: the runs cover the range in order, their holes are
// ReadSparseAt's and the data runs lie at the same offsets in the file
// returned, holding the volume's bytes; refused past the end, when a page
// of the data is not in the page cache, while hydrating and once closed.
func TestTryFileRunsAt(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs})
	const size = 1 << 20
	src, _ := env.e.CreateVolume(ctx, "src", size)
	model := make([]byte, size)
	for _, r := range [][2]int{{3 * bs, 5 * bs}, {9*bs + 100, 2*bs + 7}, {size - bs, bs}} {
		fillRandom(rand.New(rand.NewPCG(uint64(r[0]), 2)), model[r[0]:r[0]+r[1]])
		if _, err := src.WriteAt(model[r[0]:r[0]+r[1]], int64(r[0])); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range [][2]int64{{0, size}, {bs + 1, 20 * bs}, {4 * bs, 3 * bs}, {20 * bs, 30 * bs}} {
		off, n := r[0], r[1]
		f, runs, ok := src.TryFileRunsAt(off, n)
		if noCachestat.Load() {
			t.Skip("no cachestat(2) on this kernel: TryFileRunsAt always refuses")
		}
		if !ok {
			t.Fatalf("TryFileRunsAt(%d, %d) of cached data refused", off, n)
		}
		var holes []Extent
		pos := off
		for _, x := range runs {
			if x.Offset != pos || x.Length <= 0 {
				t.Fatalf("TryFileRunsAt(%d, %d): runs %v do not cover the range in order", off, n, runs)
			}
			pos += x.Length
			if x.Hole {
				holes = append(holes, x)
				continue
			}
			p := make([]byte, x.Length)
			if _, err := f.ReadAt(p, x.Offset); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p, model[x.Offset:x.Offset+x.Length]) {
				t.Errorf("data run %v: the file differs from the volume", x)
			}
		}
		if pos != off+n {
			t.Fatalf("TryFileRunsAt(%d, %d): runs %v end at %d", off, n, runs, pos)
		}
		var want []Extent
		if _, err := src.ReadSparseAt(ctx, make([]byte, n), off, func(o, l int64) {
			want = append(want, Extent{Offset: o, Length: l, Hole: true})
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(holes, want) {
			t.Errorf("TryFileRunsAt(%d, %d): holes %v, want ReadSparseAt's %v", off, n, holes, want)
		}
	}
	if _, _, ok := src.TryFileRunsAt(size-bs, 2*bs); ok {
		t.Error("TryFileRunsAt past the end done")
	}

	// Out of the page cache: refused until read again.
	if err := src.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(src.f.Fd()), 0, size, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	if src.cached(3*bs, 5*bs) {
		t.Log("the file system kept the pages in the page cache: not-cached case not checked")
	} else if _, _, ok := src.TryFileRunsAt(0, size); ok {
		t.Error("TryFileRunsAt of data not in the page cache done")
	}
	if _, err := src.ReadAt(make([]byte, size), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := src.TryFileRunsAt(0, size); !ok {
		t.Error("TryFileRunsAt refused after the data was read into the page cache")
	}

	v, held, release := restoreHeld(t, env, "src")
	<-held
	if _, _, ok := v.TryFileRunsAt(0, size); ok {
		t.Error("TryFileRunsAt of a hydrating volume done")
	}
	close(release)
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := src.TryFileRunsAt(0, size); ok {
		t.Error("TryFileRunsAt of a closed volume done")
	}
}
