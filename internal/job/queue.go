package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"coffer/internal/clock"
	"coffer/internal/store"
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
	// Node, when set, is the only node whose workers may lease the task
	// (the home node of the disk it works on): owners named Node/…
	// (see OwnerNode). Empty: any node.
	Node string `json:"node,omitempty"`

	State string `json:"state"`
	// Attempts counts the task's leases: it is the lease's epoch, which
	// every ack, nack and renewal checks along with the owner, so that a
	// worker whose lease expired (a pause, a lost node) cannot act on a
	// task that another worker now holds.
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
	// ErrCanceled is the cause of a running task's context once the task
	// was cancelled (context.Cause): its handler cleans up as for a
	// failure and ends its job Cancelled.
	ErrCanceled = errors.New("task cancelled")
)

// Queue is the durable task queue: the rules of leases, acks, retries and
// cancellation, over a Backend that keeps the tasks. Create it with
// NewQueue.
type Queue struct {
	Store store.Store
	// Backend keeps the tasks; NewQueue sets Objects on Store.
	Backend Backend
	Clock   clock.Clock
	// LeaseDuration is how long a lease lasts unless extended.
	LeaseDuration time.Duration
	// DefaultMaxAttempts is the delivery limit of tasks that set none.
	DefaultMaxAttempts int
	// Backoff is the delay before retry number attempt (1-based).
	Backoff func(attempt int) time.Duration
	// ForgetBatch bounds the finished IDs one transaction of ForgetDone
	// looks at (0: DefaultForgetBatch).
	ForgetBatch int

	mu     sync.Mutex
	notify chan struct{}
}

// NewQueue returns a queue whose tasks are objects of st (Objects), with a
// 5-minute lease, 3 deliveries and exponential backoff from 10 seconds.
func NewQueue(st store.Store, clk clock.Clock) *Queue {
	return &Queue{Store: st, Backend: Objects{Store: st}, Clock: clk, LeaseDuration: 5 * time.Minute, DefaultMaxAttempts: 3,
		Backoff: func(attempt int) time.Duration {
			d := 10 * time.Second << min(attempt-1, 8)
			return d
		}, notify: make(chan struct{}, 1)}
}

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

