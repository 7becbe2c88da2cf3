// Package worker executes the tasks of the job queue: a pool of workers
// leases tasks, runs the handler registered for each task type (backup,
// restore, retention, deletion of a backup instance's data, ARM
// long-running operations, notifications), renews each lease while its
// handler runs, and acks, nacks or defers (job.Later) them. A task whose
// handler keeps failing is retried with backoff up to its delivery limit
// and then handed to the Dead hook, which fails its job record cleanly, so
// that no job stays InProgress forever.
//
// At start, Recover releases the tasks a dead process had leased, so that
// they are delivered again (the handlers are idempotent: a backup reuses
// the snapshot it may already have made, and writes its recovery point
// only once the snapshot is committed).
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"coffer/internal/clock"
	"coffer/internal/identity"
	"coffer/internal/job"
)

// Handler runs one task. It returns nil when the task is finished (its job
// record says whether it succeeded); an error means "try again later".
type Handler func(ctx context.Context, t job.Task) error

// DeadHandler is told about a task that will not be retried.
type DeadHandler func(ctx context.Context, t job.Task, cause error)

// Pool runs tasks from a queue.
type Pool struct {
	Queue   *job.Queue
	Clock   clock.Clock
	Logger  *slog.Logger
	Workers int
	// Owner names this pool in leases; NewPool sets a random one.
	Owner string
	// Node, when set, is the name of the node the pool runs on (one of
	// several sharing the queue): Owner must then begin with Node and a
	// slash, and Recover releases only the tasks leased by this node's
	// earlier runs; other nodes' tasks come back when their leases expire.
	Node string
	// Dead is called for tasks that exhausted their deliveries or have no
	// handler, and for those FailStranded fails.
	Dead DeadHandler
	// WaitForNode names the task types whose tasks wait for their Node
	// however long it is down (FailStranded leaves them): work that only
	// that node can do and nobody waits on, such as deleting a volume it
	// holds.
	WaitForNode map[string]bool
	// Idle is the longest a worker sleeps without a notification.
	Idle time.Duration
	// Watch is how often a running task is read (job.Queue.Renew): one
	// read says whether it was cancelled (from any node: see
	// job.Queue.Cancel), so that a cancel is seen within Watch, and
	// renews its lease once a third of the queue's lease duration has
	// passed. NewPool sets DefaultWatch.
	Watch time.Duration

	mu       sync.Mutex
	handlers map[string]Handler
	wg       sync.WaitGroup
}

// DefaultWatch is a pool's Watch unless set otherwise: the longest a
// running task's handler goes on after the task was cancelled.
const DefaultWatch = 2 * time.Second

