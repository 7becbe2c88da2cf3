package blockdev

import (
	"context"
	"sync/atomic"
	"time"

	"coffer/internal/clock"
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

// yieldGate lets one job of some background work run at a time while the
// volume's user is active, and any number otherwise (fg.recent). While the
// user is active a job also starts only after the gate has rested
// yieldRest times as long as the job before it ran, or once the user
// goes away, or when urgent says the work costs the user more the longer
// it runs.
type yieldGate struct {
	clk clock.Clock
	fg  *foreground
	// urgent, if set, is asked before each rest (by one job at a time);
	// true skips the rest.
	urgent func() bool
	slot   chan struct{}
	next   time.Time // no job starts before this while the user is active; guarded by slot
}

func newYieldGate(clk clock.Clock, fg *foreground) *yieldGate {
	return &yieldGate{clk: clk, fg: fg, slot: make(chan struct{}, 1)}
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

// enter, while the volume's user is active, waits until no other job of
// the gate runs and the gate has rested, and returns the function that
// ends the job; otherwise it returns at once.
func (g *yieldGate) enter(ctx context.Context) (done func(), err error) {
	if !g.fg.recent(g.clk.Now()) {
		return func() {}, nil
	}
	select {
	case g.slot <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := g.rest(ctx); err != nil {
		<-g.slot
		return nil, err
	}
	start := g.clk.Now()
	return func() {
		end := g.clk.Now()
		g.next = end.Add(yieldRest * end.Sub(start))
		<-g.slot
	}, nil
}

// rest waits until g.next, or until the user has gone away (checked at
// least every foregroundWindow), unless the work is urgent. The caller
// holds the slot.
func (g *yieldGate) rest(ctx context.Context) error {
	if g.urgent != nil && g.urgent() {
		return nil
	}
	for {
		now := g.clk.Now()
		wait := min(g.next.Sub(now), foregroundWindow)
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
