package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"coffer/internal/clock"
	"coffer/internal/store"
)

// Store kinds of the queue.
const (
	kindTask = "job.task"
	kindDone = "job.done"
)

// Task states.
const (
	StatePending = "Pending"
	StateLeased  = "Leased"
)

// Task is one unit of work in the queue.
type Task struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	// Target serializes tasks: at most one task per Target is leased at a
	// time. Empty means no serialization.
	Target  string          `json:"target,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`

	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	MaxAttempts int       `json:"maxAttempts"`
	NotBefore   time.Time `json:"notBefore"`
	CreatedAt   time.Time `json:"createdAt"`
	LeaseOwner  string    `json:"leaseOwner,omitempty"`
	LeaseExpiry time.Time `json:"leaseExpiry,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	Canceled    bool      `json:"canceled,omitempty"`
}

// Errors of the queue, matched with errors.Is.
var (
	// ErrDuplicate: a task with this ID is queued or was completed.
	ErrDuplicate = errors.New("duplicate task")
	// ErrLeaseLost: the lease expired and another worker took the task.
	ErrLeaseLost = errors.New("task lease lost")
	// ErrNoTask: the task does not exist (any more).
	ErrNoTask = errors.New("task not found")
)

// Queue is the durable task queue. Create it with NewQueue.
type Queue struct {
	Store store.Store
	Clock clock.Clock
	// LeaseDuration is how long a lease lasts unless extended.
	LeaseDuration time.Duration
	// DefaultMaxAttempts is the delivery limit of tasks that set none.
	DefaultMaxAttempts int
	// Backoff is the delay before retry number attempt (1-based).
	Backoff func(attempt int) time.Duration

	mu     sync.Mutex
	notify chan struct{}
}

// NewQueue returns a queue with a 5-minute lease, 3 deliveries and
// exponential backoff from 10 seconds.
func NewQueue(st store.Store, clk clock.Clock) *Queue {
	return &Queue{Store: st, Clock: clk, LeaseDuration: 5 * time.Minute, DefaultMaxAttempts: 3,
		Backoff: func(attempt int) time.Duration {
			d := 10 * time.Second << min(attempt-1, 8)
			return d
		}, notify: make(chan struct{}, 1)}
}

func taskKey(id string) string { return "/jobqueue/" + strings.ToLower(id) }

// Notify returns a channel that receives a value when tasks are added or
// released; workers wait on it between leases.
func (q *Queue) Notify() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.notify == nil {
		q.notify = make(chan struct{}, 1)
	}
	return q.notify
}

func (q *Queue) wake() {
	q.mu.Lock()
	if q.notify == nil {
		q.notify = make(chan struct{}, 1)
	}
	c := q.notify
	q.mu.Unlock()
	select {
	case c <- struct{}{}:
	default:
	}
}

func putTask(ctx context.Context, tx store.Tx, t Task, opts store.PutOptions) error {
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode task %s: %w", t.ID, err)
	}
	return tx.Put(ctx, &store.Object{Kind: kindTask, Key: taskKey(t.ID), Data: b}, opts)
}

func getTask(ctx context.Context, tx store.Tx, id string) (Task, error) {
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

// EnqueueTx adds t in the caller's transaction (so that a job record and
// its task are written together). A task whose ID is queued or was
// completed is not added again: the error wraps ErrDuplicate. Call Wake
// after the transaction commits.
func (q *Queue) EnqueueTx(ctx context.Context, tx store.Tx, t Task) error {
	if t.ID == "" || t.Type == "" {
		return fmt.Errorf("enqueue: task needs an ID and a type")
	}
	if _, err := tx.Get(ctx, kindDone, taskKey(t.ID)); err == nil {
		return fmt.Errorf("enqueue %s: %w", t.ID, ErrDuplicate)
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("enqueue %s: %w", t.ID, err)
	}
	now := q.Clock.Now().UTC()
	t.State = StatePending
	t.Attempts = 0
	t.CreatedAt = now
	if t.NotBefore.IsZero() {
		t.NotBefore = now
	}
	if t.MaxAttempts <= 0 {
		t.MaxAttempts = q.DefaultMaxAttempts
	}
	err := putTask(ctx, tx, t, store.PutOptions{CreateOnly: true})
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("enqueue %s: %w", t.ID, ErrDuplicate)
	}
	if err != nil {
		return fmt.Errorf("enqueue %s: %w", t.ID, err)
	}
	return nil
}

// Enqueue adds t in its own transaction (see EnqueueTx).
func (q *Queue) Enqueue(ctx context.Context, t Task) error {
	err := q.Store.Update(ctx, func(tx store.Tx) error { return q.EnqueueTx(ctx, tx, t) })
	if err == nil {
		q.wake()
	}
	return err
}

// Wake tells waiting workers that tasks may be ready.
func (q *Queue) Wake() { q.wake() }

func (q *Queue) list(ctx context.Context, tx store.Tx) ([]Task, error) {
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
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Tasks returns the queued tasks (pending and leased), oldest first.
func (q *Queue) Tasks(ctx context.Context) ([]Task, error) {
	var out []Task
	err := q.Store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = q.list(ctx, tx)
		return err
	})
	return out, err
}

// ActiveTx reports whether a task of one of the given types (all types when
// none are given) for target is queued or running.
func (q *Queue) ActiveTx(ctx context.Context, tx store.Tx, target string, types ...string) (bool, error) {
	ts, err := q.list(ctx, tx)
	if err != nil {
		return false, err
	}
	for _, t := range ts {
		if t.Target != "" && strings.EqualFold(t.Target, target) && (len(types) == 0 || contains(types, t.Type)) {
			return true, nil
		}
	}
	return false, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Lease takes the oldest ready task for owner: pending with NotBefore
// reached, or leased with an expired lease, and whose Target has no other
// live lease. It reports false when no task is ready.
func (q *Queue) Lease(ctx context.Context, owner string) (Task, bool, error) {
	var got Task
	found := false
	err := q.Store.Update(ctx, func(tx store.Tx) error {
		now := q.Clock.Now().UTC()
		ts, err := q.list(ctx, tx)
		if err != nil {
			return err
		}
		busy := map[string]bool{}
		for _, t := range ts {
			if t.State == StateLeased && now.Before(t.LeaseExpiry) && t.Target != "" {
				busy[strings.ToLower(t.Target)] = true
			}
		}
		for _, t := range ts {
			ready := (t.State == StatePending && !now.Before(t.NotBefore)) ||
				(t.State == StateLeased && !now.Before(t.LeaseExpiry))
			if !ready || (t.Target != "" && busy[strings.ToLower(t.Target)]) {
				continue
			}
			t.State = StateLeased
			t.LeaseOwner = owner
			t.LeaseExpiry = now.Add(q.LeaseDuration)
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
		return Task{}, false, fmt.Errorf("lease: %w", err)
	}
	return got, found, nil
}

// NextReady returns when the earliest not-yet-ready task becomes ready
// (a pending task's NotBefore or a lease's expiry), or the zero time.
func (q *Queue) NextReady(ctx context.Context) (time.Time, error) {
	ts, err := q.Tasks(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, t := range ts {
		at := t.NotBefore
		if t.State == StateLeased {
			at = t.LeaseExpiry
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, nil
}

// owned checks that t is still leased by its owner.
func owned(cur, t Task) error {
	if cur.State != StateLeased || cur.LeaseOwner != t.LeaseOwner || cur.Attempts != t.Attempts {
		return fmt.Errorf("task %s: %w", t.ID, ErrLeaseLost)
	}
	return nil
}

// AckTx removes a finished task in the caller's transaction (so that the
// result and the ack commit together) and remembers its ID for
// de-duplication.
func (q *Queue) AckTx(ctx context.Context, tx store.Tx, t Task) error {
	cur, err := getTask(ctx, tx, t.ID)
	if err != nil {
		return err
	}
	if err := owned(cur, t); err != nil {
		return err
	}
	if err := tx.Delete(ctx, kindTask, taskKey(t.ID)); err != nil {
		return fmt.Errorf("ack %s: %w", t.ID, err)
	}
	b, _ := json.Marshal(struct {
		DoneAt time.Time `json:"doneAt"`
	}{q.Clock.Now().UTC()})
	return tx.Put(ctx, &store.Object{Kind: kindDone, Key: taskKey(t.ID), Data: b}, store.PutOptions{})
}

// Ack removes a finished task.
func (q *Queue) Ack(ctx context.Context, t Task) error {
	err := q.Store.Update(ctx, func(tx store.Tx) error { return q.AckTx(ctx, tx, t) })
	q.wake() // its target is free again
	return err
}

// Nack releases a failed delivery: the task is retried after the backoff,
// unless it has reached its delivery limit or was cancelled, in which case
// it is removed and Nack reports dead = true.
func (q *Queue) Nack(ctx context.Context, t Task, cause error) (dead bool, err error) {
	err = q.Store.Update(ctx, func(tx store.Tx) error {
		cur, err := getTask(ctx, tx, t.ID)
		if err != nil {
			return err
		}
		if err := owned(cur, t); err != nil {
			return err
		}
		if cur.Canceled || cur.Attempts >= cur.MaxAttempts {
			dead = true
			return q.AckTx(ctx, tx, t)
		}
		cur.State = StatePending
		cur.LeaseOwner, cur.LeaseExpiry = "", time.Time{}
		if cause != nil {
			cur.LastError = cause.Error()
		}
		cur.NotBefore = q.Clock.Now().UTC().Add(q.Backoff(cur.Attempts))
		return putTask(ctx, tx, cur, store.PutOptions{})
	})
	q.wake()
	return dead, err
}

// Extend renews a lease (long tasks call it as they make progress).
func (q *Queue) Extend(ctx context.Context, t Task) (Task, error) {
	err := q.Store.Update(ctx, func(tx store.Tx) error {
		cur, err := getTask(ctx, tx, t.ID)
		if err != nil {
			return err
		}
		if err := owned(cur, t); err != nil {
			return err
		}
		cur.LeaseExpiry = q.Clock.Now().UTC().Add(q.LeaseDuration)
		t = cur
		return putTask(ctx, tx, cur, store.PutOptions{})
	})
	return t, err
}

// Cancel cancels a task: a pending task is removed at once (reported by
// removed = true); a leased one is marked so that the worker's next Nack
// drops it and Canceled reports true to it.
func (q *Queue) Cancel(ctx context.Context, id string) (removed bool, err error) {
	err = q.Store.Update(ctx, func(tx store.Tx) error {
		removed, err = q.CancelPendingTx(ctx, tx, id)
		if err != nil || removed {
			return err
		}
		cur, err := getTask(ctx, tx, id)
		if err != nil {
			return err
		}
		cur.Canceled = true
		return putTask(ctx, tx, cur, store.PutOptions{})
	})
	return removed, err
}

// CancelPendingTx removes a task that no worker has leased, in the
// caller's transaction, and reports whether it did; a leased task is left
// as it is. A task that is not queued is ErrNoTask.
func (q *Queue) CancelPendingTx(ctx context.Context, tx store.Tx, id string) (bool, error) {
	cur, err := getTask(ctx, tx, id)
	if err != nil {
		return false, err
	}
	if cur.State != StatePending {
		return false, nil
	}
	if err := tx.Delete(ctx, kindTask, taskKey(id)); err != nil {
		return false, err
	}
	return true, tx.Put(ctx, &store.Object{Kind: kindDone, Key: taskKey(id), Data: []byte(`{}`)}, store.PutOptions{})
}

// Canceled reports whether the task was cancelled while leased.
func (q *Queue) Canceled(ctx context.Context, id string) (bool, error) {
	var c bool
	err := q.Store.View(ctx, func(tx store.Tx) error {
		cur, err := getTask(ctx, tx, id)
		if err != nil {
			return err
		}
		c = cur.Canceled
		return nil
	})
	return c, err
}

// ErrInterrupted is the cause given for tasks that were interrupted by a
// stop as many times as their delivery limit allows.
var ErrInterrupted = errors.New("the task was interrupted by a server stop too many times")

// Recover is called once at start, before workers run: tasks leased by a
// process that is gone are released so that they are delivered again at
// once (the attempt they used counts towards the delivery limit). Tasks
// that have used up their deliveries are removed and returned as dead, so
// that their jobs can be failed. Coffer runs one scheduler and one worker
// pool per metadata store; a multi-node deployment would let the leases
// expire instead.
func (q *Queue) Recover(ctx context.Context) (released int, dead []Task, err error) {
	err = q.Store.Update(ctx, func(tx store.Tx) error {
		ts, err := q.list(ctx, tx)
		if err != nil {
			return err
		}
		for _, t := range ts {
			if t.State != StateLeased {
				continue
			}
			if t.Attempts >= t.MaxAttempts || t.Canceled {
				if err := q.AckTx(ctx, tx, t); err != nil {
					return err
				}
				t.LastError = ErrInterrupted.Error()
				dead = append(dead, t)
				continue
			}
			t.State = StatePending
			t.LeaseOwner, t.LeaseExpiry = "", time.Time{}
			t.NotBefore = q.Clock.Now().UTC()
			if err := putTask(ctx, tx, t, store.PutOptions{}); err != nil {
				return err
			}
			released++
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("recover tasks: %w", err)
	}
	q.wake()
	return released, dead, nil
}

// ForgetDone drops the de-duplication markers of tasks finished before
// cutoff.
func (q *Queue) ForgetDone(ctx context.Context, cutoff time.Time) error {
	return q.Store.Update(ctx, func(tx store.Tx) error {
		objs, err := tx.List(ctx, store.Query{Kind: kindDone, Prefix: "/jobqueue/"})
		if err != nil {
			return err
		}
		for _, o := range objs {
			var d struct {
				DoneAt time.Time `json:"doneAt"`
			}
			_ = json.Unmarshal(o.Data, &d)
			if d.DoneAt.Before(cutoff) {
				if err := tx.Delete(ctx, kindDone, o.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
			}
		}
		return nil
	})
}
