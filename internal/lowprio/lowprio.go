// Package lowprio runs background work on operating-system threads that
// the kernel schedules after the others of the process: a snapshot's
// reading, hashing and compressing and a hydration's decompressing and
// writing, so that a volume's user, whose NBD connections run on threads
// of normal priority, gets a core first when both want one. It owns the
// lowered threads and nothing else.
//
// Go schedules goroutines on its own threads, and a priority set on one of
// them would reach whatever goroutine runs there next; raising it back
// needs a privilege (CAP_SYS_NICE) that the server need not have. So the
// lowered threads are a pool of their own: each is locked for good to one
// goroutine that runs Run's work and never runs anything else. They are
// never ended either: the runtime would end a locked thread whose
// goroutine returns, and a thread that ends takes with it the children it
// started with a parent-death signal (Pdeathsig), whichever goroutine
// started them there earlier.
package lowprio

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Nice is the nice value of the threads Run uses: the lowest. Linux's
// fair scheduler weighs a nice-19 thread 15 against 1024 for nice 0, so
// when the user's threads keep the cores busy the background work gets
// little of them, and all of whatever they leave idle.
const Nice = 19

// unlowered counts the threads whose priority could not be lowered.
var unlowered atomic.Int64

// pool holds the lowered threads' goroutines that wait for work. It grows
// to the most jobs Run has run at once, and never shrinks.
var pool struct {
	mu   sync.Mutex
	idle []chan func()
}

// Run calls fn on one of the lowered threads (nice value Nice, where the
// system has per-thread nice values: Linux), waits for it to return, and
// returns its error. Goroutines that fn starts run on the ordinary
// threads, at normal priority.
//
// A priority that cannot be lowered is not an error of the work: fn runs
// at normal priority and Unlowered counts it.
func Run(fn func() error) error {
	errc := make(chan error, 1)
	job := func() { errc <- fn() }
	pool.mu.Lock()
	if n := len(pool.idle); n > 0 {
		w := pool.idle[n-1]
		pool.idle = pool.idle[:n-1]
		pool.mu.Unlock()
		w <- job
	} else {
		pool.mu.Unlock()
		w := make(chan func(), 1)
		w <- job
		go worker(w)
	}
	return <-errc
}

// worker locks its goroutine to its thread for good, lowers the thread,
// and runs the jobs sent on w, offering itself to the pool after each.
func worker(w chan func()) {
	runtime.LockOSThread() // never unlocked
	if mainThread() {
		// ps and top show the main thread's priority as the process's:
		// hand the jobs to a worker on another thread (this goroutine
		// keeps the main thread locked until that one has locked its
		// own, so it cannot land here), and give the main thread back.
		locked := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(locked)
			serve(w)
		}()
		<-locked
		runtime.UnlockOSThread()
		return
	}
	serve(w)
}

// serve lowers the calling thread, already locked, and runs w's jobs.
func serve(w chan func()) {
	lower()
	for job := range w {
		job()
		pool.mu.Lock()
		pool.idle = append(pool.idle, w)
		pool.mu.Unlock()
	}
}

// Unlowered reports how many of Run's threads kept their normal priority
// because the system refused to lower it.
func Unlowered() int64 { return unlowered.Load() }

// Group is what Go starts work in: an errgroup.Group.
type Group interface{ Go(fn func() error) }

// Go starts fn in g the way Run runs it: on a lowered thread.
func Go(g Group, fn func() error) { g.Go(func() error { return Run(fn) }) }
