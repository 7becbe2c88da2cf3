package chunkstore

import (
	"testing"

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