// EnqueueTx adds t in the caller's transaction (so that a job record and
// its task are written together). A task whose ID is queued or was
// completed is not added again: the error wraps ErrDuplicate. Call Wake
// after the transaction commits.
func (q *Queue) EnqueueTx(ctx context.Context, tx store.Tx, t Task) error {
	if t.ID == "" || t.Type == "" {
		return fmt.Errorf("enqueue: task needs an ID and a type")
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
	if err := q.Backend.Insert(ctx, tx, t); err != nil {
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

// Tasks returns the queued tasks (pending and leased), oldest first.
func (q *Queue) Tasks(ctx context.Context) ([]Task, error) {
	var out []Task
	err := q.Store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = q.Backend.List(ctx, tx, "")
		return err
	})
	return out, err
}

// ActiveTx reports whether a task of one of the given types (all types when
// none are given) for target is queued or running.
func (q *Queue) ActiveTx(ctx context.Context, tx store.Tx, target string, types ...string) (bool, error) {
	if target == "" {
		return false, nil
	}
	ts, err := q.Backend.List(ctx, tx, target)
	if err != nil {
		return false, err
	}
	for _, t := range ts {
		if len(types) == 0 || slices.Contains(types, t.Type) {
			return true, nil
		}
	}
	return false, nil
}

// Lease takes the oldest ready task for owner (see Ready) whose Target has
// no other live lease, and leases it for LeaseDuration. It reports false
// when no task is ready. Concurrent Leases, from any number of processes
// sharing the store, never hand out one lease twice.
func (q *Queue) Lease(ctx context.Context, owner string) (Task, bool, error) {
	t, ok, err := q.Backend.Claim(ctx, owner, q.Clock.Now().UTC(), q.LeaseDuration)
	if err != nil {
		return Task{}, false, fmt.Errorf("lease: %w", err)
	}
	return t, ok, nil
}

// Ready reports whether t may be leased at now (its target aside): a
// pending task whose NotBefore has come, or a leased one whose lease has
// expired.
func Ready(t Task, now time.Time) bool {
	return (t.State == StatePending && !now.Before(t.NotBefore)) ||
		(t.State == StateLeased && !now.Before(t.LeaseExpiry))
}

// OwnerNode is the node part of a lease owner named NODE/PROCESS (the
// whole owner when it has no slash).
func OwnerNode(owner string) string {
	node, _, _ := strings.Cut(owner, "/")
	return node
}

// Claimable reports whether owner may lease t, by its Node.
func Claimable(t Task, owner string) bool {
	return t.Node == "" || strings.EqualFold(t.Node, OwnerNode(owner))
}

// Live reports whether t holds a lease that has not expired at now.
func Live(t Task, now time.Time) bool {
	return t.State == StateLeased && now.Before(t.LeaseExpiry)
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

// ackNote is what NoteAcks puts in a running task's context.
type ackNote struct {
	id    string
	asked atomic.Bool
}

type ackNoteKey struct{}

// NoteAcks returns ctx with a note that AckTx (and so CompleteTx), called
// under it for the task id, marks, and a function that reports whether it
// was marked: the worker running the task tells, by it, the handler's own
// ack from another's removal of the task.
func NoteAcks(ctx context.Context, id string) (context.Context, func() bool) {
	n := &ackNote{id: id}
	return context.WithValue(ctx, ackNoteKey{}, n), n.asked.Load
}

// AckTx removes a finished task in the caller's transaction (so that the
// result and the ack commit together) and remembers its ID for
// de-duplication.
func (q *Queue) AckTx(ctx context.Context, tx store.Tx, t Task) error {
	if n, ok := ctx.Value(ackNoteKey{}).(*ackNote); ok && strings.EqualFold(n.id, t.ID) {
		n.asked.Store(true)
	}
	cur, err := q.Backend.Get(ctx, tx, t.ID)
	if err != nil {
		return err
	}
	if err := owned(cur, t); err != nil {
		return err
	}
	if err := q.Backend.Finish(ctx, tx, t.ID, q.Clock.Now().UTC()); err != nil {
		return fmt.Errorf("ack %s: %w", t.ID, err)
	}
	return nil
}

// CompleteTx acks t in the caller's transaction as the end of the work
// written there too (a job's or an operation's outcome). Unlike AckTx, a
// task that is gone is ErrLeaseLost as well: tasks are never queued twice,
// so another worker took the task over and finished it.
func (q *Queue) CompleteTx(ctx context.Context, tx store.Tx, t Task) error {
	err := q.AckTx(ctx, tx, t)
	if errors.Is(err, ErrNoTask) {
		return fmt.Errorf("task %s was finished by another worker: %w", t.ID, ErrLeaseLost)
	}
	return err
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
		dead = false // a re-run decides afresh
		cur, err := q.Backend.Get(ctx, tx, t.ID)
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
		return q.Backend.Replace(ctx, tx, cur)
	})
	q.wake()
	return dead, err
}

// Later is the error a task's handler returns when its work waits on
// something else (another task's job): the worker releases the task to be
// delivered again After from now (Defer), which does not count as a failed
// delivery.
type Later struct{ After time.Duration }

func (l *Later) Error() string { return fmt.Sprintf("the task waits; run it again in %s", l.After) }

// Defer releases a leased task to be delivered again after d. The
// delivery it used does not count towards its limit (MaxAttempts grows
// with Attempts, which stays the lease's epoch: a later lease is still a
// newer one). Like Ack, it is refused with ErrLeaseLost when t's lease
// has passed to another worker.
func (q *Queue) Defer(ctx context.Context, t Task, d time.Duration) error {
	_, err := q.leased(ctx, t, func(cur *Task) {
		cur.State = StatePending
		cur.LeaseOwner, cur.LeaseExpiry = "", time.Time{}
		cur.NotBefore = q.Clock.Now().UTC().Add(d)
		cur.MaxAttempts++
	})
	if err != nil {
		return fmt.Errorf("defer %s: %w", t.ID, err)
	}
	q.wake()
	return nil
}

