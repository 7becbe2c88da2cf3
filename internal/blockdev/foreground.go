package blockdev

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"coffer/internal/clock"
	"coffer/internal/lowprio"
)

// foregroundWindow is how long after a read or write by a volume's user
// the engine's background work on that volume gives way to the user:
// bulk requests queued on the disk would delay the user's requests behind
// them. The hydrator then runs one job at a time instead of one per worker
// (unless the user's reads wait for it: openMisses), a snapshot stores
// one block at a time instead of one per worker (both through a
// yieldGate), and a snapshot stops reading ahead (prefetch).
// Measured on the development VM (4 GiB bench image, a reader of random
// 64 KiB blocks every 1 ms): without the hydrator giving way, 314-332
// reads ran during hydration at p90 19-23 ms, p99 46-50 ms, and hydration
// took 2.6 s; with it, 3000-3400 reads at p90 0.5-1.4 ms, p99 11-16 ms
// (5.4-5.7 ms with writebackEvery at 8 MiB), and hydration 4.3-5.4 s.
const foregroundWindow = 100 * time.Millisecond

// foreground records when a volume's user last read or wrote it (engine
// clock). The zero value has seen nothing.
type foreground struct {
	at atomic.Int64 // UnixNano; 0: never
}

// touch records a read or write at now.
func (f *foreground) touch(now time.Time) { f.at.Store(now.UnixNano()) }

// recent reports whether the user read or wrote within foregroundWindow
// before now.
func (f *foreground) recent(now time.Time) bool {
	at := f.at.Load()
	return at != 0 && now.UnixNano()-at < int64(foregroundWindow)
}

// yieldRest is how much longer than its last job a yieldGate rests
// before the next job while the volume's user is active: background work
// then takes at most a third of one core, and the user keeps the rest.
// One job at a time was not enough on a 2-core machine: a snapshot hashing
// and compressing without pause, or the hydrator decompressing and
// writing, took one core of the two from the user, whose random I/O kept
// 0.30-0.67× of its idle rate (docs/design.md, NBD data path).
const yieldRest = 2

// minShare is the least share of one core that a yieldGate's work gets
// while the user is active. Its jobs run on lowered threads (lowprio),
// which get 15/1,039 of a core each of the user's threads wants: with a
// user keeping both cores busy, a full snapshot of a 4 GiB disk took
// 122-165 s against 4-9 s alone, and the user's writes copied 56-61k of
// its 65,536 blocks before write meanwhile (docs/design.md, "Session
// perf14s"). The work's share counts the CPU time of its jobs on their
// lowered threads (a starved job waits without it) and the wall time of
// the jobs it is owed, which run at the user's priority (lowprio.Normal)
// and without rest.
//
// shareBurst is the most of the share the work saves up while it is not
// owed (a lowered job starved for up to shareBurst/minShare loses none of
// it), and shareDebt the most its credit falls below zero: what it ran
// beyond its share while lowered jobs moved freely is not held against it
// for long once they starve.
const (
	minShare   = 0.25
	shareBurst = 100 * time.Millisecond
	shareDebt  = 100 * time.Millisecond
)

// yieldGate lets one job of some background work run at a time while the
// volume's user is active, and any number otherwise (fg.recent). While the
// user is active a job also starts only after the gate has rested
// yieldRest times as long as the job before it ran, or once the user
// goes away, or when urgent says the work costs the user more the longer
// it runs, or when the work is owed its minimum share (minShare): then
// it runs at the user's priority (do). A gate told of the user's demand
// (openWhenCounted) is open while that demand is high: every job then
// starts at once, at the user's priority, as if the work were the user's.
type yieldGate struct {
	clk clock.Clock
	fg  *foreground
	// urgent, if set, is asked before each rest (by one job at a time);
	// true skips the rest.
	urgent func() bool
	// demand, if set, opens the gate while the user's requests pay for
	// the work being behind at more than a rate (openWhenCounted).
	demand *demand
	// threadCPU is the calling thread's CPU time (lowprio.ThreadCPU), and
	// atNormal runs a job at the user's priority (lowprio.Normal).
	threadCPU func() time.Duration
	atNormal  func(func() error) error
	slot      chan struct{}
	// Guarded by slot: no job starts before next while the user is
	// active; credit is the share of a core the work is owed (accrued at
	// minShare of the wall time until creditAt, at most shareBurst,
	// spent by its jobs).
	next     time.Time
	credit   time.Duration
	creditAt time.Time
}

