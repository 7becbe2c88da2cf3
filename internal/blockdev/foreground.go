package blockdev

import (
	"context"
	"sync/atomic"
	"time"

	"coffer/internal/clock"
	"coffer/internal/lowprio"
)

// foregroundWindow is how long after a read or write by a volume's user
// the engine's background work on that volume gives way to the user:
// bulk requests queued on the disk would delay the user's requests behind
// them. The hydrator then runs one job at a time instead of one per worker,
// a snapshot stores one block at a time instead of one per worker (both
// through a yieldGate), and a snapshot stops reading ahead (prefetch).
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
// it runs at the user's priority (do).
type yieldGate struct {
	clk clock.Clock
	fg  *foreground
	// urgent, if set, is asked before each rest (by one job at a time);
	// true skips the rest.
	urgent func() bool
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
// what the user's requests paid for the work being behind (for a
// hydration, the blocks fetched on the read path), has grown since the
// last rest. A snapshot does not use it: its writers' copies are 4 KiB
// pieces, cheaper than the blocks a snapshot without rests stores
// (docs/design.md, "Session perf14ak").
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
	g     *yieldGate // nil: let in while the user was not active
	start time.Time
	owed  bool // runs at the user's priority: the work is owed its share
}

// do runs fn as one job of the gate (enter, fn, end) and returns fn's
// error, or the context's if it ended while the job waited. A job the
// work is owed runs at the process's normal priority (lowprio.Normal), any
// other where the caller runs: a lowered thread, whose CPU time the job
// spends of the work's share.
func (g *yieldGate) do(ctx context.Context, fn func() error) error {
	j, err := g.enter(ctx)
	if err != nil {
		return err
	}
	switch {
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

// enter, while the volume's user is active, waits until no other job of
// the gate runs and the gate has rested or the work is owed its share,
// and returns the job, whose end the caller must call; otherwise it
// returns at once a job with nothing to end.
func (g *yieldGate) enter(ctx context.Context) (gateJob, error) {
	if !g.fg.recent(g.clk.Now()) {
		return gateJob{}, nil
	}
	select {
	case g.slot <- struct{}{}:
	case <-ctx.Done():
		return gateJob{}, ctx.Err()
	}
	if err := g.rest(ctx); err != nil {
		<-g.slot
		return gateJob{}, err
	}
	start := g.clk.Now()
	return gateJob{g: g, start: start, owed: g.accrue(start) > 0}, nil
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
// than until the work is owed its share. The caller holds the slot.
func (g *yieldGate) rest(ctx context.Context) error {
	if g.urgent != nil && g.urgent() {
		return nil
	}
	for {
		now := g.clk.Now()
		credit := g.accrue(now)
		if credit > 0 {
			return nil
		}
		owedIn := time.Duration(float64(-credit)/minShare) + time.Nanosecond // until the credit is positive
		wait := min(g.next.Sub(now), foregroundWindow, owedIn)
		if wait <= 0 || !g.fg.recent(now) {
			return nil
		}
		t := g.clk.NewTimer(wait)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}
