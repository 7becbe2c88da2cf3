package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"coffer/internal/store"
)

// Backend keeps a queue's tasks: the seam between the queue's rules
// (Queue: what a lease, an ack, a nack, a cancel mean; fencing by owner
// and epoch) and where the tasks live. Objects keeps them as objects of any
// store.Store (SQLite, memstore: one node); store/postgres keeps them in a
// table of their own and claims with FOR UPDATE SKIP LOCKED, so that many
// workers on many nodes claim at once without waiting on each other.
//
// The methods that take a store.Tx run in that transaction, of the store
// the backend belongs to, so that a task is enqueued with its job record
// and acked with its result, atomically. Claim runs its own transaction.
// The queue's job/jobtest suite checks every backend.
type Backend interface {
	// Insert adds a new task, in tx. It fails with ErrDuplicate when a
	// task with its ID (case-insensitively) is queued or was finished and
	// not yet forgotten.
	Insert(ctx context.Context, tx store.Tx, t Task) error
	// Get returns the queued task with id, or ErrNoTask.
	Get(ctx context.Context, tx store.Tx, id string) (Task, error)
	// Replace writes t over the queued task with its ID (ErrNoTask if
	// there is none).
	Replace(ctx context.Context, tx store.Tx, t Task) error
	// Finish removes the queued task with id and remembers id as finished
	// at at (ErrNoTask if there is none).
	Finish(ctx context.Context, tx store.Tx, id string, at time.Time) error
	// List returns the queued tasks, oldest first (CreatedAt, then ID);
	// with a target, only those whose Target equals it case-insensitively.
	List(ctx context.Context, tx store.Tx, target string) ([]Task, error)
	// Claim leases to owner, in a transaction of its own, the oldest task
	// that is Ready at now, Claimable by owner (its Node, if any, is the
	// owner's), and whose Target (if any) has no Live lease other than its
	// own: it sets State to StateLeased, LeaseOwner to
	// owner, LeaseExpiry to now+lease and adds one to Attempts (the
	// epoch). It reports false when no task can be claimed. Concurrent
	// Claims never claim one task twice, nor two tasks of one target.
	Claim(ctx context.Context, owner string, now time.Time, lease time.Duration) (Task, bool, error)
	// ForgetDone forgets, in tx, the IDs of tasks finished before cutoff
	// among the next limit finished IDs at most, in the backend's order,
	// from position from ("": the start). It returns how many it forgot
	// and the position to go on from, "" when it has seen them all.
	// Positions are the backend's own (Queue.ForgetDone passes them back).
	ForgetDone(ctx context.Context, tx store.Tx, cutoff time.Time, from string, limit int) (next string, forgotten int, err error)
}

// Objects is the Backend that keeps tasks as objects of a store.Store:
// a task is an object of kind job.task, a finished task's ID one of kind
// job.done. Claim reads every queued task in one Update, which is right for
// one node's queue of at most a few thousand tasks.
//
// A task with a Target also has an entry of kind job.target, keyed by its
// target and ID, written and deleted with the task in the same transaction,
// so that List(target) reads only that target's tasks. A queue that an
// earlier version wrote has tasks without entries: until the marker
// object (kind job.target, key /jobtargets) exists, List scans every task,
// and the first Insert or Claim writes the missing entries and the marker
// in its transaction.
type Objects struct{ Store store.Store }

var _ Backend = Objects{}

// Store kinds of Objects.
const (
	kindTask   = "job.task"
	kindDone   = "job.done"
	kindTarget = "job.target"
)

// targetIndexMarker is the key of the job.target object whose presence
// says that every queued task with a Target has its entry.
const targetIndexMarker = "/jobtargets"

func taskKey(id string) string { return "/jobqueue/" + strings.ToLower(id) }

// targetPrefix is the key prefix of target's entries. The target is
// escaped so that no target's prefix is another's (ARM IDs hold slashes).
func targetPrefix(target string) string {
	return targetIndexMarker + "/" + url.PathEscape(strings.ToLower(target)) + "/"
}

func targetKey(t Task) string { return targetPrefix(t.Target) + strings.ToLower(t.ID) }

// putTargetEntry writes t's entry, if t has a Target.
func putTargetEntry(ctx context.Context, tx store.Tx, t Task) error {
	if t.Target == "" {
		return nil
	}
	if err := tx.Put(ctx, &store.Object{Kind: kindTarget, Key: targetKey(t), Data: []byte("{}")}, store.PutOptions{}); err != nil {
		return fmt.Errorf("index task %s by target: %w", t.ID, err)
	}
	return nil
}

