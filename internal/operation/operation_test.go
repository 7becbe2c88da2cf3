package operation_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/cluster"
	"coffer/internal/job"
	"coffer/internal/operation"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/store/postgres"
	"coffer/internal/store/postgres/pgtest"
	"coffer/internal/store/sqlite"
	"coffer/internal/worker"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// node is one Coffer node's view of the operations: its own store handle
// (on PostgreSQL; SQLite's nodes share the one handle a file allows),
// queue, manager and worker pool, on a clock all nodes share.
type node struct {
	name string
	st   store.Store
	q    *job.Queue
	m    *operation.Manager
	pool *worker.Pool
}

// backend opens a handle on shared data: a new node.
type backend func(t testing.TB) (store.Store, job.Backend)

// eachBackend runs test on SQLite and on PostgreSQL (when its server
// programs are here).
func eachBackend(t *testing.T, test func(t *testing.T, open backend)) {
	t.Run("sqlite", func(t *testing.T) {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		test(t, func(t testing.TB) (store.Store, job.Backend) { return st, job.Objects{Store: st} })
	})
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.Start(t).NewDatabase(t)
		test(t, func(t testing.TB) (store.Store, job.Backend) {
			st, err := postgres.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st, st.Queue()
		})
	})
}

func newNode(t testing.TB, open backend, name string, clk clock.Clock) *node {
	st, b := open(t)
	q := job.NewQueue(st, clk)
	q.Backend = b
	m := &operation.Manager{Store: st, Clock: clk, Queue: q}
	pool := worker.NewPool(q, clk, nil, 1)
	pool.Owner, pool.Node = name+"/1", name
	pool.Handle(operation.TaskType, m.Run)
	pool.Dead = m.FailTask
	return &node{name: name, st: st, q: q, m: m, pool: pool}
}

func rec(kind string) operation.Record {
	return operation.Record{ResourceID: "/subscriptions/s/resourceGroups/rg", Kind: kind, CreatedBy: "p"}
}

func get(t *testing.T, n *node, id string) operation.Record {
	t.Helper()
	r, err := n.m.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestStartIsAtomic: Start writes the record and the task that runs it in
// one transaction: both exist after it, and when the task cannot be queued
// no record is left InProgress without one.
func TestStartIsAtomic(t *testing.T) {
	eachBackend(t, func(t *testing.T, open backend) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		a := newNode(t, open, "a", clk)
		a.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) { return nil, nil })
		if _, err := a.m.Start(ctx, rec("unknown"), nil); !errors.Is(err, operation.ErrNoHandler) {
			t.Fatalf("start of a kind without a handler: %v", err)
		}
		op, err := a.m.Start(ctx, rec("k"), map[string]string{"x": "y"})
		if err != nil {
			t.Fatal(err)
		}
		if r := get(t, a, op.ID); r.Status != operation.InProgress || string(r.Input) != `{"x":"y"}` {
			t.Fatalf("record: %+v", r)
		}
		tasks, err := a.q.Tasks(ctx)
		if err != nil || len(tasks) != 1 || tasks[0].Type != operation.TaskType {
			t.Fatalf("tasks: %+v %v", tasks, err)
		}

		// A task ID the queue remembers as done makes the enqueue fail:
		// the record must not be written either.
		const id = "0b3a0c54-7b5e-4d0f-9a43-3f8e0e3b2f01"
		if err := a.q.Enqueue(ctx, job.Task{ID: "op-" + id, Type: "other"}); err != nil {
			t.Fatal(err)
		}
		tk, ok, err := a.q.Lease(ctx, "a/1")
		for ok && tk.ID != "op-"+id && err == nil {
			tk, ok, err = a.q.Lease(ctx, "a/1")
		}
		if err != nil || !ok {
			t.Fatalf("lease: %v %v", ok, err)
		}
		if err := a.q.Ack(ctx, tk); err != nil {
			t.Fatal(err)
		}
		r := rec("k")
		r.ID = id
		if _, err := a.m.Start(ctx, r, nil); !errors.Is(err, job.ErrDuplicate) {
			t.Fatalf("start whose task cannot be queued: %v, want job.ErrDuplicate", err)
		}
		if _, err := a.m.Get(ctx, id); !errors.Is(err, operation.ErrNotFound) {
			t.Fatalf("a record was written without its task: %v", err)
		}
	})
}

