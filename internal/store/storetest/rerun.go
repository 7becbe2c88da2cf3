package storetest

import (
	"context"
	"errors"

	"coffer/internal/store"
)

// Rerun wraps s so that every Update runs its function twice, as
// PostgreSQL does after a serialization failure: the first run's writes
// are rolled back, then the function runs again from the start on a new
// transaction, and only the second run commits (or fails). A function that
// fails on its first run fails at once. Tests of code that writes through
// Update run on it to find functions that are not safe to re-run (an
// append to an outer slice, a channel send, a file written inside the
// function).
func Rerun(s store.Store) store.Store { return rerun{Store: s} }

type rerun struct {
	store.Store
	between func(ctx context.Context)
}

// errFirstRun rolls back the first run.
var errFirstRun = errors.New("storetest.Rerun: first run rolled back")

func (r rerun) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	err := r.Store.Update(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errFirstRun
	})
	if !errors.Is(err, errFirstRun) {
		return err
	}
	if r.between != nil {
		r.between(ctx)
	}
	return r.Store.Update(ctx, fn)
}

// RerunWith wraps s as Rerun does and calls between after each Update's
// first run has rolled back, before the second begins: a concurrent
// writer that commits meanwhile, as when PostgreSQL re-runs a function
// that lost to it. The second run must see what between wrote and decide
// afresh. between may write through the wrapped store (its own Updates
// call between again: a test arms it for the one it means).
func RerunWith(s store.Store, between func(ctx context.Context)) store.Store {
	return rerun{Store: s, between: between}
}
