// Package operation owns Azure Resource Manager's asynchronous operations:
// the durable record of each long-running request (status, times, error,
// result) that the operation-status and operation-result endpoints serve,
// and the running of the work behind it as tasks of the job queue.
//
// Start writes the record InProgress and enqueues a task naming it in one
// transaction; a worker on any node that shares the store leases the task
// and runs the Handler registered for the operation's kind from the stored
// record; the result is written and the task acked in one transaction,
// fenced by the task's lease. A node that dies mid-way stops renewing its
// lease, and another node runs the handler again (handlers are idempotent).
// No operation lives only in a process's memory. An operation that fails
// for good ends what it leaves pending (its kind's Failer) in the same
// transaction (or, when that fails, ends without it). Records are kept
// DefaultRetention after they end; the pruning task, which is always
// queued (a start re-creates it if it is missing), deletes older ones on
// one node at a time.
package operation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"coffer/internal/clock"
	"coffer/internal/identity"
	"coffer/internal/job"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// Status is the state of an operation (and of a job): one enum shared by
// everything that runs asynchronously.
type Status string

// The statuses Azure clients recognise; Succeeded, Failed and Canceled are
// terminal.
const (
	InProgress Status = "InProgress"
	Succeeded  Status = "Succeeded"
	Failed     Status = "Failed"
	Canceled   Status = "Canceled"
)

// IsTerminal reports whether s is final.
func (s Status) IsTerminal() bool { return s == Succeeded || s == Failed || s == Canceled }

// Record is one operation.
type Record struct {
	ID         string    `json:"id"`
	ResourceID string    `json:"resourceId"` // the resource the operation acts on
	Kind       string    `json:"kind"`       // e.g. "resourceGroups/delete": which Handler runs it
	Location   string    `json:"location,omitempty"`
	Status     Status    `json:"status"`
	StartTime  time.Time `json:"startTime"`
	EndTime    time.Time `json:"endTime,omitempty"`
	// CreatedBy is the principal that started it; ReadAction is the RBAC
	// action that lets others read its status at ResourceID.
	CreatedBy  string          `json:"createdBy"`
	ReadAction string          `json:"readAction"`
	Error      *resource.Error `json:"error,omitempty"`
	// ErrorKind keeps Error's Kind (which its JSON form leaves out) so a
	// failure read back from the store answers with the right status.
	ErrorKind resource.Kind `json:"errorKind,omitempty"`
	// Properties go into the status body (e.g. OperationJobExtendedInfo).
	Properties json.RawMessage `json:"properties,omitempty"`
	// Result is the body of the operation-result (Location) URL once the
	// operation has succeeded; nil means 204/empty.
	Result json.RawMessage `json:"result,omitempty"`
	// Input is the handler's typed input, as JSON (Start's in).
	Input json.RawMessage `json:"input,omitempty"`
	// Disk, when set, is the disk whose home node must run the operation
	// (its volume lives there): the task is bound to that node.
	Disk string `json:"disk,omitempty"`
}

// TaskType is the type of the job-queue tasks that run operations.
const TaskType = "operation"

// taskPayload is the payload of an operation's task, or of the pruning
// task.
type taskPayload struct {
	Operation string `json:"operation,omitempty"`
	Prune     bool   `json:"prune,omitempty"`
}

// pruneTaskID is the ID of the one task that prunes old operations: the
// queue leases it to one worker of one node at a time, and its handler
// defers it to its next run.
const pruneTaskID = "operation-prune"

// taskID is the ID of the task that runs operation id: one task per
// operation, which the queue's de-duplication keeps from being queued
// twice.
func taskID(id string) string { return "op-" + strings.ToLower(id) }

// The stored objects: kind holds the records; kindInProgress indexes, by
// the same key, the records InProgress, so that Recover and Running read
// only those, not every operation kept; the object kindIndex/indexBuiltKey
// says that the index covers every record (a store written by an earlier
// version has none until Recover builds it).
const (
	kind           = "operation"
	kindInProgress = "operation.inprogress"
	kindIndex      = "operation.index"
	indexBuiltKey  = "/inprogress"
)

func key(id string) string { return "/operations/" + strings.ToLower(id) }