// TestAnotherNodeFinishes: node a leases an operation's task and dies (it
// never runs it, never renews the lease); once the lease expires node b
// runs the handler and the operation ends exactly once, with b's result;
// a, which did not run it, serves its status from the store; and a
// handler's resource.Error fails the operation with its code.
func TestAnotherNodeFinishes(t *testing.T) {
	eachBackend(t, func(t *testing.T, open backend) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		a, b := newNode(t, open, "a", clk), newNode(t, open, "b", clk)
		var runs atomic.Int32
		for _, n := range []*node{a, b} {
			n.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) {
				runs.Add(1)
				var in struct{ Fail bool }
				if err := json.Unmarshal(rec.Input, &in); err != nil {
					return nil, err
				}
				if in.Fail {
					return nil, resource.Errorf(resource.KindConflict, "Nope", "no")
				}
				return map[string]string{"by": n.name}, nil
			})
		}
		op, err := a.m.Start(ctx, rec("k"), map[string]bool{"Fail": false})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := a.q.Lease(ctx, a.pool.Owner); err != nil || !ok {
			t.Fatalf("a's lease: %v %v", ok, err)
		}
		// a dies here. Before the lease expires b finds nothing to do.
		if err := b.pool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if r := get(t, b, op.ID); r.Status != operation.InProgress || runs.Load() != 0 {
			t.Fatalf("b ran a live lease's operation: %+v", r)
		}
		clk.Advance(a.q.LeaseDuration)
		if err := b.pool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		r := get(t, a, op.ID)
		if r.Status != operation.Succeeded || string(r.Result) != `{"by":"b"}` || runs.Load() != 1 {
			t.Fatalf("after b: %+v (runs %d)", r, runs.Load())
		}
		clk.Advance(time.Hour)
		if err := a.pool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.pool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if n := runs.Load(); n != 1 {
			t.Fatalf("the operation ran %d times", n)
		}
		if tasks, err := a.q.Tasks(ctx); err != nil || len(tasks) != 0 {
			t.Fatalf("tasks left: %+v %v", tasks, err)
		}

		bad, err := b.m.Start(ctx, rec("k"), map[string]bool{"Fail": true})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.pool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		r = get(t, b, bad.ID)
		if r.Status != operation.Failed || r.Error == nil || r.Error.Code != "Nope" || r.Error.Kind != resource.KindConflict {
			t.Fatalf("failed operation: %+v", r)
		}
	})
}

// TestPausedOwnerCannotComplete: node a runs an operation and pauses past
// its lease; node b takes the task and completes it; when a resumes, its
// completion is refused (job.ErrLeaseLost) and b's outcome stays.
func TestPausedOwnerCannotComplete(t *testing.T) {
	eachBackend(t, func(t *testing.T, open backend) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		a, b := newNode(t, open, "a", clk), newNode(t, open, "b", clk)
		started, resume := make(chan struct{}), make(chan struct{})
		a.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) {
			close(started)
			<-resume
			return "a", nil
		})
		b.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) { return "b", nil })
		op, err := a.m.Start(ctx, rec("k"), nil)
		if err != nil {
			t.Fatal(err)
		}
		tk, ok, err := a.q.Lease(ctx, a.pool.Owner)
		if err != nil || !ok {
			t.Fatalf("a's lease: %v %v", ok, err)
		}
		done := make(chan error, 1)
		go func() { done <- a.m.Run(ctx, tk) }() // a runs it without renewing: a pause
		<-started
		clk.Advance(a.q.LeaseDuration)
		if err := b.pool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		close(resume)
		if err := <-done; !errors.Is(err, job.ErrLeaseLost) {
			t.Fatalf("the paused owner's completion: %v, want job.ErrLeaseLost", err)
		}
		if r := get(t, a, op.ID); r.Status != operation.Succeeded || string(r.Result) != `"b"` {
			t.Fatalf("record: %+v, want b's result", r)
		}
	})
}

