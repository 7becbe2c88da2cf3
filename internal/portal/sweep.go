package portal

import (
	"context"
	"errors"
	"sync"
	"time"

	"coffer/internal/store"
)

// sweeper deletes the expired rows of one kind of the portal's rows
// (sessions, failed sign-in counts) a batch at a time: at most once per
// sweepEvery, the rows among the next sweepBatch of a cursor that walks
// the whole kind, so that each write that adds rows pays for a bounded
// share of the clean-up and every row is visited in turn. A failure is
// left to the next sweep (the rows are expired whether or not they are
// deleted).
type sweeper struct {
	db           store.Store
	kind, prefix string
	// expired reports whether the row data is expired at now (a row that
	// does not decode is).
	expired func(data []byte, now time.Time) bool

	mu    sync.Mutex
	at    time.Time
	after string // the cursor: the last key read
}

// Sweep bookkeeping: see sweeper.
const (
	sweepEvery = time.Minute
	sweepBatch = 100
)

func (sw *sweeper) sweep(ctx context.Context, now time.Time) {
	sw.mu.Lock()
	if now.Sub(sw.at) < sweepEvery {
		sw.mu.Unlock()
		return
	}
	sw.at = now
	after := sw.after
	sw.mu.Unlock()
	last := ""
	_ = sw.db.Update(ctx, func(tx store.Tx) error {
		objs, err := tx.List(ctx, store.Query{Kind: sw.kind, Prefix: sw.prefix, After: after, Limit: sweepBatch})
		if err != nil {
			return err
		}
		last = ""
		for _, o := range objs {
			last = o.Key
			if !sw.expired(o.Data, now) {
				continue
			}
			if err := tx.Delete(ctx, sw.kind, o.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		if len(objs) < sweepBatch {
			last = "" // the end: start again from the first row
		}
		return nil
	})
	sw.mu.Lock()
	sw.after = last
	sw.mu.Unlock()
}
