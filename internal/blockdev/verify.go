package blockdev

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"coffer/internal/chunk"
)

// VerifyResult is the outcome of VerifySnapshot.
type VerifyResult struct {
	Pages    int64 // index pages read
	Chunks   int64 // distinct data chunks checked
	Problems []VerifyProblem
}

// VerifyProblem is one chunk that could not be read or did not match its ID.
type VerifyProblem struct {
	Block int64 // first block referencing the chunk; -1 for a record or page
	ID    chunk.ID
	Err   error
}

// VerifySnapshot walks a snapshot's manifest and reads back every chunk it
// references (record, pages, data) through the chunk store, which checks
// each against its ID. It returns an error wrapping ErrCorrupt when any
// problem was found (listed in the result); other errors mean the check
// could not run.
func (e *Engine) VerifySnapshot(ctx context.Context, snapshotID string) (VerifyResult, error) {
	var res VerifyResult
	si, err := e.StatSnapshot(ctx, snapshotID)
	if err != nil {
		return res, fmt.Errorf("verify: %w", err)
	}
	rec, err := e.loadRecord(ctx, si.Record)
	if err != nil {
		res.Problems = append(res.Problems, VerifyProblem{Block: -1, ID: si.Record, Err: err})
		return res, fmt.Errorf("verify %s: %w", snapshotID, err)
	}
	var (
		mu    sync.Mutex
		seen  = map[chunk.ID]struct{}{}
		count atomic.Int64
	)
	problem := func(p VerifyProblem) {
		mu.Lock()
		res.Problems = append(res.Problems, p)
		mu.Unlock()
	}
	type job struct {
		b  int64
		id chunk.ID
	}
	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan job, e.opts.Workers*4)
	g.Go(func() error {
		defer close(jobs)
		for p := range int64(len(rec.Pages)) {
			if rec.Pages[p].IsZero() {
				continue
			}
			entries, err := e.loadPage(gctx, rec, p)
			res.Pages++
			if err != nil {
				problem(VerifyProblem{Block: -1, ID: rec.Pages[p], Err: err})
				continue
			}
			for i, id := range entries {
				if id.IsZero() {
					continue
				}
				if _, ok := seen[id]; ok {
					continue
				}
				seen[id] = struct{}{}
				select {
				case jobs <- job{p*EntriesPerPage + int64(i), id}:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		}
		return nil
	})
	for range e.opts.Workers {
		g.Go(func() error {
			for j := range jobs {
				count.Add(1)
				if _, err := e.chunks.Get(gctx, j.id); err != nil {
					if gctx.Err() != nil {
						return gctx.Err()
					}
					problem(VerifyProblem{Block: j.b, ID: j.id, Err: err})
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, fmt.Errorf("verify %s: %w", snapshotID, err)
	}
	res.Chunks = count.Load()
	if len(res.Problems) > 0 {
		return res, fmt.Errorf("verify %s: %d bad chunks: %w", snapshotID, len(res.Problems), ErrCorrupt)
	}
	return res, nil
}
