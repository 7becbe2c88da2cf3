package lowprio

import (
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"

	"coffer/internal/clock"
)

// fakeSpareClock makes a Fake the clock of the lowering for the test.
func fakeSpareClock(t *testing.T) *clock.Fake {
	t.Helper()
	fc := clock.NewFake(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	t.Cleanup(SetClock(fc))
	return fc
}

// advanceSettled moves fc on by d and waits until no timer of the
// lowering has fired without its goroutine having done its work.
func advanceSettled(t *testing.T, fc *clock.Fake, d time.Duration) {
	t.Helper()
	fc.Advance(d)
	deadline := time.Now().Add(time.Minute) // a hang, not a speed
	for {
		spare.mu.Lock()
		// A timer that fired leaves armed set until its goroutine runs.
		settled := spare.armed == 0 || fc.Pending() > 0
		spare.mu.Unlock()
		if settled {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the lowering's timer fired and its goroutine never ran")
		}
		runtime.Gosched()
	}
}

func wantProcs(t *testing.T, what string, want int) {
	t.Helper()
	if got := runtime.GOMAXPROCS(0); got != want {
		t.Fatalf("%s: GOMAXPROCS %d, want %d", what, got, want)
	}
}

// TestSparePNests: the first SpareP adds one P, nested and concurrent
// calls add none, and the last release (whichever it is, each called
// twice) restores GOMAXPROCS at once, a value set before included; with
// a thread's lowering pending, it does that lowering too.
func TestSparePNests(t *testing.T) {
	fakeSpareClock(t)
	for _, base := range []int{runtime.GOMAXPROCS(0), 3} {
		prev := runtime.GOMAXPROCS(base)
		r1 := SpareP()
		wantProcs(t, "under SpareP", base+1)
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
		wantProcs(t, "one SpareP left", base+1)
		r2()
		wantProcs(t, "after the last release", base)

		// Threads that came and went leave their lowering pending; the
		// SpareP's release does it.
		rs := SpareP()
		var rel []func()
		for range base + 1 {
			rel = append(rel, SyscallThreadP())
		}
		wantProcs(t, "SpareP and threads", base+3)
		for _, r := range rel {
			r()
		}
		wantProcs(t, "SpareP, threads just released", base+3)
		rs()
		wantProcs(t, "SpareP released after the threads", base)
		runtime.GOMAXPROCS(prev)
	}
}

// TestSyscallThreadP: threads in blocking system calls get Ps enough for
// each to hold one with one left idle (their number plus one, from the
// second on when the base is 2), within maxThreadPs times the base, on
// top of SpareP's one, at once; releases in any order, each called
// twice, lower GOMAXPROCS to what is left spareLinger later, and restore
// it once none is left.
func TestSyscallThreadP(t *testing.T) {
	fc := fakeSpareClock(t)
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
		wantProcs(t, "threads added", want(k, false))
	}
	rs := SpareP()
	wantProcs(t, "8 threads and SpareP", want(8, true))
	for k := 8; k > 1; k-- {
		r := rel[k%len(rel)]
		rel = slices.Delete(rel, k%len(rel), k%len(rel)+1)
		r()
		r()
		wantProcs(t, "a thread released", want(k, true))
		advanceSettled(t, fc, spareLinger)
		wantProcs(t, "a thread released, spareLinger on", want(k-1, true))
	}
	rs()
	advanceSettled(t, fc, spareLinger)
	wantProcs(t, "1 thread", want(1, false))
	rel[0]()
	advanceSettled(t, fc, spareLinger)
	wantProcs(t, "after the last release", base)
}

// TestSpareLingers: a thread that comes and goes beside one that stays
// (a short connection beside a long one) changes GOMAXPROCS once in all,
// not twice per thread, so stops the world once; GOMAXPROCS falls only
// when the need has stayed below it for spareLinger since it last fell,
// and a need that rises again meanwhile cancels the fall.
func TestSpareLingers(t *testing.T) {
	fc := fakeSpareClock(t)
	const base = 2
	prev := runtime.GOMAXPROCS(base)
	defer runtime.GOMAXPROCS(prev)

	held := SyscallThreadP()
	wantProcs(t, "one thread", base)
	pauses0 := otherPauses()
	for range 100 {
		r := SyscallThreadP()
		wantProcs(t, "a second thread", base+1)
		r()
		advanceSettled(t, fc, spareLinger/4)
	}
	if n := otherPauses() - pauses0; n != 1 {
		t.Errorf("100 short threads beside one: %d stop-the-world pauses, want 1 (the raise)", n)
	}
	wantProcs(t, "the short threads gone, 1/4 spareLinger on", base+1)
	advanceSettled(t, fc, spareLinger/2)
	wantProcs(t, "3/4 spareLinger after the last fell", base+1)
	r := SyscallThreadP() // the need rises again: the fall is off
	advanceSettled(t, fc, spareLinger)
	wantProcs(t, "a second thread again", base+1)
	r()
	advanceSettled(t, fc, spareLinger-time.Nanosecond)
	wantProcs(t, "just before spareLinger since the need fell", base+1)
	advanceSettled(t, fc, time.Nanosecond)
	wantProcs(t, "spareLinger since the need fell", base)

	held()
	advanceSettled(t, fc, spareLinger)
	wantProcs(t, "none held", base)
	spare.mu.Lock()
	b := spare.base
	spare.mu.Unlock()
	if b != 0 {
		t.Errorf("none held, spareLinger on: base %d kept, want it cleared", b)
	}
}

// otherPauses returns how many stop-the-world pauses other than the
// collector's the process has had.
func otherPauses() (n uint64) {
	s := []metrics.Sample{{Name: "/sched/pauses/total/other:seconds"}}
	metrics.Read(s)
	for _, c := range s[0].Value.Float64Histogram().Counts {
		n += c
	}
	return n
}