// DefaultRetention is how long an ended operation's record is kept when
// Manager.Retention is zero: Azure keeps an operation's status for a
// limited time, after which its URLs answer 404.
const DefaultRetention = 7 * 24 * time.Hour

// DefaultPruneEvery is how often the pruning runs when Manager.PruneEvery
// is zero.
const DefaultPruneEvery = time.Hour

// ErrNotFound is returned for an unknown operation ID.
var ErrNotFound = errors.New("operation not found")

// Handler runs the work of an operation of one kind from its stored
// record (rec.Input holds its input; rec.ResourceID what it acts on). Its
// result is stored as the operation's Result; an error fails the operation
// (a *resource.Error keeps its code and status), except a *job.Later,
// which runs it again later, and the cancellation of ctx (the node stops
// or lost the task), which leaves it to the task's next delivery.
//
// A handler may run more than once for one operation — again after a node
// died mid-way, or twice at once for a moment when a paused node comes
// back — so it must be idempotent: each handler's doc says how it is.
type Handler func(ctx context.Context, rec Record) (result any, err error)

// Errors of the manager, matched with errors.Is.
var (
	// ErrNoHandler: Start was given a kind no Handler is registered for.
	ErrNoHandler = errors.New("no handler for the operation's kind")
)

// Manager starts operations, runs them as job-queue tasks and stores their
// records.
type Manager struct {
	Store  store.Store
	Clock  clock.Clock
	Logger *slog.Logger
	// Queue runs the operations: Start enqueues a task of type TaskType,
	// which a worker pool hands to Run. Its Backend must keep its tasks
	// in Store (Start writes the record and the task in one transaction).
	Queue *job.Queue
	// Home, when set, names (read in tx) the node that holds a disk; an
	// operation whose Record.Disk is set runs there. Nil: any node.
	Home func(ctx context.Context, tx store.Tx, diskID string) (string, error)
	// Retention is how long an ended operation's record is kept
	// (DefaultRetention when zero): the pruning task, which Recover
	// queues and one node at a time runs every PruneEvery
	// (DefaultPruneEvery when zero), deletes older ones.
	Retention  time.Duration
	PruneEvery time.Duration

	mu       sync.Mutex
	handlers map[string]Handler
	failers  map[string]Failer
}

// Failer ends, in tx, what an operation of one kind leaves pending when
// it fails for good (e.g. the disk it creates, still Updating): it runs in
// the transaction that writes the Failed (or Canceled) record, whichever
// node writes it and however — the handler's error, a task out of
// deliveries, Recover — so that the resource never outlives its operation
// in a pending state. rec.Error says why. It must leave a resource that
// has ended as it is. When it fails, its writes are dropped and the
// operation ends all the same (its error logged), so that no operation
// stays InProgress because of its Failer.
type Failer func(ctx context.Context, tx store.Tx, rec Record) error

// Register makes h run the operations of kind. Register every kind before
// the workers start: a task whose kind has no handler fails its operation.
func (m *Manager) Register(kind string, h Handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.handlers == nil {
		m.handlers = map[string]Handler{}
	}
	m.handlers[strings.ToLower(kind)] = h
}

// OnFail makes f end what the failed operations of kind leave pending.
func (m *Manager) OnFail(kind string, f Failer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failers == nil {
		m.failers = map[string]Failer{}
	}
	m.failers[strings.ToLower(kind)] = f
}

// endTx writes rec, which has ended, in tx, with what its kind's Failer
// ends when it failed, unless noFailer. A Failer's error is a
// *failerError.
func (m *Manager) endTx(ctx context.Context, tx store.Tx, rec Record, noFailer bool) error {
	if err := putTx(ctx, tx, rec); err != nil {
		return err
	}
	if rec.Status == Succeeded || noFailer {
		return nil
	}
	m.mu.Lock()
	f := m.failers[strings.ToLower(rec.Kind)]
	m.mu.Unlock()
	if f == nil {
		return nil
	}
	if err := f(ctx, tx, rec); err != nil {
		return &failerError{rec: rec, err: err}
	}
	return nil
}

// failerError is the error of a Failer, for the operation rec.
type failerError struct {
	rec Record
	err error
}