// TestLeaseRenewedWhileRunning: a pool renews the lease of the task its
// handler runs, so that a long operation stays its node's: another node
// finds nothing to take however long it runs.
func TestLeaseRenewedWhileRunning(t *testing.T) {
	eachBackend(t, func(t *testing.T, open backend) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		a, b := newNode(t, open, "a", clk), newNode(t, open, "b", clk)
		started, finish := make(chan struct{}), make(chan struct{})
		var runs atomic.Int32
		for _, n := range []*node{a, b} {
			n.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) {
				if runs.Add(1) == 1 {
					close(started)
				}
				<-finish
				return n.name, nil
			})
		}
		op, err := a.m.Start(ctx, rec("k"), nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := a.pool.RunOnce(ctx); done <- err }()
		<-started
		for range 6 { // two lease durations, a third at a time
			waitTimers(t, clk)
			clk.Advance(a.q.LeaseDuration / 3)
			waitRenewed(t, a, clk.Now())
			if err := b.pool.Drain(ctx); err != nil {
				t.Fatal(err)
			}
		}
		close(finish)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if r := get(t, b, op.ID); r.Status != operation.Succeeded || string(r.Result) != `"a"` || runs.Load() != 1 {
			t.Fatalf("record: %+v (runs %d), want a's result from one run", r, runs.Load())
		}
	})
}

// opTasks returns the queued tasks of operations (not the pruning task's).
func opTasks(t *testing.T, n *node) []job.Task {
	t.Helper()
	tasks, err := n.q.Tasks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []job.Task
	for _, tk := range tasks {
		if strings.HasPrefix(tk.ID, "op-") {
			out = append(out, tk)
		}
	}
	return out
}

// waitTimers waits until a goroutine sleeps on clk (the renewer).
func waitTimers(t *testing.T, clk *clock.Fake) {
	t.Helper()
	for i := 0; clk.Pending() == 0; i++ {
		if i > 10000 {
			t.Fatal("no timer is waiting")
		}
		time.Sleep(time.Millisecond)
	}
}

// waitRenewed waits until a's task holds a lease past now.
func waitRenewed(t *testing.T, a *node, now time.Time) {
	t.Helper()
	for i := 0; ; i++ {
		tasks, err := a.q.Tasks(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(tasks) == 1 && tasks[0].LeaseExpiry.After(now.Add(a.q.LeaseDuration/2)) {
			return
		}
		if i > 10000 {
			t.Fatalf("the lease was not renewed: %+v", tasks)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLater: a handler that waits on something else (job.Later) releases
// its task without using a delivery, and runs again when it is due.
func TestLater(t *testing.T) {
	eachBackend(t, func(t *testing.T, open backend) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		a := newNode(t, open, "a", clk)
		var runs atomic.Int32
		a.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) {
			if runs.Add(1) <= 5 {
				return nil, &job.Later{After: time.Second}
			}
			return "done", nil
		})
		op, err := a.m.Start(ctx, rec("k"), nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 6 { // more deferrals than the task's delivery limit
			if err := a.pool.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			clk.Advance(time.Second)
		}
		if r := get(t, a, op.ID); r.Status != operation.Succeeded || runs.Load() != 6 {
			t.Fatalf("record: %+v (runs %d)", r, runs.Load())
		}
	})
}

// TestRecover: at start an operation left InProgress without a task (by a
// version that ran operations in memory) gets one if its kind has a
// handler, and fails with OperationInterrupted if not; an operation with
// its task is left to it; a dead task fails its operation.
func TestRecover(t *testing.T) {
	eachBackend(t, func(t *testing.T, open backend) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		a := newNode(t, open, "a", clk)
		a.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) { return "resumed", nil })
		running, err := a.m.Start(ctx, rec("k"), nil)
		if err != nil {
			t.Fatal(err)
		}
		legacy := func(id, kind string) {
			r := rec(kind)
			r.ID, r.Status, r.StartTime = id, operation.InProgress, t0
			b, _ := json.Marshal(r)
			if err := a.st.Update(ctx, func(tx store.Tx) error {
				return tx.Put(ctx, &store.Object{Kind: "operation", Key: "/operations/" + id, Data: b}, store.PutOptions{})
			}); err != nil {
				t.Fatal(err)
			}
		}
		legacy("resumable", "k")
		legacy("lost", "gone")
		if err := a.m.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		if r := get(t, a, "lost"); r.Status != operation.Failed || r.Error == nil || r.Error.Code != "OperationInterrupted" {
			t.Fatalf("an operation no handler runs: %+v", r)
		}
		if tasks := opTasks(t, a); len(tasks) != 2 {
			t.Fatalf("tasks: %+v, want the running one's and the resumed one's", tasks)
		}
		if err := a.pool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{running.ID, "resumable"} {
			if r := get(t, a, id); r.Status != operation.Succeeded || string(r.Result) != `"resumed"` {
				t.Fatalf("%s: %+v", id, r)
			}
		}

		// A task interrupted past its delivery limit fails its operation.
		dead, err := a.m.Start(ctx, rec("k"), nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < a.q.DefaultMaxAttempts; i++ {
			if _, ok, err := a.q.Lease(ctx, a.pool.Owner); err != nil || !ok {
				t.Fatalf("lease: %v %v", ok, err)
			}
			if err := a.pool.Recover(ctx); err != nil { // a restart
				t.Fatal(err)
			}
		}
		if r := get(t, a, dead.ID); r.Status != operation.Failed || r.Error == nil || r.Error.Code != "OperationInterrupted" {
			t.Fatalf("operation of a dead task: %+v", r)
		}
		if _, err := a.m.Get(ctx, "nope"); !errors.Is(err, operation.ErrNotFound) {
			t.Fatalf("unknown operation: %v", err)
		}
	})
}

