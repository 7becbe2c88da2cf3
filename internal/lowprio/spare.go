package lowprio

import (
	"os"
	"runtime"
	"sync"
	"time"

	"coffer/internal/clock"
)

// spare holds the count of SpareP callers and of SyscallThreadP callers
// not yet released, what GOMAXPROCS was before the first of them, and
// the pending lowering of GOMAXPROCS (spareLinger).
var spare struct {
	mu      sync.Mutex
	users   int
	threads int
	base    int // 0: no holder since GOMAXPROCS was last restored
	clock   clock.Clock
	// pending is when the holders' need last fell below the Ps set (or
	// the last holder left) with no raise since; zero when nothing is to
	// be lowered.
	pending time.Time
	// armed is the generation of the timer waiting to lower GOMAXPROCS,
	// 0 when none waits; gen counts the timers armed, so that a timer
	// orphaned by SetClock does nothing when it fires.
	armed, gen uint64
}

func init() { spare.clock = clock.Real{} }

// maxThreadPs bounds the Ps SyscallThreadP adds, as a multiple of the
// Ps the process had: a P costs the runtime little, but the garbage
// collector's dedicated workers are a quarter of GOMAXPROCS.
const maxThreadPs = 2

// spareLinger is how long the holders' need must stay below the Ps set
// before GOMAXPROCS is lowered (or restored, once no holder is left).
// Every GOMAXPROCS change stops the world, and while it waits for every
// thread holding a P to stop, every connection's I/O stands still
// (0.7-1.8 ms at load 18, docs/design.md "Session perf14ag"); lowering at
// once made a short connection beside a long one cost two such pauses.
// Raising is at once: a thread without a P of its own costs every
// request it serves.
const spareLinger = 10 * time.Second

// SpareP gives the process one P (GOMAXPROCS) more than it has until the
// returned release is called, and returns release. Calls nest: the first
// adds the P and the last release takes it back at once, restoring
// GOMAXPROCS as it was (and the runtime's automatic updates of it, when
// it was not set by the environment) when no SyscallThreadP is held
// either; a lowering that SyscallThreadP's releases left pending is done
// with it. Release may be called more than once.
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
func SpareP() (release func()) { return holdSpare(&spare.users, false) }

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
//
// GOMAXPROCS rises at once when the threads need more Ps than it has,
// and falls only when they have needed fewer for spareLinger: a short
// connection opened beside others that reach a number of threads seen
// in the last spareLinger changes nothing, and so stops no world.
func SyscallThreadP() (release func()) { return holdSpare(&spare.threads, true) }

// SetClock makes c the clock that times the lowering of GOMAXPROCS after
// SyscallThreadP's releases and
// returns the function that puts the previous clock back. It is for
// tests (a clock.Fake): both it and the returned function first lower
// GOMAXPROCS to what the holders need now, as if spareLinger had passed,
// so that a test starts and ends with no lowering pending.
func SetClock(c clock.Clock) (restore func()) {
	spare.mu.Lock()
	prev := spare.clock
	spare.clock = c
	lowerLocked()
	spare.mu.Unlock()
	return func() {
		spare.mu.Lock()
		spare.clock = prev
		lowerLocked()
		spare.mu.Unlock()
	}
}

// holdSpare counts one more holder in *count (spare.users or
// spare.threads), sets GOMAXPROCS for the holders, and returns the
// release that counts it out again (once, however often it is called),
// lowering GOMAXPROCS spareLinger later when linger is set, else at once.
func holdSpare(count *int, linger bool) (release func()) {
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
			if !linger {
				lowerLocked()
			}
			spare.mu.Unlock()
		})
	}
}

// needLocked returns the Ps the SpareP and SyscallThreadP holders need:
// the base, one more while any SpareP is held, and enough for the
// threads. spare.mu is held and spare.base is set.
func needLocked() int {
	want := spare.base
	if spare.users > 0 {
		want++
	}
	return want + min(max(0, spare.threads+1-spare.base), maxThreadPs*spare.base)
}

// setSpareLocked follows a change in the holders: it raises GOMAXPROCS
// at once when they need more Ps than it has, and when they need fewer,
// or none is left, it marks the lowering pending and arms the timer that
// lowers it once spareLinger has passed without a raise. spare.mu is
// held.
func setSpareLocked() {
	cur := runtime.GOMAXPROCS(0)
	if spare.base == 0 {
		if spare.users == 0 && spare.threads == 0 {
			return
		}
		spare.base = cur
	}
	if spare.users > 0 || spare.threads > 0 {
		if want := needLocked(); want >= cur {
			spare.pending = time.Time{}
			if want > cur {
				runtime.GOMAXPROCS(want)
			}
			return
		}
	}
	if spare.pending.IsZero() {
		spare.pending = spare.clock.Now()
	}
	armLocked(spare.pending.Add(spareLinger))
}

// armLocked arms the timer that lowers GOMAXPROCS at due, unless one is
// armed already: that one fires no later, and re-arms for what is left.
// spare.mu is held.
func armLocked(due time.Time) {
	if spare.armed != 0 {
		return
	}
	spare.gen++
	gen := spare.gen
	spare.armed = gen
	t := spare.clock.NewTimer(due.Sub(spare.clock.Now()))
	go func() {
		<-t.C()
		spare.mu.Lock()
		defer spare.mu.Unlock()
		if spare.armed != gen { // orphaned by SetClock
			return
		}
		spare.armed = 0
		if spare.pending.IsZero() {
			return
		}
		if due := spare.pending.Add(spareLinger); spare.clock.Now().Before(due) {
			armLocked(due) // the need rose and fell again meanwhile
			return
		}
		lowerLocked()
	}()
}

// lowerLocked does the pending lowering now: GOMAXPROCS to what the
// holders need, or, with none left, as it was before the first of them
// (and the runtime's automatic updates of it, when it was not set by the
// environment). It disarms the timer. spare.mu is held.
func lowerLocked() {
	spare.armed = 0
	pending := !spare.pending.IsZero()
	spare.pending = time.Time{}
	if !pending || spare.base == 0 {
		return
	}
	if spare.users > 0 || spare.threads > 0 {
		if want := needLocked(); want < runtime.GOMAXPROCS(0) {
			runtime.GOMAXPROCS(want)
		}
		return
	}
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		runtime.SetDefaultGOMAXPROCS() // the default, and its updates
	}
	if runtime.GOMAXPROCS(0) != spare.base { // a value set before
		runtime.GOMAXPROCS(spare.base)
	}
	spare.base = 0
}