func (e *failerError) Error() string {
	return fmt.Sprintf("fail what operation %s leaves: %v", e.rec.ID, e.err)
}

func (e *failerError) Unwrap() error { return e.err }

// updateEnding runs fn in an Update of the store; fn ends operations with
// end (endTx in fn's transaction). When an operation's Failer fails, the
// transaction runs again with that operation ending without its Failer,
// whose error is logged: an operation that has failed never stays
// InProgress because what it leaves pending could not be ended (that
// stays as it is, for an operator to see in the log).
func (m *Manager) updateEnding(ctx context.Context, fn func(tx store.Tx, end func(rec Record) error) error) error {
	skip := map[string]bool{}
	for {
		err := m.Store.Update(ctx, func(tx store.Tx) error {
			return fn(tx, func(rec Record) error { return m.endTx(ctx, tx, rec, skip[rec.ID]) })
		})
		fe, ok := errors.AsType[*failerError](err)
		if !ok || skip[fe.rec.ID] {
			return err
		}
		m.logger().Error("the operation failed, and ending what it leaves pending failed too: the operation ends regardless and that stays as it is",
			"operation", fe.rec.ID, "kind", fe.rec.Kind, "resource", fe.rec.ResourceID, "err", fe.err)
		skip[fe.rec.ID] = true
	}
}

func (m *Manager) handler(kind string) Handler {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.handlers[strings.ToLower(kind)]
}

// Start records rec as InProgress with in (JSON-encoded, nil for none) as
// its Input, and enqueues the task that runs it, in one transaction: the
// operation exists only with its task. rec.ID may be preset; otherwise a
// GUID is used. The work runs on whichever node's worker leases the task
// (rec.Disk's home node when set), detached from the request.
func (m *Manager) Start(ctx context.Context, rec Record, in any) (Record, error) {
	if m.handler(rec.Kind) == nil {
		return rec, fmt.Errorf("start operation of kind %q: %w", rec.Kind, ErrNoHandler)
	}
	if rec.ID == "" {
		rec.ID = identity.NewGUID()
	}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return rec, fmt.Errorf("encode the input of operation %s: %w", rec.ID, err)
		}
		rec.Input = b
	}
	rec.Status = InProgress
	rec.StartTime = m.Clock.Now().UTC()
	err := m.Store.Update(ctx, func(tx store.Tx) error {
		if err := putTx(ctx, tx, rec); err != nil {
			return err
		}
		return m.enqueueTx(ctx, tx, rec)
	})
	if err != nil {
		return rec, fmt.Errorf("start operation %s: %w", rec.ID, err)
	}
	m.Queue.Wake()
	return rec, nil
}

// enqueueTx queues the task that runs rec, bound to rec.Disk's home.
func (m *Manager) enqueueTx(ctx context.Context, tx store.Tx, rec Record) error {
	node := ""
	if rec.Disk != "" && m.Home != nil {
		var err error
		if node, err = m.Home(ctx, tx, rec.Disk); err != nil {
			return err
		}
	}
	payload, err := json.Marshal(taskPayload{Operation: rec.ID})
	if err != nil {
		return err
	}
	return m.Queue.EnqueueTx(ctx, tx, job.Task{ID: taskID(rec.ID), Type: TaskType, Payload: payload, Node: node})
}

// Complete records an operation that finished synchronously, so that
// clients that poll it anyway get a terminal answer. It has no task.
func (m *Manager) Complete(ctx context.Context, rec Record, result any, err error) (Record, error) {
	if rec.ID == "" {
		rec.ID = identity.NewGUID()
	}
	rec.StartTime = m.Clock.Now().UTC()
	m.finish(&rec, result, err)
	return rec, m.put(ctx, rec)
}

