package lowprio

import (
	"os"
	"runtime"
	"sync"
)

// spare holds the count of SpareP callers not yet released and what
// GOMAXPROCS was before the first of them.
var spare struct {
	mu    sync.Mutex
	users int
	base  int
}

// SpareP gives the process one P (GOMAXPROCS) more than it has until the
// returned release is called, and returns release. Calls nest: the first
// adds the P and the last release takes it back, restoring GOMAXPROCS as
// it was (and the runtime's automatic updates of it, when it was not set
// by the environment). Release may be called more than once.
//
// Work that keeps as many lowered threads busy as there are Ps, each in
// long cgo calls (a snapshot's workers compressing with libzstd), holds
// every P: a goroutine in a cgo call keeps its P. The runtime's monitor
// (sysmon) then takes a P back from any cgo call that outlasts one of its
// ticks (20 µs while it keeps taking them) and hands it to another
// thread, which finds nothing to run and sleeps, and the compressing
// thread that comes back finds its P gone; and the monitor keeps ticking
// every 20 µs for as long as it keeps taking Ps. A P left idle stops both:
// the monitor takes no P while one is idle, and backs off. It also leaves
// the user's goroutines a P that the lowered work cannot hold, so the
// kernel, which runs the user's threads first, decides who runs
// (docs/design.md, "Issue 14's figures (session 9)").
//
// Changing GOMAXPROCS stops the world for a moment: it is meant around
// work that lasts, not around each of its jobs.
func SpareP() (release func()) {
	spare.mu.Lock()
	if spare.users == 0 {
		spare.base = runtime.GOMAXPROCS(0)
		runtime.GOMAXPROCS(spare.base + 1)
	}
	spare.users++
	spare.mu.Unlock()
	var once sync.Once
	return func() { once.Do(releaseSpare) }
}

func releaseSpare() {
	spare.mu.Lock()
	defer spare.mu.Unlock()
	if spare.users--; spare.users > 0 {
		return
	}
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		runtime.SetDefaultGOMAXPROCS() // the default, and its updates
	}
	if runtime.GOMAXPROCS(0) != spare.base { // a value set before
		runtime.GOMAXPROCS(spare.base)
	}
}
