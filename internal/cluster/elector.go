package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Elector holds one named lease for one holder: Step takes or renews it
// once, Run keeps it and runs a function while it is held.
type Elector struct {
	Leases *Leases
	Name   string
	Holder string
	Logger *slog.Logger

	mu   sync.Mutex
	held Lease // the last holding taken or renewed (zero: none)
}

// Step acquires the lease when the elector holds none and renews it when
// it does. It returns the holding and whether it is held at the clock's
// now. A renewal refused with ErrLeaseLost ends the holding (the next
// Step tries to acquire again); a renewal that fails otherwise (the store
// unreachable) keeps the holding until its expiry, and returns the error.
func (e *Elector) Step(ctx context.Context) (Lease, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.Leases.Clock.Now()
	if e.held.Held(now) {
		l, err := e.Leases.Renew(ctx, e.held)
		switch {
		case err == nil:
			e.held = l
			return l, true, nil
		case errors.Is(err, ErrLeaseLost):
			e.held = Lease{}
			return Lease{}, false, err
		default:
			return e.held, e.held.Held(e.Leases.Clock.Now()), err
		}
	}
	l, ok, err := e.Leases.Acquire(ctx, e.Name, e.Holder)
	if err != nil || !ok {
		e.held = Lease{}
		return l, false, err
	}
	e.held = l
	return l, true, nil
}

// Held returns the elector's current holding and whether it is held at
// the clock's now.
func (e *Elector) Held() (Lease, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.held, e.held.Held(e.Leases.Clock.Now())
}

// Run steps every third of the lease's TTL until ctx ends. Whenever it
// takes the lease it starts fn with the holding and a context that ends as
// soon as the holding does (lost, expired without a renewal, or ctx done);
// it waits for fn to return before it tries to take the lease again. When
// ctx ends it releases the lease, so that another node takes over at once.
// fn's writes as holder call Fence with the holding it was given.
func (e *Elector) Run(ctx context.Context, fn func(ctx context.Context, held Lease)) {
	logger := e.Logger
	if logger == nil {
		logger = slog.Default()
	}
	every := e.Leases.ttl() / 3
	var (
		stop func()
		done chan struct{}
		cur  Lease
	)
	end := func() {
		if stop != nil {
			stop()
			<-done
			stop, done = nil, nil
		}
	}
	defer func() {
		end()
		if l, ok := e.Held(); ok {
			if err := e.Leases.Release(context.WithoutCancel(ctx), l); err != nil {
				logger.Warn("release lease", "lease", e.Name, "err", err)
			}
		}
	}()
	for ctx.Err() == nil {
		l, ok, err := e.Step(ctx)
		if err != nil && ctx.Err() == nil {
			logger.Warn("lease", "lease", e.Name, "holder", e.Holder, "err", err)
		}
		if stop != nil && (!ok || l.Epoch != cur.Epoch) {
			logger.Info("lease lost", "lease", e.Name, "holder", e.Holder, "epoch", cur.Epoch)
			end()
		}
		if ok && stop == nil {
			cur = l
			logger.Info("lease taken", "lease", e.Name, "holder", e.Holder, "epoch", l.Epoch)
			fctx, cancel := context.WithCancel(ctx)
			stop, done = cancel, make(chan struct{})
			go func(held Lease, done chan struct{}) {
				defer close(done)
				fn(fctx, held)
			}(l, done)
		}
		wait := every
		if ok {
			// Wake in time to end fn if the next renewals fail.
			if d := l.Expiry.Sub(e.Leases.Clock.Now()); d < wait {
				wait = d
			}
		}
		wait = max(wait, time.Millisecond)
		tm := e.Leases.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-tm.C():
		}
		tm.Stop()
	}
}