// Run is the worker pool's handler of TaskType tasks: it runs the
// operation's Handler and then, in one transaction, acks the task and
// writes the outcome. The ack is fenced by the task's lease: a worker
// whose lease passed to another (it paused, and the other ran the
// operation) writes nothing, and Run's error wraps job.ErrLeaseLost.
func (m *Manager) Run(ctx context.Context, t job.Task) error {
	var p taskPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return fmt.Errorf("decode task %s: %w", t.ID, err)
	}
	if p.Prune {
		return m.runPrune(ctx, t)
	}
	rec, err := m.Get(ctx, p.Operation)
	if errors.Is(err, ErrNotFound) {
		m.logger().Warn("task of a missing operation", "task", t.ID, "operation", p.Operation)
		return nil // nothing to run; the pool acks the task
	}
	if err != nil {
		return err
	}
	if rec.Status.IsTerminal() {
		return nil
	}
	var result any
	var herr error
	if h := m.handler(rec.Kind); h != nil {
		result, herr = h(ctx, rec)
	} else {
		herr = resource.Errorf(resource.KindInternal, "OperationNotSupported",
			"The operation of kind '%s' cannot run on this server (another version of Coffer started it). Retry the request.", rec.Kind)
	}
	if herr != nil && ctx.Err() != nil {
		// The node is stopping, or another worker has the task: the
		// next delivery runs the operation again.
		return fmt.Errorf("operation %s: %w", rec.ID, context.Cause(ctx))
	}
	if _, ok := errors.AsType[*job.Later](herr); ok {
		return herr
	}
	m.finish(&rec, result, herr)
	err = m.updateEnding(ctx, func(tx store.Tx, end func(Record) error) error {
		if err := m.Queue.CompleteTx(ctx, tx, t); err != nil {
			return err
		}
		return end(rec)
	})
	if err != nil {
		return fmt.Errorf("complete operation %s: %w", rec.ID, err)
	}
	m.Queue.Wake()
	return nil
}

// Interrupted is the error of an operation whose task will not run again.
func Interrupted() *resource.Error {
	return resource.Errorf(resource.KindInternal, "OperationInterrupted",
		"The operation was interrupted because the server restarted. Retry the request.")
}

// FailTask is the worker pool's dead-letter hook for TaskType tasks (the
// task is gone: past its delivery limit, or failed because the node it
// must run on is gone): the operation fails, unless it has ended, with
// cause when that is an ARM error (such as NodeUnavailable) and with
// OperationInterrupted otherwise, and its kind's Failer ends what it left
// pending, in the same transaction.
func (m *Manager) FailTask(ctx context.Context, t job.Task, cause error) {
	var p taskPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		m.logger().Error("dead operation task with a bad payload", "task", t.ID, "err", err)
		return
	}
	if p.Prune {
		m.logger().Warn("the pruning task ended; queued again", "task", t.ID, "err", cause)
		err := m.Store.Update(ctx, func(tx store.Tx) error {
			tasks, err := m.Queue.Backend.List(ctx, tx, "")
			if err != nil {
				return err
			}
			_, err = m.ensurePruneTx(ctx, tx, tasks)
			return err
		})
		if err != nil {
			m.logger().Error("queue the pruning of operations again; the next start does", "err", err)
		}
		return
	}
	err := m.updateEnding(ctx, func(tx store.Tx, end func(Record) error) error {
		rec, err := getTx(ctx, tx, p.Operation)
		if err != nil || rec.Status.IsTerminal() {
			return err
		}
		var why error = Interrupted()
		if e := resource.AsError(cause); e != nil {
			why = e
		}
		m.finish(&rec, nil, why)
		return end(rec)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		m.logger().Error("fail the operation of a dead task", "task", t.ID, "err", err)
	}
}

func (m *Manager) finish(rec *Record, result any, err error) {
	rec.EndTime = m.Clock.Now().UTC()
	if err != nil {
		rec.Status = Failed
		if e := resource.AsError(err); e != nil {
			rec.Error = e
		} else {
			m.logger().Error("operation failed", "operation", rec.ID, "resource", rec.ResourceID, "err", err)
			rec.Error = resource.Errorf(resource.KindInternal, "InternalServerError", "The operation failed: %v", err)
		}
		if errors.Is(err, context.Canceled) {
			rec.Status = Canceled
		}
		rec.ErrorKind = rec.Error.Kind
		return
	}
	if result == nil {
		rec.Status = Succeeded
		return
	}
	raw, ok := result.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(result); err != nil {
			m.finish(rec, nil, fmt.Errorf("encode the result: %w", err))
			return
		}
	}
	rec.Status, rec.Result = Succeeded, raw
}

