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
func Rerun(s store.Store) store.Store { return rerun{s} }

type rerun struct{ store.Store }

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
	return r.Store.Update(ctx, fn)
}