// deleteTargetEntry deletes t's entry, if t has a Target; an entry that
// is missing (a task an earlier version wrote) is no error.
func deleteTargetEntry(ctx context.Context, tx store.Tx, t Task) error {
	if t.Target == "" {
		return nil
	}
	if err := tx.Delete(ctx, kindTarget, targetKey(t)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("unindex task %s: %w", t.ID, err)
	}
	return nil
}

// targetIndexed reports whether the marker exists, in tx.
func targetIndexed(ctx context.Context, tx store.Tx) (bool, error) {
	_, err := tx.Get(ctx, kindTarget, targetIndexMarker)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read target index marker: %w", err)
	}
	return true, nil
}

// indexTargets writes, in the write transaction tx, the entries of the
// queued tasks and then the marker, unless the marker exists: the upgrade
// of a queue an earlier version wrote, once.
func indexTargets(ctx context.Context, tx store.Tx) error {
	done, err := targetIndexed(ctx, tx)
	if err != nil || done {
		return err
	}
	ts, err := scanTasks(ctx, tx)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if err := putTargetEntry(ctx, tx, t); err != nil {
			return err
		}
	}
	if err := tx.Put(ctx, &store.Object{Kind: kindTarget, Key: targetIndexMarker, Data: []byte("{}")}, store.PutOptions{}); err != nil {
		return fmt.Errorf("write target index marker: %w", err)
	}
	return nil
}

func putTask(ctx context.Context, tx store.Tx, t Task, opts store.PutOptions) error {
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode task %s: %w", t.ID, err)
	}
	return tx.Put(ctx, &store.Object{Kind: kindTask, Key: taskKey(t.ID), Data: b}, opts)
}

// Insert implements Backend.
func (b Objects) Insert(ctx context.Context, tx store.Tx, t Task) error {
	if _, err := tx.Get(ctx, kindDone, taskKey(t.ID)); err == nil {
		return ErrDuplicate
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	err := putTask(ctx, tx, t, store.PutOptions{CreateOnly: true})
	if errors.Is(err, store.ErrConflict) {
		return ErrDuplicate
	}
	if err != nil {
		return err
	}
	// The upgrade indexes the new task with the others.
	if err := indexTargets(ctx, tx); err != nil {
		return err
	}
	return putTargetEntry(ctx, tx, t)
}

// Get implements Backend.
func (b Objects) Get(ctx context.Context, tx store.Tx, id string) (Task, error) {
	var t Task
	o, err := tx.Get(ctx, kindTask, taskKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return t, fmt.Errorf("task %s: %w", id, ErrNoTask)
	}
	if err != nil {
		return t, err
	}
	if err := json.Unmarshal(o.Data, &t); err != nil {
		return t, fmt.Errorf("decode task %s: %w", id, err)
	}
	return t, nil
}

// Replace implements Backend.
func (b Objects) Replace(ctx context.Context, tx store.Tx, t Task) error {
	old, err := b.Get(ctx, tx, t.ID)
	if err != nil {
		return err
	}
	if !strings.EqualFold(old.Target, t.Target) {
		if err := deleteTargetEntry(ctx, tx, old); err != nil {
			return err
		}
		if err := putTargetEntry(ctx, tx, t); err != nil {
			return err
		}
	}
	return putTask(ctx, tx, t, store.PutOptions{})
}

// Finish implements Backend.
func (b Objects) Finish(ctx context.Context, tx store.Tx, id string, at time.Time) error {
	t, err := b.Get(ctx, tx, id)
	if err != nil {
		return err
	}
	if err := tx.Delete(ctx, kindTask, taskKey(id)); err != nil {
		return err
	}
	if err := deleteTargetEntry(ctx, tx, t); err != nil {
		return err
	}
	d, err := json.Marshal(doneRecord{DoneAt: at.UTC()})
	if err != nil {
		return err
	}
	return tx.Put(ctx, &store.Object{Kind: kindDone, Key: taskKey(id), Data: d}, store.PutOptions{})
}

// doneRecord is the data of a job.done object.
type doneRecord struct {
	DoneAt time.Time `json:"doneAt"`
}

// List implements Backend. With a target, once the queue is indexed, it
// reads only that target's tasks.
func (b Objects) List(ctx context.Context, tx store.Tx, target string) ([]Task, error) {
	var ts []Task
	var err error
	if target == "" {
		ts, err = scanTasks(ctx, tx)
	} else {
		ts, err = targetTasks(ctx, tx, target)
	}
	if err != nil {
		return nil, err
	}
	sortTasks(ts)
	return ts, nil
}

// targetIDs returns the task IDs of the entries under prefix. It reads
// the keys after prefix in pages, as a range: a prefix Query would be a
// LIKE on SQLite, which no index serves, so it would read every entry.
func targetIDs(ctx context.Context, tx store.Tx, prefix string) ([]string, error) {
	const page = 32
	var ids []string
	for after := prefix; ; {
		objs, err := tx.List(ctx, store.Query{Kind: kindTarget, After: after, Limit: page})
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if !strings.HasPrefix(o.Key, prefix) {
				return ids, nil
			}
			ids = append(ids, strings.TrimPrefix(o.Key, prefix))
		}
		if len(objs) < page {
			return ids, nil
		}
		after = objs[len(objs)-1].Key
	}
}

