// Package lowprio runs background work on operating-system threads that
// the kernel schedules after the others of the process: a snapshot's
// reading, hashing and compressing and a hydration's decompressing and
// writing, so that a volume's user, whose NBD connections run on threads
// of normal priority, gets a core first when both want one. It owns the
// lowered threads and nothing else.
//
// Go schedules goroutines on its own threads, and a priority set on one of
// them would reach whatever goroutine runs there next. Run therefore
// lowers only a thread locked to one goroutine that never unlocks it: the
// Go runtime ends such a thread when its goroutine returns, so the
// priority ends with the work.
package lowprio

import (
	"runtime"
	"sync/atomic"
)

// Nice is the nice value of the threads Run makes: the lowest. Linux's
// fair scheduler weighs a nice-19 thread 15 against 1024 for nice 0, so
// when the user's threads keep the cores busy the background work gets
// about 1.5% of one, and all of whatever they leave idle.
const Nice = 19

// unlowered counts the threads whose priority could not be lowered.
var unlowered atomic.Int64

// Run calls fn on a new goroutine locked to an operating-system thread of
// its own with nice value Nice (where the system has per-thread nice
// values: Linux), waits for it to return, and returns its error. The
// thread ends with that goroutine. Goroutines that fn starts run on the
// ordinary threads, at normal priority.
//
// A priority that cannot be lowered is not an error of the work: fn runs
// at normal priority and Unlowered counts it.
func Run(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if mainThread() {
			// ps and top show the main thread's priority as the
			// process's, and the runtime never ends that thread: keep it
			// (locked, so that fn cannot land on it) and give it back
			// unlowered.
			err := Run(fn)
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		lower()
		// No UnlockOSThread: the runtime ends the lowered thread when this
		// goroutine returns, instead of giving it to another goroutine.
		errc <- fn()
	}()
	return <-errc
}

// Unlowered reports how many of Run's threads kept their normal priority
// because the system refused to lower it.
func Unlowered() int64 { return unlowered.Load() }

// Group is what Go starts work in: an errgroup.Group.
type Group interface{ Go(fn func() error) }

// Go starts fn in g the way Run runs it: on a lowered thread of its own.
func Go(g Group, fn func() error) { g.Go(func() error { return Run(fn) }) }
