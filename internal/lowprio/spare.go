package lowprio

import (
	"os"
	"runtime"
	"sync"
)

// spare holds the count of SpareP callers and of SyscallThreadP callers
// not yet released, and what GOMAXPROCS was before the first of them.
var spare struct {
	mu      sync.Mutex
	users   int
	threads int
	base    int
}

// maxThreadPs bounds the Ps SyscallThreadP adds, as a multiple of the
// Ps the process had: a P costs the runtime little, but the garbage
// collector's dedicated workers are a quarter of GOMAXPROCS.
const maxThreadPs = 2

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
func SpareP() (release func()) { return holdSpare(&spare.users) }

// SyscallThreadP is for a goroutine locked to its thread
// (runtime.LockOSThread) that spends most of its time in blocking system
// calls, such as an NBD connection's reader: until release is called,
// the process has Ps enough for every such thread to sit in a system
// call with one P left idle (GOMAXPROCS at least their number plus one,
// at most maxThreadPs times what it was). A thread in a system call
// keeps its P; with every P so held, the runtime's monitor (sysmon)
// takes a P from any call that outlasts its tick (20 µs) and hands it to
// another thread, and a locked thread that comes back from its call with
// no P to take sleeps until the runtime hands it one, two futex wake-ups
// and two context switches later: four connections writing 4 KiB blocks,
// whose pwrite waits on the file's lock while another is written, paid
// for it in CPU per request (docs/design.md, "Session perf14ad"). With a
// P left idle the monitor takes none and backs off, and each thread
// keeps its own P; the kernel then shares the cores among the threads,
// as it does among nbdkit's. The first such thread needs nothing added
// (the process has a P besides). Calls nest with SpareP's; release may
// be called more than once.
func SyscallThreadP() (release func()) { return holdSpare(&spare.threads) }

// holdSpare counts one more holder in *count (spare.users or
// spare.threads), sets GOMAXPROCS for the holders, and returns the
// release that counts it out again (once, however often it is called).
func holdSpare(count *int) (release func()) {
	spare.mu.Lock()
	*count++
	setSpareLocked()
	spare.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			spare.mu.Lock()
			*count--
			setSpareLocked()
			spare.mu.Unlock()
		})
	}
}

// setSpareLocked sets GOMAXPROCS for the SpareP and SyscallThreadP
// callers counted: the base (what it was before the first of them), one
// more while any SpareP is held, and enough for the threads; with none
// left, it restores GOMAXPROCS as it was (and the runtime's automatic
// updates of it, when it was not set by the environment). spare.mu is
// held.
func setSpareLocked() {
	cur := runtime.GOMAXPROCS(0)
	if spare.users == 0 && spare.threads == 0 {
		if spare.base == 0 {
			return
		}
		if _, set := os.LookupEnv("GOMAXPROCS"); !set {
			runtime.SetDefaultGOMAXPROCS() // the default, and its updates
		}
		if runtime.GOMAXPROCS(0) != spare.base { // a value set before
			runtime.GOMAXPROCS(spare.base)
		}
		spare.base = 0
		return
	}
	if spare.base == 0 {
		spare.base = cur
	}
	want := spare.base
	if spare.users > 0 {
		want++
	}
	want += min(max(0, spare.threads+1-spare.base), maxThreadPs*spare.base)
	if want != cur {
		runtime.GOMAXPROCS(want)
	}
}
