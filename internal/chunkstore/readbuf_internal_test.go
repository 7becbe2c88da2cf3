package chunkstore

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"coffer/internal/directio"
)

// TestReadBufClasses checks that a run gets the smallest class that holds
// it with the slack of an aligned direct read, and that buffers come back
// aligned from the pool.
func TestReadBufClasses(t *testing.T) {
	for _, tc := range []struct {
		n     int64
		class int
	}{
		{1, 0}, {minRead, 0}, {minRead + 1, 1}, {2 * minRead, 1}, {3 * minRead, 2}, {maxRead - 1, 3}, {maxRead, 3},
	} {
		for range 2 { // once new, once from the pool
			b, c := readBuf(tc.n)
			if c != tc.class {
				t.Fatalf("readBuf(%d): class %d, want %d", tc.n, c, tc.class)
			}
			if int64(cap(*b)) < tc.n+2*directio.Align || !directio.Aligned((*b)[:0], 0) {
				t.Fatalf("readBuf(%d): cap %d, aligned %v", tc.n, cap(*b), directio.Aligned((*b)[:0], 0))
			}
			readBufs[c].Put(b)
		}
	}
	if minRead<<(readClasses-1) != maxRead {
		t.Fatalf("the largest class is %d bytes, maxRead %d", minRead<<(readClasses-1), maxRead)
	}
}

// TestReadRing hands out and takes back parts of a read buffer for runs
// of random lengths, oldest first, as readRuns does: every part lies in
// the buffer, is aligned and holds its run with a direct read's slack
// (or is empty for a run longer than a half, read into a pooled
// buffer), no two parts in use overlap, and an empty ring always has
// room.
func TestReadRing(t *testing.T) {
	rbuf := directio.Buffer(4<<20 + 2*directio.Align)
	half := len(readHalves(rbuf)[0])
	rng := rand.New(rand.NewPCG(1, 2))
	g := readRing{size: len(rbuf) &^ (directio.Align - 1)}
	type part struct{ lo, hi uintptr } // empty: no part (a pooled buffer)
	var live []part
	base := uintptr(unsafe.Pointer(&rbuf[0]))
	taken, full := 0, 0
	for range 100000 {
		if len(live) > 0 && rng.IntN(3) == 0 {
			if live[0].hi > live[0].lo {
				g.free()
			}
			live = live[1:]
			continue
		}
		var n int64
		switch rng.IntN(10) {
		case 0:
			n = int64(half) // longer than a half with its slack
		case 1:
			n = int64(half - 2*directio.Align) // the longest run (runMax)
		default:
			n = 1 + rng.Int64N(300<<10)
		}
		r := readRun{start: rng.Int64N(1 << 20), pack: "p"}
		r.end = r.start + n
		p, ok := g.take(rbuf, r, half)
		if !ok {
			if len(g.parts) == 0 {
				t.Fatalf("an empty ring had no room for a run of %d bytes", n)
			}
			full++
			continue
		}
		taken++
		if len(p) == 0 {
			if n+2*directio.Align <= int64(half) {
				t.Fatalf("a run of %d bytes got an empty part", n)
			}
			live = append(live, part{})
			continue
		}
		if !directio.Aligned(p, 0) || int64(len(p)) < n+2*directio.Align {
			t.Fatalf("a run of %d bytes got a part of %d bytes, aligned %v", n, len(p), directio.Aligned(p, 0))
		}
		lo := uintptr(unsafe.Pointer(&p[0]))
		np := part{lo, lo + uintptr(len(p))}
		if np.lo < base || np.hi > base+uintptr(g.size) {
			t.Fatalf("part [%d, %d) outside the buffer's %d bytes", np.lo-base, np.hi-base, g.size)
		}
		for _, q := range live {
			if q.hi > q.lo && np.lo < q.hi && q.lo < np.hi {
				t.Fatalf("part [%d, %d) overlaps [%d, %d), in use", np.lo-base, np.hi-base, q.lo-base, q.hi-base)
			}
		}
		live = append(live, np)
	}
	if taken == 0 || full == 0 {
		t.Fatalf("%d parts taken, %d times full: the test did not exercise the ring", taken, full)
	}
}