// HeldTx checks, in the caller's transaction, that t's lease is still its
// worker's (ErrLeaseLost otherwise): work written in tx commits only while
// the lease holds, as with CompleteTx, but the task stays leased.
func (q *Queue) HeldTx(ctx context.Context, tx store.Tx, t Task) error {
	cur, err := q.Backend.Get(ctx, tx, t.ID)
	if errors.Is(err, ErrNoTask) {
		return fmt.Errorf("task %s was finished by another worker: %w", t.ID, ErrLeaseLost)
	}
	if err != nil {
		return err
	}
	return owned(cur, t)
}

// Renew is a running task's watch (see worker.Pool): one read of the task
// gives both its lease and its cancel mark. It fails with ErrLeaseLost
// when t's lease has passed to another worker and with ErrNoTask when the
// task has left the queue; otherwise it returns the task, whose Canceled
// says whether a cancel (from any node) marked it, after extending the
// lease (Extend, a write) when a third of LeaseDuration has passed since
// its last extension.
func (q *Queue) Renew(ctx context.Context, t Task) (Task, error) {
	var cur Task
	err := q.Store.View(ctx, func(tx store.Tx) error {
		var err error
		if cur, err = q.Backend.Get(ctx, tx, t.ID); err != nil {
			return err
		}
		return owned(cur, t)
	})
	if err != nil {
		return t, err
	}
	if cur.Canceled || cur.LeaseExpiry.Sub(q.Clock.Now()) > q.LeaseDuration*2/3 {
		return cur, nil
	}
	return q.Extend(ctx, t)
}

// Extend renews a lease (long tasks call it as they make progress).
func (q *Queue) Extend(ctx context.Context, t Task) (Task, error) {
	return q.leased(ctx, t, func(cur *Task) { cur.LeaseExpiry = q.Clock.Now().UTC().Add(q.LeaseDuration) })
}

// leased applies fn to the stored state of t and writes it, in one
// transaction, if t's lease is still its worker's (ErrLeaseLost
// otherwise); it returns the state written.
func (q *Queue) leased(ctx context.Context, t Task, fn func(cur *Task)) (Task, error) {
	var out Task
	err := q.Store.Update(ctx, func(tx store.Tx) error {
		cur, err := q.Backend.Get(ctx, tx, t.ID)
		if err != nil {
			return err
		}
		if err := owned(cur, t); err != nil {
			return err
		}
		fn(&cur)
		if err := q.Backend.Replace(ctx, tx, cur); err != nil {
			return err
		}
		out = cur
		return nil
	})
	if err != nil {
		return t, err
	}
	return out, nil
}

// Cancel cancels a task: a pending task is removed at once (reported by
// removed = true); a leased one is marked so that the worker running it
// sees Canceled (the worker pool watches for it and cancels the task's
// context with ErrCanceled) and its next Nack drops it.
func (q *Queue) Cancel(ctx context.Context, id string) (removed bool, err error) {
	err = q.Store.Update(ctx, func(tx store.Tx) error {
		removed = false // a re-run decides afresh
		removed, err = q.CancelTx(ctx, tx, id)
		return err
	})
	return removed, err
}

// CancelTx is Cancel in the caller's transaction (so that a job record
// and its task change together).
func (q *Queue) CancelTx(ctx context.Context, tx store.Tx, id string) (removed bool, err error) {
	removed, err = q.CancelPendingTx(ctx, tx, id)
	if err != nil || removed {
		return removed, err
	}
	cur, err := q.Backend.Get(ctx, tx, id)
	if err != nil {
		return false, err
	}
	cur.Canceled = true
	return false, q.Backend.Replace(ctx, tx, cur)
}

// CancelPendingTx removes a task that no worker has leased, in the
// caller's transaction, and reports whether it did; a leased task is left
// as it is. A task that is not queued is ErrNoTask.
func (q *Queue) CancelPendingTx(ctx context.Context, tx store.Tx, id string) (bool, error) {
	cur, err := q.Backend.Get(ctx, tx, id)
	if err != nil {
		return false, err
	}
	if cur.State != StatePending {
		return false, nil
	}
	return true, q.Backend.Finish(ctx, tx, id, q.Clock.Now().UTC())
}