func (m *Manager) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

func (m *Manager) put(ctx context.Context, rec Record) error {
	err := m.Store.Update(ctx, func(tx store.Tx) error { return putTx(ctx, tx, rec) })
	if err != nil {
		return fmt.Errorf("store operation %s: %w", rec.ID, err)
	}
	return nil
}

// putTx stores rec and keeps the index of the InProgress records.
func putTx(ctx context.Context, tx store.Tx, rec Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode operation %s: %w", rec.ID, err)
	}
	if err := tx.Put(ctx, &store.Object{Kind: kind, Key: key(rec.ID), Data: b}, store.PutOptions{}); err != nil {
		return fmt.Errorf("store operation %s: %w", rec.ID, err)
	}
	if rec.Status.IsTerminal() {
		err = tx.Delete(ctx, kindInProgress, key(rec.ID))
		if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
	} else {
		err = tx.Put(ctx, &store.Object{Kind: kindInProgress, Key: key(rec.ID), Data: []byte("{}")}, store.PutOptions{})
	}
	if err != nil {
		return fmt.Errorf("index operation %s: %w", rec.ID, err)
	}
	return nil
}

// getTx reads an operation record in tx.
func getTx(ctx context.Context, tx store.Tx, id string) (Record, error) {
	var rec Record
	o, err := tx.Get(ctx, kind, key(id))
	if errors.Is(err, store.ErrNotFound) {
		return rec, fmt.Errorf("operation %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return rec, fmt.Errorf("operation %s: %w", id, err)
	}
	if err := json.Unmarshal(o.Data, &rec); err != nil {
		return rec, fmt.Errorf("decode operation %s: %w", id, err)
	}
	if rec.Error != nil {
		rec.Error.Kind = rec.ErrorKind
	}
	return rec, nil
}

// Get returns an operation record, read from the store: any node serves
// any operation's status.
func (m *Manager) Get(ctx context.Context, id string) (Record, error) {
	var rec Record
	err := m.Store.View(ctx, func(tx store.Tx) error {
		var err error
		rec, err = getTx(ctx, tx, id)
		return err
	})
	return rec, err
}

// records decodes every stored operation.
func records(ctx context.Context, tx store.Tx) ([]Record, error) {
	objs, err := tx.List(ctx, store.Query{Kind: kind})
	if err != nil {
		return nil, err
	}
	recs := make([]Record, 0, len(objs))
	for _, o := range objs {
		var rec Record
		if err := json.Unmarshal(o.Data, &rec); err != nil {
			return nil, fmt.Errorf("decode operation %s: %w", o.Key, err)
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// Rewrite passes every stored operation to fn and stores, in one
// transaction, those fn reports it changed: for data migrations at start.
func (m *Manager) Rewrite(ctx context.Context, fn func(rec *Record) bool) error {
	err := m.Store.Update(ctx, func(tx store.Tx) error {
		recs, err := records(ctx, tx)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if !fn(&rec) {
				continue
			}
			if err := putTx(ctx, tx, rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rewrite operations: %w", err)
	}
	return nil
}

// Recover is called at start: an operation left InProgress without a task
// to run it — one that a version of Coffer which ran operations in its
// memory left behind — gets a task now if a Handler runs its kind, and is
// failed with OperationInterrupted otherwise. It reads the operations in
// progress and the tasks in one transaction, so that it never touches an
// operation that a node is running: those have their task. It builds the
// index of the operations in progress on a store an earlier version
// wrote, and queues the pruning task if it is not queued.
func (m *Manager) Recover(ctx context.Context) error {
	enqueued := 0
	err := m.updateEnding(ctx, func(tx store.Tx, end func(Record) error) error {
		enqueued = 0 // a re-run counts afresh
		recs, built, err := inProgress(ctx, tx)
		if err != nil {
			return err
		}
		if !built {
			if err := buildIndex(ctx, tx, recs); err != nil {
				return err
			}
		}
		tasks, err := m.Queue.Backend.List(ctx, tx, "")
		if err != nil {
			return err
		}
		queued := map[string]bool{}
		for _, t := range tasks {
			if t.Type == TaskType {
				queued[strings.ToLower(t.ID)] = true
			}
		}
		if ok, err := m.ensurePruneTx(ctx, tx, tasks); err != nil {
			return err
		} else if ok {
			enqueued++
		}
		for _, rec := range recs {
			if queued[taskID(rec.ID)] {
				continue
			}
			if m.handler(rec.Kind) != nil {
				err := m.enqueueTx(ctx, tx, rec)
				if err == nil {
					m.logger().Info("resuming operation", "operation", rec.ID, "kind", rec.Kind)
					enqueued++
					continue
				}
				if !errors.Is(err, job.ErrDuplicate) {
					return err
				}
				// Its task ran and ended without a trace: it is failed.
			}
			m.finish(&rec, nil, Interrupted())
			if err := end(rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recover operations: %w", err)
	}
	if enqueued > 0 {
		m.Queue.Wake()
	}
	return nil
}

// inProgress reads the operations in progress: from their index once it
// is built (built reports it), from every record before.
func inProgress(ctx context.Context, tx store.Tx) (recs []Record, built bool, err error) {
	if _, err := tx.Get(ctx, kindIndex, indexBuiltKey); errors.Is(err, store.ErrNotFound) {
		all, err := records(ctx, tx)
		for _, rec := range all {
			if !rec.Status.IsTerminal() {
				recs = append(recs, rec)
			}
		}
		return recs, false, err
	} else if err != nil {
		return nil, false, fmt.Errorf("read the index of operations: %w", err)
	}
	idx, err := tx.List(ctx, store.Query{Kind: kindInProgress})
	if err != nil {
		return nil, true, fmt.Errorf("list operations in progress: %w", err)
	}
	for _, o := range idx {
		rec, err := getTx(ctx, tx, strings.TrimPrefix(o.Key, key("")))
		if errors.Is(err, ErrNotFound) {
			continue // an entry whose record is gone names nothing in progress
		}
		if err != nil {
			return nil, true, err
		}
		if !rec.Status.IsTerminal() {
			recs = append(recs, rec)
		}
	}
	return recs, true, nil
}

// buildIndex indexes recs, every operation in progress, in tx, and marks
// the index built.
func buildIndex(ctx context.Context, tx store.Tx, recs []Record) error {
	for _, rec := range recs {
		if err := putTx(ctx, tx, rec); err != nil {
			return err
		}
	}
	if err := tx.Put(ctx, &store.Object{Kind: kindIndex, Key: indexBuiltKey, Data: []byte("{}")}, store.PutOptions{}); err != nil {
		return fmt.Errorf("index operations: %w", err)
	}
	return nil
}

// pruneDeliveries is the pruning task's delivery limit, which it never
// reaches: a run that fails is deferred to the next, and one interrupted
// (its node stopped or died) is delivered again after the queue's backoff,
// however many times in a row; the task is never dropped. (Each deferral
// adds one, and the PostgreSQL queue keeps it in 32 bits: 2^30 leaves
// room for a hundred thousand years of hourly runs.)
const pruneDeliveries = 1 << 30

// pruneIDs is how many IDs enqueuePruneTx tries: the queue refuses an ID
// it finished recently (job.ErrDuplicate), so a pruning task that ended
// (a node of a version without it acked it) is queued again under the
// next one.
const pruneIDs = 100

// isPruneTask reports whether t is the pruning task, under any of its IDs.
func isPruneTask(t job.Task) bool {
	return t.Type == TaskType && strings.HasPrefix(strings.ToLower(t.ID), pruneTaskID)
}

// ensurePruneTx queues the pruning task in tx unless tasks, the queued
// tasks as read in tx, hold it, and reports whether it queued it.
func (m *Manager) ensurePruneTx(ctx context.Context, tx store.Tx, tasks []job.Task) (bool, error) {
	for _, t := range tasks {
		if isPruneTask(t) {
			return false, nil
		}
	}
	return true, m.enqueuePruneTx(ctx, tx)
}

// enqueuePruneTx queues the pruning task, due at once, under the first of
// its IDs the queue accepts. Each run defers it to the next. The caller
// has checked that none is queued, in tx: nodes that start at once queue
// it once (their transactions conflict, and the one re-run finds it).
func (m *Manager) enqueuePruneTx(ctx context.Context, tx store.Tx) error {
	payload, err := json.Marshal(taskPayload{Prune: true})
	if err != nil {
		return err
	}
	for i := 1; i <= pruneIDs; i++ {
		id := pruneTaskID
		if i > 1 {
			id = fmt.Sprintf("%s-%d", pruneTaskID, i)
		}
		err = m.Queue.EnqueueTx(ctx, tx, job.Task{ID: id, Type: TaskType, Payload: payload, MaxAttempts: pruneDeliveries})
		if !errors.Is(err, job.ErrDuplicate) {
			return err
		}
	}
	// Every ID ended recently: the next start, once the queue has
	// forgotten them, queues it.
	m.logger().Error("the pruning of operations cannot be queued: all its IDs ended recently", "err", err)
	return nil
}

// runPrune is the pruning task's run: it prunes, fenced by the task's
// lease, and defers the task to its next run. A failed run is logged and
// tried again at the next.
func (m *Manager) runPrune(ctx context.Context, t job.Task) error {
	n, err := m.prune(ctx, func(ctx context.Context, tx store.Tx) error { return m.Queue.HeldTx(ctx, tx, t) })
	if ctx.Err() != nil {
		return fmt.Errorf("prune operations: %w", context.Cause(ctx))
	}
	if errors.Is(err, job.ErrLeaseLost) {
		return err
	}
	if err != nil {
		m.logger().Error("prune operations", "err", err)
	} else if n > 0 {
		m.logger().Info("pruned operations", "deleted", n)
	}
	every := m.PruneEvery
	if every <= 0 {
		every = DefaultPruneEvery
	}
	return &job.Later{After: every}
}

// prunePage is how many records one pruning transaction reads.
const prunePage = 500

// Prune deletes the records of the operations that ended more than
// Retention ago, a page of records per transaction, and reports how many
// it deleted. The pruning task runs it on one node at a time; running it
// elsewhere too is harmless.
func (m *Manager) Prune(ctx context.Context) (int, error) {
	return m.prune(ctx, nil)
}

// prune is Prune with fence, when set, called in each transaction that
// deletes.
func (m *Manager) prune(ctx context.Context, fence func(ctx context.Context, tx store.Tx) error) (int, error) {
	keep := m.Retention
	if keep <= 0 {
		keep = DefaultRetention
	}
	cutoff := m.Clock.Now().UTC().Add(-keep)
	deleted, after := 0, ""
	for {
		var n, read int
		err := m.Store.Update(ctx, func(tx store.Tx) error {
			n, read = 0, 0 // a re-run counts afresh
			if fence != nil {
				if err := fence(ctx, tx); err != nil {
					return err
				}
			}
			objs, err := tx.List(ctx, store.Query{Kind: kind, After: after, Limit: prunePage})
			if err != nil {
				return err
			}
			read = len(objs)
			for _, o := range objs {
				var rec Record
				if err := json.Unmarshal(o.Data, &rec); err != nil {
					return fmt.Errorf("decode operation %s: %w", o.Key, err)
				}
				ended := rec.EndTime
				if ended.IsZero() {
					ended = rec.StartTime
				}
				if !rec.Status.IsTerminal() || !ended.Before(cutoff) {
					continue
				}
				if err := tx.Delete(ctx, kind, o.Key); err != nil {
					return fmt.Errorf("delete operation %s: %w", rec.ID, err)
				}
				n++
			}
			if read > 0 {
				after = objs[read-1].Key
			}
			return nil
		})
		if err != nil {
			return deleted, fmt.Errorf("prune operations: %w", err)
		}
		deleted += n
		if read < prunePage {
			return deleted, nil
		}
	}
}

// Running returns the resources (their IDs, lower-cased) that an
// operation still in progress acts on.
func (m *Manager) Running(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	err := m.Store.View(ctx, func(tx store.Tx) error {
		recs, _, err := inProgress(ctx, tx)
		for _, rec := range recs {
			out[strings.ToLower(rec.ResourceID)] = true
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list running operations: %w", err)
	}
	return out, nil
}