// scanTasks reads every queued task.
func scanTasks(ctx context.Context, tx store.Tx) ([]Task, error) {
	objs, err := tx.List(ctx, store.Query{Kind: kindTask, Prefix: "/jobqueue/"})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	out := make([]Task, 0, len(objs))
	for _, o := range objs {
		var t Task
		if err := json.Unmarshal(o.Data, &t); err != nil {
			return nil, fmt.Errorf("decode task %s: %w", o.Key, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// targetTasks reads the queued tasks whose Target equals target
// case-insensitively: through its entries, or by a scan of every task if
// the queue is not indexed yet.
func targetTasks(ctx context.Context, tx store.Tx, target string) ([]Task, error) {
	indexed, err := targetIndexed(ctx, tx)
	if err != nil {
		return nil, err
	}
	var ts []Task
	if indexed {
		prefix := targetPrefix(target)
		ids, err := targetIDs(ctx, tx, prefix)
		if err != nil {
			return nil, fmt.Errorf("list tasks of %s: %w", target, err)
		}
		for _, id := range ids {
			t, err := Objects{}.Get(ctx, tx, id)
			if err != nil {
				return nil, fmt.Errorf("indexed task of %s: %w", target, err)
			}
			ts = append(ts, t)
		}
	} else if ts, err = scanTasks(ctx, tx); err != nil {
		return nil, err
	}
	out := ts[:0]
	for _, t := range ts {
		if t.Target != "" && strings.EqualFold(t.Target, target) {
			out = append(out, t)
		}
	}
	return out, nil
}

// sortTasks orders tasks oldest first (CreatedAt, then ID).
func sortTasks(ts []Task) {
	sort.SliceStable(ts, func(i, j int) bool {
		if !ts[i].CreatedAt.Equal(ts[j].CreatedAt) {
			return ts[i].CreatedAt.Before(ts[j].CreatedAt)
		}
		return ts[i].ID < ts[j].ID
	})
}

// Claim implements Backend, in one Update of the store.
func (b Objects) Claim(ctx context.Context, owner string, now time.Time, lease time.Duration) (Task, bool, error) {
	var got Task
	var found bool
	err := b.Store.Update(ctx, func(tx store.Tx) error {
		found = false // a re-run decides afresh
		if err := indexTargets(ctx, tx); err != nil {
			return err
		}
		ts, err := b.List(ctx, tx, "")
		if err != nil {
			return err
		}
		busy := map[string]bool{}
		for _, t := range ts {
			if Live(t, now) && t.Target != "" {
				busy[strings.ToLower(t.Target)] = true
			}
		}
		for _, t := range ts {
			if !Ready(t, now) || !Claimable(t, owner) || (t.Target != "" && busy[strings.ToLower(t.Target)]) {
				continue
			}
			t.State = StateLeased
			t.LeaseOwner = owner
			t.LeaseExpiry = now.Add(lease)
			t.Attempts++
			if err := putTask(ctx, tx, t, store.PutOptions{}); err != nil {
				return err
			}
			got, found = t, true
			return nil
		}
		return nil
	})
	if err != nil {
		return Task{}, false, err
	}
	return got, found, nil
}

// ForgetDone implements Backend: positions are job.done keys, looked at
// in key order.
func (b Objects) ForgetDone(ctx context.Context, tx store.Tx, cutoff time.Time, from string, limit int) (string, int, error) {
	objs, err := tx.List(ctx, store.Query{Kind: kindDone, Prefix: "/jobqueue/", After: from, Limit: limit})
	if err != nil {
		return "", 0, fmt.Errorf("list finished tasks: %w", err)
	}
	n := 0
	for _, o := range objs {
		var d doneRecord
		_ = json.Unmarshal(o.Data, &d) // an unreadable marker is forgotten
		if !d.DoneAt.Before(cutoff) {
			continue
		}
		if err := tx.Delete(ctx, kindDone, o.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", n, fmt.Errorf("forget finished task %s: %w", o.Key, err)
		}
		n++
	}
	if len(objs) < limit {
		return "", n, nil
	}
	return objs[len(objs)-1].Key, n, nil
}