// TestFailerEndsThePending: an operation that fails for good — its task
// out of deliveries, or its handler's error — runs its kind's Failer in
// the transaction that writes the failure, whatever node writes it; a
// Failer that cannot end the pending resource leaves the operation
// InProgress too (one transaction), and an operation that succeeds does
// not call it.
func TestFailerEndsThePending(t *testing.T) {
	eachBackend(t, func(t *testing.T, open backend) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		a := newNode(t, open, "a", clk)
		const resKind = "test.resource"
		state := func(id string) string {
			var s string
			if err := a.st.View(ctx, func(tx store.Tx) error {
				o, err := tx.Get(ctx, resKind, "/"+id)
				s = string(o.Data)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return s
		}
		var refuse atomic.Bool
		a.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) {
			if string(rec.Input) == `"fail"` {
				return nil, errors.New("the store is down")
			}
			return nil, nil
		})
		a.m.OnFail("k", func(ctx context.Context, tx store.Tx, rec operation.Record) error {
			if refuse.Load() {
				return errors.New("refused")
			}
			return tx.Put(ctx, &store.Object{Kind: resKind, Key: "/" + rec.ID, Data: []byte("Failed: " + rec.Error.Code)}, store.PutOptions{})
		})
		start := func(in string) operation.Record {
			op, err := a.m.Start(ctx, rec("k"), in)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.st.Update(ctx, func(tx store.Tx) error {
				return tx.Put(ctx, &store.Object{Kind: resKind, Key: "/" + op.ID, Data: []byte("Creating")}, store.PutOptions{})
			}); err != nil {
				t.Fatal(err)
			}
			return op
		}

		// A task whose node died on every delivery.
		dead := start("ok")
		interrupt := func() {
			for i := 0; i < a.q.DefaultMaxAttempts; i++ {
				if _, ok, err := a.q.Lease(ctx, a.pool.Owner); err != nil || !ok {
					t.Fatalf("lease: %v %v", ok, err)
				}
				if err := a.pool.Recover(ctx); err != nil { // a restart
					t.Fatal(err)
				}
			}
		}
		interrupt()
		if r := get(t, a, dead.ID); r.Status != operation.Failed || state(dead.ID) != "Failed: OperationInterrupted" {
			t.Fatalf("dead task: operation %+v, resource %q", r, state(dead.ID))
		}

		// A handler's error.
		failed := start("fail")
		if err := a.pool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if r := get(t, a, failed.ID); r.Status != operation.Failed || state(failed.ID) != "Failed: InternalServerError" {
			t.Fatalf("failed handler: operation %+v, resource %q", r, state(failed.ID))
		}

		// Success leaves the resource to the handler.
		ok := start("ok")
		if err := a.pool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if r := get(t, a, ok.ID); r.Status != operation.Succeeded || state(ok.ID) != "Creating" {
			t.Fatalf("success: operation %+v, resource %q", r, state(ok.ID))
		}

		// A Failer that fails does not keep the operation InProgress:
		// it ends Failed all the same, whether its task died or its
		// handler failed, and only the Failer's own writes are dropped.
		refuse.Store(true)
		stuck := start("ok")
		interrupt()
		if r := get(t, a, stuck.ID); r.Status != operation.Failed || r.Error.Code != "OperationInterrupted" || state(stuck.ID) != "Creating" {
			t.Fatalf("refused Failer of a dead task: operation %+v, resource %q", r, state(stuck.ID))
		}
		failing := start("fail")
		if err := a.pool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if r := get(t, a, failing.ID); r.Status != operation.Failed || r.Error.Code != "InternalServerError" || state(failing.ID) != "Creating" {
			t.Fatalf("refused Failer of a failed handler: operation %+v, resource %q", r, state(failing.ID))
		}
		if ts := opTasks(t, a); len(ts) != 0 {
			t.Fatalf("tasks left: %+v", ts)
		}
	})
}

