package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"coffer/internal/job"
	"coffer/internal/store"
)

// NodeGone reports, reading in tx, whether the task t, bound to its Node,
// can wait for that node no longer: a non-nil cause (which names the node
// and when it was last seen) once the node has been down longer than the
// grace allowed to it; nil while it runs or within the grace. A task
// queued later (Task.CreatedAt) is never gone before an earlier one of the
// same node.
type NodeGone func(ctx context.Context, tx store.Tx, t job.Task) (cause, err error)

// FailStranded fails the queued tasks bound to a node (Task.Node) that
// gone reports gone: each is removed from the queue, in a transaction that
// reads the node and the task afresh and calls fence (when set: the lease
// of the one node that sweeps), and handed to Dead with gone's cause, as a
// task out of deliveries is (job.Queue.AbandonTx: a task the gone node
// had leased goes too, fenced against that node's worker should it still
// run). A task whose node came back within the grace is left alone: it
// runs there as usual. Tasks of the types in WaitForNode are never failed
// this way. It reports how many tasks it failed.
//
// anyGone, when set, is asked first, cheaply (without reading the queue),
// whether gone could report any node gone now; when it reports false the
// queue is not read at all, so that a healthy cluster's sweeps cost one
// small read each.
//
// Several nodes may sweep at once: the removal happens once, and only the
// node that removed a task fails it.
func (p *Pool) FailStranded(ctx context.Context, anyGone func(ctx context.Context) (bool, error), gone NodeGone,
	fence func(ctx context.Context, tx store.Tx) error) (int, error) {
	if anyGone != nil {
		some, err := anyGone(ctx)
		if err != nil {
			return 0, fmt.Errorf("fail stranded tasks: %w", err)
		}
		if !some {
			return 0, nil
		}
	}
	ts, err := p.Queue.Tasks(ctx)
	if err != nil {
		return 0, fmt.Errorf("fail stranded tasks: %w", err)
	}
	// One read per node, for its oldest task (Tasks lists the oldest
	// first), says which may be gone; the others' tasks are not touched.
	down := map[string]bool{}
	failed := 0
	for _, t := range ts {
		if t.Node == "" || p.WaitForNode[t.Type] {
			continue
		}
		node := strings.ToLower(t.Node)
		isDown, seen := down[node]
		if !seen {
			err := p.Queue.Store.View(ctx, func(tx store.Tx) error {
				cause, err := gone(ctx, tx, t)
				isDown = cause != nil
				return err
			})
			if err != nil {
				return failed, fmt.Errorf("fail stranded tasks: node %s: %w", t.Node, err)
			}
			down[node] = isDown
		}
		if !isDown {
			continue
		}
		var cause error
		var removed job.Task
		err := p.Queue.Store.Update(ctx, func(tx store.Tx) error {
			cause = nil // a re-run decides afresh
			if fence != nil {
				if err := fence(ctx, tx); err != nil {
					return err
				}
			}
			c, err := gone(ctx, tx, t)
			if err != nil || c == nil {
				return err
			}
			cur, ok, err := p.Queue.AbandonTx(ctx, tx, t.ID, t.Node)
			if err != nil || !ok {
				return err
			}
			cause, removed = c, cur
			return nil
		})
		if errors.Is(err, job.ErrNoTask) {
			continue // it ended meanwhile
		}
		if err != nil {
			return failed, fmt.Errorf("fail stranded task %s: %w", t.ID, err)
		}
		if cause == nil {
			continue
		}
		p.dead(ctx, removed, cause)
		failed++
	}
	return failed, nil
}
