package blockdev

import (
	"context"
	"sync/atomic"
	"time"
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

// yieldGate lets one job of some background work run at a time while the
// volume's user is active, and any number otherwise: with every worker
// hashing, compressing or copying, the user's requests wait for a core.
type yieldGate chan struct{}

func newYieldGate() yieldGate { return make(yieldGate, 1) }

// enter, while the volume's user is active (recent), waits until no other
// job of the gate runs and returns the function that ends the job;
// otherwise it returns at once.
func (g yieldGate) enter(ctx context.Context, recent bool) (done func(), err error) {
	if !recent {
		return func() {}, nil
	}
	select {
	case g <- struct{}{}:
		return func() { <-g }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