// TestLeaseLostMidRun: node b takes the task of an operation that node a
// is running (a paused past its lease: b's clock is ahead); a's next
// renewal finds the lease lost and cancels the handler with
// job.ErrLeaseLost as its cause; the result a's handler returns after that
// is not written, and b's run ends the operation.
func TestLeaseLostMidRun(t *testing.T) {
	eachBackend(t, func(t *testing.T, open backend) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		a, b := newNode(t, open, "a", clk), newNode(t, open, "b", clock.NewFake(t0.Add(time.Hour)))
		started, cause := make(chan struct{}), make(chan error, 1)
		a.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) {
			close(started)
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return "a", nil // a handler that finishes its work regardless
		})
		b.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) { return "b", nil })
		op, err := a.m.Start(ctx, rec("k"), nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := a.pool.RunOnce(ctx); done <- err }()
		<-started
		for clk.Pending() == 0 { // a's renewer sleeps on the clock
			runtime.Gosched()
		}
		tk, ok, err := b.q.Lease(ctx, b.pool.Owner)
		if err != nil || !ok {
			t.Fatalf("b's lease: %v %v", ok, err)
		}
		clk.Advance(a.q.LeaseDuration / 3)
		if c := <-cause; !errors.Is(c, job.ErrLeaseLost) {
			t.Fatalf("the handler's context ended with %v, want job.ErrLeaseLost", c)
		}
		if err := <-done; err != nil {
			t.Fatalf("a's run: %v", err)
		}
		if r := get(t, a, op.ID); r.Status != operation.InProgress {
			t.Fatalf("a's result after the loss was written: %+v", r)
		}
		if err := b.m.Run(ctx, tk); err != nil {
			t.Fatal(err)
		}
		if r := get(t, a, op.ID); r.Status != operation.Succeeded || string(r.Result) != `"b"` {
			t.Fatalf("record: %+v, want b's result", r)
		}
	})
}

// TestPrune: the pruning task, which Recover queues once however many
// nodes start, deletes on one node at a time the records of operations
// that ended more than the retention ago (DefaultRetention on the
// injected clock), keeps newer ones and those in progress however old,
// and runs again every PruneEvery; a run whose lease passed to another
// worker deletes nothing.
func TestPrune(t *testing.T) {
	eachBackend(t, func(t *testing.T, open backend) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		a, b := newNode(t, open, "a", clk), newNode(t, open, "b", clk)
		for _, n := range []*node{a, b} {
			n.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) { return nil, nil })
			n.m.Register("slow", func(ctx context.Context, rec operation.Record) (any, error) {
				return nil, &job.Later{After: 30 * 24 * time.Hour}
			})
		}
		old, err := a.m.Complete(ctx, rec("k"), "old", nil)
		if err != nil {
			t.Fatal(err)
		}
		running, err := a.m.Start(ctx, rec("slow"), nil)
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * 24 * time.Hour)
		newer, err := a.m.Complete(ctx, rec("k"), "newer", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []*node{a, b} {
			if err := n.m.Recover(ctx); err != nil {
				t.Fatal(err)
			}
		}
		prune := pruneTasks(t, a)
		if len(prune) != 1 || !job.Ready(prune[0], clk.Now()) {
			t.Fatalf("pruning tasks: %+v, want one, due", prune)
		}
		kept := func(want map[string]bool) {
			t.Helper()
			for id, w := range want {
				_, err := a.m.Get(ctx, id)
				if got := err == nil; got != w || (err != nil && !errors.Is(err, operation.ErrNotFound)) {
					t.Fatalf("operation %s kept: %v (%v), want %v", id, got, err, w)
				}
			}
		}
		clk.Advance(operation.DefaultRetention - 2*24*time.Hour) // old ended exactly the retention ago
		if err := b.pool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		kept(map[string]bool{old.ID: true, running.ID: true, newer.ID: true})

		// A run whose lease passed to another worker deletes nothing.
		clk.Advance(operation.DefaultPruneEvery)
		tk, ok, err := a.q.Lease(ctx, a.pool.Owner)
		if err != nil || !ok || tk.ID != prune[0].ID {
			t.Fatalf("a's lease of the pruning: %+v %v %v", tk, ok, err)
		}
		clk.Advance(a.q.LeaseDuration)
		other, ok, err := b.q.Lease(ctx, b.pool.Owner)
		if err != nil || !ok || other.ID != prune[0].ID {
			t.Fatalf("b's lease of the pruning: %+v %v %v", other, ok, err)
		}
		if err := a.m.Run(ctx, tk); !errors.Is(err, job.ErrLeaseLost) {
			t.Fatalf("a's pruning after its lease passed: %v, want job.ErrLeaseLost", err)
		}
		kept(map[string]bool{old.ID: true})
		if err := b.m.Run(ctx, other); err == nil {
			t.Fatal("a pruning run did not defer its task")
		} else if later, ok := errors.AsType[*job.Later](err); !ok || later.After != operation.DefaultPruneEvery {
			t.Fatalf("pruning run: %v, want a deferral of DefaultPruneEvery", err)
		}
		kept(map[string]bool{old.ID: false, running.ID: true, newer.ID: true})
		running2 := get(t, a, running.ID)
		if running2.Status != operation.InProgress {
			t.Fatalf("the operation in progress: %+v", running2)
		}
	})
}

