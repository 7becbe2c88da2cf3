// Package lowprio runs background work on operating-system threads that
// the kernel schedules after the others of the process: a snapshot's
// reading, hashing and compressing and a hydration's decompressing and
// writing, so that a volume's user, whose NBD connections run on threads
// of normal priority, gets a core first when both want one. It owns the
// lowered threads and the spare P of their work (SpareP), nothing else.
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
//
// Lowered threads busy in long cgo calls hold the process's Ps (Go's
// cores) as any thread does; SpareP adds one P while such work runs, so
// that the runtime does not keep taking Ps back from those calls and the
// user's goroutines always find one.
package lowprio

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// DefaultNice is the nice value of the threads Run uses unless SetNice
// says otherwise: the lowest. Linux's fair scheduler weighs a nice-19
// thread 15 against 1024 for nice 0, so when the user's threads keep the
// cores busy the background work gets little of them, and all of whatever
// they leave idle. On a machine whose other processes keep the cores busy
// that is little indeed: a moderate value (10: weight 110) lets the work
// move.
const DefaultNice = 19

// MaxNice is the highest (least favoured) nice value.
const MaxNice = 19

// ErrNice is the error of a nice value outside 0-MaxNice.
var ErrNice = errors.New("nice value out of range")

// nice is the nice value of the threads Run uses (SetNice).
var nice atomic.Int32

func init() { nice.Store(DefaultNice) }

// SetNice sets the nice value of the threads Run uses from now on: 0
// (the process's normal priority) to MaxNice, the lowest. A pool thread
// lowered to another value takes the new one before its next job; raising
// a thread's priority back (a lower value) may need a privilege
// (CAP_SYS_NICE or RLIMIT_NICE), without which the thread keeps its value
// and Unlowered counts it. It is meant to be called once, before any
// work, as the server starts. A value out of range is refused (ErrNice)
// and changes nothing.
func SetNice(n int) error {
	if n < 0 || n > MaxNice {
		return fmt.Errorf("%d: %w (want 0 to %d)", n, ErrNice, MaxNice)
	}
	nice.Store(int32(n))
	return nil
}

// Nice returns the nice value of the threads Run uses.
func Nice() int { return int(nice.Load()) }

// unlowered counts the threads whose priority could not be lowered.
var unlowered atomic.Int64

// pool holds the lowered threads' goroutines that wait for work. It grows
// to the most jobs Run has run at once, and never shrinks.
var pool struct {
	mu   sync.Mutex
	idle []chan func()
}

// Run calls fn on one of the lowered threads (nice value Nice(), where the
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

// serve runs w's jobs on the calling thread, already locked, setting its
// nice value to Nice() before each job that finds it at another.
func serve(w chan func()) {
	set := -1 // the thread's value as set; -1: not set yet
	for job := range w {
		if n := Nice(); n != set {
			setNice(n)
			set = n
		}
		job()
		pool.mu.Lock()
		pool.idle = append(pool.idle, w)
		pool.mu.Unlock()
	}
}

// Normal calls fn at the process's normal priority and returns its error:
// on an ordinary thread, from anywhere, a lowered thread included (a
// goroutine it starts runs on the ordinary threads; the calling thread
// waits). It is how background work that runs on a lowered thread takes
// the share of the cores it is owed while the user keeps them busy, where
// a nice-19 thread would get 15/1,039 of a core each of the user's
// threads wants. It costs two thread switches.
func Normal(fn func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- fn() }()
	return <-errc
}

// Unlowered reports how many times one of Run's threads kept its priority
// because the system refused to set it to Nice().
func Unlowered() int64 { return unlowered.Load() }

// Group is what Go starts work in: an errgroup.Group.
type Group interface{ Go(fn func() error) }

// Go starts fn in g the way Run runs it: on a lowered thread.
func Go(g Group, fn func() error) { g.Go(func() error { return Run(fn) }) }