// NewPool returns a pool of n workers over q.
func NewPool(q *job.Queue, clk clock.Clock, logger *slog.Logger, n int) *Pool {
	if n < 1 {
		n = 1
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Pool{Queue: q, Clock: clk, Logger: logger, Workers: n, Owner: "worker-" + identity.NewGUID(),
		Idle: 5 * time.Second, Watch: DefaultWatch, handlers: map[string]Handler{}}
}

// Handle registers the handler of a task type.
func (p *Pool) Handle(typ string, h Handler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.handlers == nil {
		p.handlers = map[string]Handler{}
	}
	p.handlers[typ] = h
}

func (p *Pool) handler(typ string) Handler {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.handlers[typ]
}

// ErrNoHandler is the cause given to Dead for a task type nobody handles.
var ErrNoHandler = errors.New("no handler for task type")

// RunOnce leases one ready task and runs it. It reports whether it found
// one.
func (p *Pool) RunOnce(ctx context.Context) (bool, error) {
	t, ok, err := p.Queue.Lease(ctx, p.Owner)
	if err != nil || !ok {
		return false, err
	}
	h := p.handler(t.Type)
	if h == nil {
		if err := p.Queue.Ack(ctx, t); err != nil {
			return true, err
		}
		p.dead(ctx, t, fmt.Errorf("%w %q", ErrNoHandler, t.Type))
		return true, nil
	}
	herr := p.run(ctx, h, t)
	if herr == nil {
		err := p.Queue.Ack(ctx, t)
		if errors.Is(err, job.ErrNoTask) { // the handler acked it in its own transaction
			err = nil
		}
		return true, err
	}
	if ctx.Err() != nil {
		// Shutting down: leave the lease; Recover hands the task out again.
		return true, ctx.Err()
	}
	if errors.Is(herr, job.ErrLeaseLost) || errors.Is(herr, job.ErrNoTask) {
		// Another worker holds the task now (this one paused past its
		// lease), or it left the queue: its outcome is not this
		// worker's to record.
		p.Logger.Warn("task no longer this worker's; its outcome is left to others", "task", t.ID, "type", t.Type, "attempt", t.Attempts, "err", herr)
		return true, nil
	}
	if later, ok := errors.AsType[*job.Later](herr); ok {
		err := p.Queue.Defer(ctx, t, later.After)
		if errors.Is(err, job.ErrLeaseLost) {
			err = nil
		}
		return true, err
	}
	dead, err := p.Queue.Nack(ctx, t, herr)
	if err != nil {
		return true, err
	}
	if dead {
		p.dead(ctx, t, herr)
	} else {
		p.Logger.Warn("task failed; will retry", "task", t.ID, "type", t.Type, "attempt", t.Attempts, "err", herr)
	}
	return true, nil
}

// run runs h on t under a watch (see watch): a handler whose task was
// cancelled ends with an error that matches job.ErrCanceled; one whose
// lease passed to another worker (the node paused past its lease) ends
// with job.ErrLeaseLost, and one whose task left the queue while it ran
// (another worker finished it, or it was removed) with job.ErrNoTask:
// either way its work is no longer its own.
func (p *Pool) run(ctx context.Context, h Handler, t job.Task) error {
	hctx, stop := p.watch(ctx, t)
	err := h(hctx, t)
	stop()
	if err == nil || ctx.Err() != nil {
		return err
	}
	switch cause := context.Cause(hctx); {
	case errors.Is(cause, job.ErrCanceled) && !errors.Is(err, job.ErrCanceled):
		return fmt.Errorf("%w: %w", job.ErrCanceled, err)
	case errors.Is(cause, job.ErrLeaseLost):
		return fmt.Errorf("task %s: %w", t.ID, cause)
	case errors.Is(cause, job.ErrNoTask):
		return cause
	}
	return err
}

// watch runs beside a task's handler until stop is called. Every Watch it
// reads the task once (job.Queue.Renew), which renews its lease when a
// third of it has passed, so that a long backup keeps its task, and says
// whether the task was cancelled: a cancel is seen within Watch. It
// cancels the handler's context with cause job.ErrCanceled once the task
// was cancelled, job.ErrLeaseLost once another worker holds it, and an
// error wrapping job.ErrNoTask once the task has left the queue other than
// by the handler's own ack (another worker finished it, or it was
// removed).
func (p *Pool) watch(ctx context.Context, t job.Task) (hctx context.Context, stop func()) {
	hctx, cancel := context.WithCancelCause(ctx)
	hctx, acked := job.NoteAcks(hctx, t.ID)
	every := p.Watch
	if every <= 0 {
		every = DefaultWatch
	}
	stopWatch := clock.Every(hctx, p.Clock, every, func() bool {
		cur, err := p.Queue.Renew(hctx, t)
		if err == nil && cur.Canceled {
			err = job.ErrCanceled
		}
		switch {
		case errors.Is(err, job.ErrCanceled):
			p.Logger.Info("task cancelled while running", "task", t.ID, "type", t.Type)
			cancel(job.ErrCanceled)
			return false
		case errors.Is(err, job.ErrNoTask) && acked():
			return false // the handler acked it in its own transaction
		case errors.Is(err, job.ErrNoTask):
			p.Logger.Warn("task left the queue while running; its handler stops", "task", t.ID, "type", t.Type)
			cancel(fmt.Errorf("task %s left the queue while it ran (another worker finished it, or it was removed): %w", t.ID, job.ErrNoTask))
			return false
		case errors.Is(err, job.ErrLeaseLost):
			p.Logger.Warn("task lease lost while running", "task", t.ID, "type", t.Type, "err", err)
			cancel(job.ErrLeaseLost)
			return false
		case err != nil && hctx.Err() == nil:
			p.Logger.Warn("watch a running task", "task", t.ID, "err", err)
		}
		return true
	})
	return hctx, func() {
		stopWatch()
		cancel(nil)
	}
}

func (p *Pool) dead(ctx context.Context, t job.Task, cause error) {
	p.Logger.Error("task failed for good", "task", t.ID, "type", t.Type, "attempts", t.Attempts, "err", cause)
	if p.Dead != nil {
		p.Dead(ctx, t, cause)
	}
}

// Drain runs ready tasks until none is ready (tests and the CLI-less
// paths use it with a fake clock).
func (p *Pool) Drain(ctx context.Context) error {
	for {
		ok, err := p.RunOnce(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
	}
}

// Start runs the workers until ctx is cancelled; Wait waits for them.
func (p *Pool) Start(ctx context.Context) {
	for i := 0; i < p.Workers; i++ {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.loop(ctx)
		}()
	}
}

// Recover releases the tasks a stopped process had leased (see
// job.Queue.Recover) and hands the ones past their delivery limit to Dead.
// Call it once at start, before Start.
func (p *Pool) Recover(ctx context.Context) error {
	prefix := ""
	if p.Node != "" {
		prefix = p.Node + "/"
		if !strings.HasPrefix(p.Owner, prefix) {
			return fmt.Errorf("recover tasks: the pool's owner %q is not of node %s", p.Owner, p.Node)
		}
	}
	_, dead, err := p.Queue.RecoverOwned(ctx, prefix)
	if err != nil {
		return err
	}
	for _, t := range dead {
		p.dead(ctx, t, job.ErrInterrupted)
	}
	return nil
}

// Wait blocks until the workers have stopped.
func (p *Pool) Wait() { p.wg.Wait() }

func (p *Pool) loop(ctx context.Context) {
	for ctx.Err() == nil {
		ok, err := p.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			p.Logger.Error("worker", "err", err)
		}
		if ok && err == nil {
			continue
		}
		wait := p.Idle
		if next, err := p.Queue.NextReady(ctx); err == nil && !next.IsZero() {
			// A past time is a task waiting for its target: the ack that
			// frees the target wakes us.
			if d := next.Sub(p.Clock.Now()); d > 0 && d < wait {
				wait = d
			}
		}
		tm := p.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-p.Queue.Notify():
		case <-tm.C():
		}
		tm.Stop()
	}
}
