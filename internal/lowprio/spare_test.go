package lowprio

import (
	"runtime"
	"slices"
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

// TestSyscallThreadP: threads in blocking system calls get Ps enough for
// each to hold one with one left idle (their number plus one, from the
// second on when the base is 2), within maxThreadPs times the base, on
// top of SpareP's one; releases in any order, each called twice, restore
// GOMAXPROCS.
func TestSyscallThreadP(t *testing.T) {
	const base = 2
	prev := runtime.GOMAXPROCS(base)
	defer runtime.GOMAXPROCS(prev)
	want := func(threads int, spare bool) int {
		n := max(base, threads+1)
		n = min(n, base+maxThreadPs*base)
		if spare {
			n++
		}
		return n
	}
	var rel []func()
	for k := 1; k <= 8; k++ {
		rel = append(rel, SyscallThreadP())
		if got := runtime.GOMAXPROCS(0); got != want(k, false) {
			t.Fatalf("%d threads: GOMAXPROCS %d, want %d", k, got, want(k, false))
		}
	}
	rs := SpareP()
	if got := runtime.GOMAXPROCS(0); got != want(8, true) {
		t.Fatalf("8 threads and SpareP: GOMAXPROCS %d, want %d", got, want(8, true))
	}
	for k := 8; k > 1; k-- {
		r := rel[k%len(rel)]
		rel = slices.Delete(rel, k%len(rel), k%len(rel)+1)
		r()
		r()
		if got := runtime.GOMAXPROCS(0); got != want(k-1, true) {
			t.Fatalf("%d threads and SpareP: GOMAXPROCS %d, want %d", k-1, got, want(k-1, true))
		}
	}
	rs()
	if got := runtime.GOMAXPROCS(0); got != want(1, false) {
		t.Fatalf("1 thread: GOMAXPROCS %d, want %d", got, want(1, false))
	}
	rel[0]()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("after the last release: GOMAXPROCS %d, want %d", got, base)
	}
}
