// Package operation owns Azure Resource Manager's asynchronous operations:
// the durable record of each long-running request (status, times, error,
// result) that the operation-status and operation-result endpoints serve,
// and the runner that executes the work behind it.
//
// A record is written InProgress before the work starts and updated once
// when it ends, so a client polling after a restart never sees an operation
// that is InProgress forever: Recover marks the ones a stopped server left
// behind as Failed (or hands them back to their owner to resume).
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
	Kind       string    `json:"kind"`       // e.g. "resourceGroups/delete", for Resume
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
	// Input is what Resume needs to restart the work after a restart.
	Input json.RawMessage `json:"input,omitempty"`
}

const kind = "operation"

func key(id string) string { return "/operations/" + strings.ToLower(id) }

// ErrNotFound is returned for an unknown operation ID.
var ErrNotFound = errors.New("operation not found")

// Func is the work of an operation. Its result is stored as the operation's
// Result; an error fails the operation (an *resource.Error keeps its code).
type Func func(ctx context.Context) (result any, err error)

// Manager runs operations and stores their records.
type Manager struct {
	Store  store.Store
	Clock  clock.Clock
	Logger *slog.Logger

	mu      sync.Mutex
	wg      sync.WaitGroup
	cancels map[string]context.CancelFunc
	closed  bool
}

// Start records rec as InProgress and runs fn in the background. The work
// is detached from ctx's cancellation (a client hanging up does not stop it)
// but Shutdown cancels it. rec.ID may be preset; otherwise a GUID is used.
func (m *Manager) Start(ctx context.Context, rec Record, fn Func) (Record, error) {
	if rec.ID == "" {
		rec.ID = identity.NewGUID()
	}
	rec.Status = InProgress
	rec.StartTime = m.Clock.Now().UTC()
	if err := m.put(ctx, rec); err != nil {
		return rec, err
	}
	m.run(ctx, rec, fn)
	return rec, nil
}

// Complete records an operation that finished synchronously, so that
// clients that poll it anyway get a terminal answer.
func (m *Manager) Complete(ctx context.Context, rec Record, result any, err error) (Record, error) {
	if rec.ID == "" {
		rec.ID = identity.NewGUID()
	}
	rec.StartTime = m.Clock.Now().UTC()
	m.finish(&rec, result, err)
	return rec, m.put(ctx, rec)
}

func (m *Manager) run(ctx context.Context, rec Record, fn Func) {
	m.mu.Lock()
	if m.cancels == nil {
		m.cancels = map[string]context.CancelFunc{}
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancels[rec.ID] = cancel
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		defer func() {
			m.mu.Lock()
			delete(m.cancels, rec.ID)
			m.mu.Unlock()
			cancel()
		}()
		result, err := fn(wctx)
		if wctx.Err() != nil && err != nil && m.isClosed() {
			// Shutting down: leave the record InProgress for Recover.
			return
		}
		m.finish(&rec, result, err)
		if perr := m.put(context.WithoutCancel(ctx), rec); perr != nil {
			m.logger().Error("store operation result", "operation", rec.ID, "err", perr)
		}
	}()
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
	rec.Status = Succeeded
	if result != nil {
		if raw, ok := result.(json.RawMessage); ok {
			rec.Result = raw
		} else if b, merr := json.Marshal(result); merr == nil {
			rec.Result = b
		}
	}
}

func (m *Manager) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

func (m *Manager) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

func (m *Manager) put(ctx context.Context, rec Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode operation %s: %w", rec.ID, err)
	}
	err = m.Store.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Object{Kind: kind, Key: key(rec.ID), Data: b}, store.PutOptions{})
	})
	if err != nil {
		return fmt.Errorf("store operation %s: %w", rec.ID, err)
	}
	return nil
}

// Get returns an operation record.
func (m *Manager) Get(ctx context.Context, id string) (Record, error) {
	var rec Record
	err := m.Store.View(ctx, func(tx store.Tx) error {
		o, err := tx.Get(ctx, kind, key(id))
		if err != nil {
			return err
		}
		return json.Unmarshal(o.Data, &rec)
	})
	if errors.Is(err, store.ErrNotFound) {
		return rec, fmt.Errorf("operation %s: %w", id, ErrNotFound)
	}
	if rec.Error != nil {
		rec.Error.Kind = rec.ErrorKind
	}
	if err != nil {
		return rec, fmt.Errorf("operation %s: %w", id, err)
	}
	return rec, nil
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
			b, err := json.Marshal(rec)
			if err != nil {
				return fmt.Errorf("encode operation %s: %w", rec.ID, err)
			}
			if err := tx.Put(ctx, &store.Object{Kind: kind, Key: key(rec.ID), Data: b}, store.PutOptions{}); err != nil {
				return fmt.Errorf("store operation %s: %w", rec.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rewrite operations: %w", err)
	}
	return nil
}

// Resumer restarts an interrupted operation of its kind. It returns false
// if it cannot, and the operation is then failed.
type Resumer func(ctx context.Context, rec Record) (Func, bool)

// Recover is called once at start: every operation a previous process left
// InProgress is resumed by the Resumer registered for its kind, or marked
// Failed with code OperationInterrupted.
func (m *Manager) Recover(ctx context.Context, resumers map[string]Resumer) error {
	var pending []Record
	err := m.Store.View(ctx, func(tx store.Tx) error {
		recs, err := records(ctx, tx)
		for _, rec := range recs {
			if !rec.Status.IsTerminal() {
				pending = append(pending, rec)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("recover operations: %w", err)
	}
	for _, rec := range pending {
		if r := resumers[rec.Kind]; r != nil {
			if fn, ok := r(ctx, rec); ok {
				m.logger().Info("resuming operation", "operation", rec.ID, "kind", rec.Kind)
				m.run(ctx, rec, fn)
				continue
			}
		}
		m.finish(&rec, nil, resource.Errorf(resource.KindInternal, "OperationInterrupted",
			"The operation was interrupted because the server restarted. Retry the request."))
		if err := m.put(ctx, rec); err != nil {
			return fmt.Errorf("recover operations: %w", err)
		}
	}
	return nil
}

// Wait blocks until every running operation has ended.
func (m *Manager) Wait() { m.wg.Wait() }

// Shutdown cancels running operations and waits for them. Operations
// stopped this way stay InProgress in the store, for Recover.
func (m *Manager) Shutdown() {
	m.mu.Lock()
	m.closed = true
	for _, c := range m.cancels {
		c()
	}
	m.mu.Unlock()
	m.wg.Wait()
}