// AbandonTx removes, in tx, the queued task id, which cannot run because
// node, the only node that may lease it (its Node), is gone: unless it is
// no longer bound to node, or a worker of another node holds a live lease
// on it. A lease of node's own is no obstacle: a worker of a gone node
// that still runs commits nothing of the task (its completion finds the
// task gone: ErrLeaseLost), and its watch stops it. It returns the task
// and whether it removed it; a task that is not queued is ErrNoTask. Its
// ID is remembered as finished, as by Ack.
func (q *Queue) AbandonTx(ctx context.Context, tx store.Tx, id, node string) (Task, bool, error) {
	cur, err := q.Backend.Get(ctx, tx, id)
	if err != nil {
		return Task{}, false, err
	}
	now := q.Clock.Now().UTC()
	if !strings.EqualFold(cur.Node, node) || (Live(cur, now) && !strings.EqualFold(OwnerNode(cur.LeaseOwner), node)) {
		return cur, false, nil
	}
	if err := q.Backend.Finish(ctx, tx, id, now); err != nil {
		return cur, false, fmt.Errorf("abandon %s: %w", id, err)
	}
	return cur, true, nil
}

// Canceled reports whether the task was cancelled while leased.
func (q *Queue) Canceled(ctx context.Context, id string) (bool, error) {
	var c bool
	err := q.Store.View(ctx, func(tx store.Tx) error {
		cur, err := q.Backend.Get(ctx, tx, id)
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
// that their jobs can be failed. Recover releases every leased task: it is
// for one node's queue; on several nodes each releases only its own
// earlier runs' tasks (RecoverOwned), and other nodes' tasks come back when
// their leases expire.
func (q *Queue) Recover(ctx context.Context) (released int, dead []Task, err error) {
	return q.RecoverOwned(ctx, "")
}

// RecoverOwned is Recover for the tasks whose LeaseOwner begins with
// prefix (a node's name and a separator: its earlier runs' leases).
func (q *Queue) RecoverOwned(ctx context.Context, prefix string) (released int, dead []Task, err error) {
	err = q.Store.Update(ctx, func(tx store.Tx) error {
		released, dead = 0, nil // a re-run counts afresh
		ts, err := q.Backend.List(ctx, tx, "")
		if err != nil {
			return err
		}
		for _, t := range ts {
			if t.State != StateLeased || !strings.HasPrefix(t.LeaseOwner, prefix) {
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
			if err := q.Backend.Replace(ctx, tx, t); err != nil {
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

// DoneRetention is how long the queue remembers the ID of a finished task
// (ForgetDone's cutoff is now - DoneRetention).
//
// The marker exists to make a late duplicate harmless: enqueuing a
// finished task's ID again is ErrDuplicate, not a second run. Duplicates
// come from enqueuers that derive IDs from what they do (a scheduler slot,
// an alert's event, an operation resumed at a node's start, a volume to
// delete) and run again: an Update's re-run, a scheduler tick repeated by
// the node that takes the scheduler over, a node back from a pause. Each
// comes within a redelivery window of the first enqueue: a lease
// (LeaseDuration, minutes) and the backoffs of a task's deliveries (hours
// at most); the scheduler also finds a slot's job record, kept
// RetentionPeriod. A late ack needs no marker (an ack of a task that is
// gone is ErrNoTask, or ErrLeaseLost from CompleteTx). DoneRetention is
// weeks longer than any such window, so forgetting a marker after it
// cannot let a duplicate through.
const DoneRetention = RetentionPeriod

// DefaultForgetBatch is how many finished IDs one transaction of
// ForgetDone looks at, unless Queue.ForgetBatch says otherwise.
const DefaultForgetBatch = 1000

// ForgetDone drops the de-duplication markers of tasks finished before
// cutoff (see DoneRetention), in transactions that each look at
// ForgetBatch markers at most, so that a backlog of markers never makes
// one long transaction. It returns how many it dropped. It is idempotent;
// one node runs it (the scheduler's daily maintenance).
func (q *Queue) ForgetDone(ctx context.Context, cutoff time.Time) (int, error) {
	limit := q.ForgetBatch
	if limit <= 0 {
		limit = DefaultForgetBatch
	}
	total, from := 0, ""
	for {
		var (
			next string
			n    int
		)
		err := q.Store.Update(ctx, func(tx store.Tx) error {
			var err error
			next, n, err = q.Backend.ForgetDone(ctx, tx, cutoff, from, limit)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("forget finished tasks: %w", err)
		}
		total += n
		if next == "" {
			return total, nil
		}
		from = next
	}
}