// pruneTasks returns the queued pruning tasks.
func pruneTasks(t *testing.T, n *node) []job.Task {
	t.Helper()
	tasks, err := n.q.Tasks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []job.Task
	for _, tk := range tasks {
		if !strings.HasPrefix(tk.ID, "op-") {
			out = append(out, tk)
		}
	}
	return out
}

// TestInProgressIndex: Running and Recover read the operations in
// progress from their index, which holds exactly those (a record leaves
// it when it ends); on a store an earlier version wrote, without the
// index, they read every record and Recover builds it.
func TestInProgressIndex(t *testing.T) {
	eachBackend(t, func(t *testing.T, open backend) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		a := newNode(t, open, "a", clk)
		a.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) { return nil, nil })
		indexed := func() map[string]bool {
			t.Helper()
			out := map[string]bool{}
			if err := a.st.View(ctx, func(tx store.Tx) error {
				objs, err := tx.List(ctx, store.Query{Kind: "operation.inprogress"})
				for _, o := range objs {
					out[strings.TrimPrefix(o.Key, "/operations/")] = true
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return out
		}
		// An operation an earlier version left InProgress, unindexed.
		legacy := rec("k")
		legacy.ID, legacy.Status, legacy.StartTime, legacy.ResourceID = "legacy", operation.InProgress, t0, "/subscriptions/s/resourceGroups/Legacy"
		data, _ := json.Marshal(legacy)
		if err := a.st.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Object{Kind: "operation", Key: "/operations/legacy", Data: data}, store.PutOptions{})
		}); err != nil {
			t.Fatal(err)
		}
		r := rec("k")
		r.ResourceID = "/subscriptions/s/resourceGroups/New"
		op, err := a.m.Start(ctx, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		run, err := a.m.Running(ctx)
		if err != nil || len(run) != 2 || !run["/subscriptions/s/resourcegroups/legacy"] || !run["/subscriptions/s/resourcegroups/new"] {
			t.Fatalf("running before the index is built: %v %v", run, err)
		}
		if err := a.m.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		if got := indexed(); len(got) != 2 || !got["legacy"] || !got[op.ID] {
			t.Fatalf("index: %v, want both operations in progress", got)
		}
		if run, err := a.m.Running(ctx); err != nil || len(run) != 2 {
			t.Fatalf("running from the index: %v %v", run, err)
		}
		if err := a.pool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if got := indexed(); len(got) != 0 {
			t.Fatalf("index after the operations ended: %v", got)
		}
		// An entry whose record is gone names nothing, and stops no start.
		if err := a.st.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Object{Kind: "operation.inprogress", Key: "/operations/gone", Data: []byte("{}")}, store.PutOptions{})
		}); err != nil {
			t.Fatal(err)
		}
		if run, err := a.m.Running(ctx); err != nil || len(run) != 0 {
			t.Fatalf("running after the operations ended: %v %v", run, err)
		}
		if err := a.m.Recover(ctx); err != nil {
			t.Fatalf("recover with an entry whose record is gone: %v", err)
		}
	})
}

