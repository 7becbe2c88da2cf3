package lowprio

import (
	"runtime"
	"sync"
	"testing"
)

// TestSparePNests: the first SpareP adds one P, nested and concurrent
// calls add none, and the last release (whichever it is, each called
// twice) restores GOMAXPROCS, a value set before included.
func TestSparePNests(t *testing.T) {
	for _, base := range []int{runtime.GOMAXPROCS(0), 3} {
		prev := runtime.GOMAXPROCS(base)
		r1 := SpareP()
		if got := runtime.GOMAXPROCS(0); got != base+1 {
			t.Fatalf("base %d: GOMAXPROCS %d under SpareP, want %d", base, got, base+1)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				r := SpareP()
				if got := runtime.GOMAXPROCS(0); got != base+1 {
					t.Errorf("base %d: GOMAXPROCS %d under nested SpareP, want %d", base, got, base+1)
				}
				r()
				r()
			})
		}
		wg.Wait()
		r2 := SpareP()
		r1()
		r1()
		if got := runtime.GOMAXPROCS(0); got != base+1 {
			t.Fatalf("base %d: GOMAXPROCS %d with one SpareP left, want %d", base, got, base+1)
		}
		r2()
		if got := runtime.GOMAXPROCS(0); got != base {
			t.Fatalf("base %d: GOMAXPROCS %d after the last release, want %d", base, got, base)
		}
		runtime.GOMAXPROCS(prev)
	}
}