func newYieldGate(clk clock.Clock, fg *foreground) *yieldGate {
	return &yieldGate{clk: clk, fg: fg, threadCPU: lowprio.ThreadCPU, atNormal: lowprio.Normal, slot: make(chan struct{}, 1)}
}

// urgentWhenCounted makes the gate skip its rest whenever n, a count of
// what the user's requests paid for the work being behind (blocks copied
// before write for a snapshot, blocks fetched on the read path for a
// hydration), has grown since the last rest.
func (g *yieldGate) urgentWhenCounted(n *atomic.Int64) {
	var last int64 // read by one job at a time (the gate's slot)
	g.urgent = func() bool {
		k := n.Load()
		more := k != last
		last = k
		return more
	}
}

// gateJob is a job let in by a yieldGate.
type gateJob struct {
	g     *yieldGate // nil: let in while the user was not active, or while the gate is open
	start time.Time
	owed  bool // runs at the user's priority: the work is owed its share
	// open: let in while the gate is open (g is nil): runs at the user's
	// priority, with no other job waited for and nothing spent.
	open bool
}

// do runs fn as one job of the gate (enter, fn, end) and returns fn's
// error, or the context's if it ended while the job waited. A job the
// work is owed, or one let in while the gate is open (demand), runs at
// the process's normal priority (lowprio.Normal), any other where the
// caller runs: a lowered thread, whose CPU time the job spends of the
// work's share.
func (g *yieldGate) do(ctx context.Context, fn func() error) error {
	j, err := g.enter(ctx)
	if err != nil {
		return err
	}
	switch {
	case j.open:
		return g.atNormal(fn)
	case j.g == nil:
		return fn()
	case j.owed:
		err = g.atNormal(fn)
		j.end(g.clk.Now().Sub(j.start))
	default:
		c0 := g.threadCPU()
		err = fn()
		j.end(g.threadCPU() - c0)
	}
	return err
}

// enter, while the volume's user is active and the gate is not open,
// waits until no other job of the gate runs and the gate has rested or
// the work is owed its share, and returns the job, whose end the caller
// must call; otherwise (the user not active, or the gate open) it returns
// at once a job with nothing to end. A job waiting for another to end
// is let in as soon as the gate opens.
func (g *yieldGate) enter(ctx context.Context) (gateJob, error) {
	for {
		now := g.clk.Now()
		if !g.fg.recent(now) {
			return gateJob{}, nil
		}
		var opened <-chan struct{}
		var poll clock.Timer
		var polled <-chan time.Time
		if g.demand != nil {
			var open bool
			if open, opened = g.demand.check(now); open {
				return gateJob{open: true}, nil
			}
			// The job that runs may be a lowered one starved for long:
			// the waiters look at the count themselves.
			poll = g.clk.NewTimer(foregroundWindow)
			polled = poll.C()
		}
		var got bool
		select {
		case g.slot <- struct{}{}:
			got = true
		case <-opened:
		case <-polled:
		case <-ctx.Done():
		}
		if poll != nil {
			poll.Stop()
		}
		if !got {
			if err := ctx.Err(); err != nil {
				return gateJob{}, err
			}
			continue
		}
		open, err := g.rest(ctx)
		if err != nil || open {
			<-g.slot
			if err != nil {
				return gateJob{}, err
			}
			return gateJob{open: true}, nil
		}
		start := g.clk.Now()
		return gateJob{g: g, start: start, owed: g.accrue(start) > 0}, nil
	}
}

// end ends a job that spent used of the work's share, and sets the rest
// before the next.
func (j gateJob) end(used time.Duration) {
	g := j.g
	if g == nil {
		return
	}
	end := g.clk.Now()
	g.accrue(end)
	g.credit = max(g.credit-used, -shareDebt)
	g.next = end.Add(yieldRest * end.Sub(j.start))
	<-g.slot
}