// TestDeadHomeFailsOperation: an operation on a disk homed on node a,
// which stopped beating, is failed by node b's sweep once a has been down
// the node timeout plus the grace: Failed with NodeUnavailable naming a,
// and its kind's Failer ends the resource it left pending.
func TestDeadHomeFailsOperation(t *testing.T) {
	eachBackend(t, func(t *testing.T, open backend) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		a, b := newNode(t, open, "a", clk), newNode(t, open, "b", clk)
		home := func(context.Context, store.Tx, string) (string, error) { return "a", nil }
		failed := map[string]string{}
		for _, n := range []*node{a, b} {
			n.m.Home = home
			n.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) { return nil, nil })
			n.m.OnFail("k", func(ctx context.Context, tx store.Tx, rec operation.Record) error {
				failed[rec.ID] = rec.Error.Code
				return nil
			})
		}
		reg := &cluster.Registry{Store: b.st, Clock: clk}
		if _, err := reg.Register(ctx, cluster.Node{Name: "a", Incarnation: "a1"}); err != nil {
			t.Fatal(err)
		}
		r := rec("k")
		r.Disk = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d1"
		op, err := a.m.Start(ctx, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		gone := func(ctx context.Context, tx store.Tx, tk job.Task) (error, error) {
			return reg.GoneTx(ctx, tx, tk.Node, "The disk 'd1'", clk.Now(), tk.CreatedAt, time.Minute)
		}
		clk.Advance(cluster.DefaultNodeTimeout + time.Minute + time.Second)
		if n, err := b.pool.FailStranded(ctx, nil, gone, nil); err != nil || n != 1 {
			t.Fatalf("b's sweep failed %d tasks: %v", n, err)
		}
		got := get(t, b, op.ID)
		if got.Status != operation.Failed || got.Error == nil || got.Error.Code != cluster.CodeNodeUnavailable ||
			!strings.Contains(got.Error.Message, "node 'a'") || failed[op.ID] != cluster.CodeNodeUnavailable {
			t.Fatalf("the operation of a dead home: %+v (error %+v), Failer saw %q", got, got.Error, failed[op.ID])
		}
		if ts := opTasks(t, b); len(ts) != 0 {
			t.Fatalf("tasks left: %+v", ts)
		}
	})
}

// TestPruneTaskStaysQueued: the pruning task is never lost. Interrupted
// on every delivery (its node dies mid-run, more times in a row than any
// delivery limit), it is still queued; and when it has ended (a node of
// a version without it acked it: its ID is remembered as done), two nodes
// starting at once queue it again, once.
func TestPruneTaskStaysQueued(t *testing.T) {
	eachBackend(t, func(t *testing.T, open backend) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		a, b := newNode(t, open, "a", clk), newNode(t, open, "b", clk)
		if err := a.m.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range 120 {
			tk, ok, err := a.q.Lease(ctx, a.pool.Owner)
			if err != nil || !ok || !strings.HasPrefix(tk.ID, "operation-prune") {
				t.Fatalf("lease %d of the pruning task: %+v %v %v", i, tk, ok, err)
			}
			if err := a.pool.Recover(ctx); err != nil { // a restart
				t.Fatal(err)
			}
			if err := a.m.Recover(ctx); err != nil {
				t.Fatal(err)
			}
			clk.Advance(a.q.Backoff(tk.Attempts))
		}
		if p := pruneTasks(t, a); len(p) != 1 {
			t.Fatalf("pruning tasks after 120 interrupted runs: %+v, want one", p)
		}

		// It ends; both nodes start at once.
		tk, ok, err := a.q.Lease(ctx, a.pool.Owner)
		if err != nil || !ok {
			t.Fatalf("lease: %v %v", ok, err)
		}
		if err := a.q.Ack(ctx, tk); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 2)
		for _, n := range []*node{a, b} {
			go func() { errs <- n.m.Recover(ctx) }()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		p := pruneTasks(t, a)
		if len(p) != 1 || !job.Ready(p[0], clk.Now()) {
			t.Fatalf("pruning tasks after two starts: %+v, want one, due", p)
		}
		// It runs, and defers itself to its next run.
		if err := b.pool.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if p := pruneTasks(t, b); len(p) != 1 || !p[0].NotBefore.Equal(clk.Now().Add(operation.DefaultPruneEvery)) {
			t.Fatalf("pruning task after its run: %+v", p)
		}
	})
}