// accrue adds the share earned since the last call and returns the
// credit. The caller holds the slot.
func (g *yieldGate) accrue(now time.Time) time.Duration {
	if !g.creditAt.IsZero() && now.After(g.creditAt) {
		g.credit = min(shareBurst, g.credit+time.Duration(minShare*float64(now.Sub(g.creditAt))))
	}
	g.creditAt = now
	return g.credit
}

// rest waits until g.next, or until the user has gone away (checked at
// least every foregroundWindow), unless the work is urgent; and no longer
// than until the work is owed its share, or the gate opens (true). The
// caller holds the slot.
func (g *yieldGate) rest(ctx context.Context) (open bool, err error) {
	if g.urgent != nil && g.urgent() {
		return false, nil
	}
	for {
		now := g.clk.Now()
		if g.demand != nil {
			if open, _ := g.demand.check(now); open {
				return true, nil
			}
		}
		credit := g.accrue(now)
		if credit > 0 {
			return false, nil
		}
		owedIn := time.Duration(float64(-credit)/minShare) + time.Nanosecond // until the credit is positive
		wait := min(g.next.Sub(now), foregroundWindow, owedIn)
		if wait <= 0 || !g.fg.recent(now) {
			return false, nil
		}
		t := g.clk.NewTimer(wait)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		}
	}
}

// openMisses is how many blocks the user's reads of a hydrating volume
// must fetch on their path within foregroundWindow for its hydrator's
// gate to open (openWhenCounted): 1,000 a second. A miss costs the user
// 116-212 CPU-µs (BenchmarkReadMiss, docs/design.md "Session perf14w"),
// so at that rate the user's misses take 0.12-0.21 of a core, about the
// hydrator's minimum share (minShare): beyond it the user spends more of
// the cores fetching blocks one by one than the yielding hydrator is
// given to fetch them by pages, at about a third of a miss's CPU per
// block. The user is then waiting for the hydration, and the quickest way
// to serve it is to finish the hydration. A reader of random 64 KiB
// blocks every 1 ms (coffer bench's reads during hydration) stays below
// it, and the gate yields to it as before.
const openMisses = 100

// openWhenCounted makes the gate open while n, a count of what the user's
// requests pay for the work being behind (blocks fetched on the read path
// for a hydration), grows by at least perWindow within foregroundWindow:
// every job is then let in at once, at the user's priority (lowprio.Normal),
// without rest, however active the user; when the count grows more
// slowly over a window, the gate yields again.
func (g *yieldGate) openWhenCounted(n *atomic.Int64, perWindow int64) {
	g.demand = &demand{n: n, perWindow: perWindow, opened: make(chan struct{})}
}

// demand decides whether a yieldGate is open from the rate at which a
// count grows, over consecutive intervals of at least foregroundWindow
// (engine clock): an interval in which it grew by perWindow opens the
// gate at once; one that ends having grown at a lower rate (perWindow per
// foregroundWindow) closes it.
type demand struct {
	n         *atomic.Int64
	perWindow int64
	mu        sync.Mutex
	from      time.Time // start of the current interval (zero: none yet)
	k0        int64     // the count at from
	open      bool
	// opened is closed when the gate opens, and replaced when it closes.
	opened chan struct{}
}

// check reports, at now, whether the gate is open, and if not, a channel
// closed when it opens.
func (d *demand) check(now time.Time) (bool, <-chan struct{}) {
	k := d.n.Load()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.from.IsZero() {
		d.from, d.k0 = now, k
	}
	grew, span := k-d.k0, now.Sub(d.from)
	open := d.open
	switch {
	case span >= foregroundWindow:
		// The interval ends: its rate decides.
		open = float64(grew)*float64(foregroundWindow) >= float64(d.perWindow)*float64(span)
		d.from, d.k0 = now, k
	case grew >= d.perWindow:
		open = true
	}
	if open != d.open {
		d.open = open
		if open {
			close(d.opened)
		} else {
			d.opened = make(chan struct{})
		}
	}
	return d.open, d.opened
}
