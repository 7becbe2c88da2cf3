package worker_test

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/job"
	"coffer/internal/store"
	"coffer/internal/store/memstore"
	"coffer/internal/store/sqlite"
	"coffer/internal/worker"
)

// running starts RunOnce on a pool whose one handler blocks until its
// context ends and reports the context's cause; it returns once the
// handler runs.
func running(t *testing.T) (*worker.Pool, *clock.Fake, <-chan error) {
	t.Helper()
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	q := job.NewQueue(memstore.New(), clk)
	p := worker.NewPool(q, clk, nil, 1)
	started := make(chan struct{})
	cause := make(chan error, 1)
	p.Handle("slow", func(ctx context.Context, _ job.Task) error {
		close(started)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return nil
	})
	if err := q.Enqueue(ctx, job.Task{ID: "a", Type: "slow"}); err != nil {
		t.Fatal(err)
	}
	go func() {
		if _, err := p.RunOnce(ctx); err != nil {
			t.Errorf("RunOnce: %v", err)
		}
	}()
	<-started
	return p, clk, cause
}

// tick advances clk by d once the watcher waits on its timer, and
// returns once it waits on the next one (or has ended).
func tick(clk *clock.Fake, d time.Duration) {
	waiting(clk)
	clk.Advance(d)
}

// waiting returns once a timer of clk is pending.
func waiting(clk *clock.Fake) {
	for clk.Pending() == 0 {
		runtime.Gosched()
	}
}

// TestCancelRunningTask: a task cancelled while a worker runs it (the
// mark another node's cancel request leaves in the store) has its
// handler's context cancelled with job.ErrCanceled at the next watch.
func TestCancelRunningTask(t *testing.T) {
	p, clk, cause := running(t)
	if removed, err := p.Queue.Cancel(context.Background(), "a"); err != nil || removed {
		t.Fatalf("cancel the leased task: removed %v, %v", removed, err)
	}
	tick(clk, p.Watch)
	if err := <-cause; !errors.Is(err, job.ErrCanceled) {
		t.Fatalf("handler's context cause: %v, want job.ErrCanceled", err)
	}
}

// TestRunningTaskKeepsItsLease: the watch renews a running task's lease,
// so that a task running longer than the lease duration is not handed to
// another worker; the handler's context stays live meanwhile.
func TestRunningTaskKeepsItsLease(t *testing.T) {
	p, clk, cause := running(t)
	ctx := context.Background()
	for range 4 * int(p.Queue.LeaseDuration/p.Watch) / 3 {
		tick(clk, p.Watch)
	}
	waiting(clk) // the watcher has read the task after the last tick
	if _, ok, err := p.Queue.Lease(ctx, "other"); err != nil || ok {
		t.Fatalf("another worker leased the running task: %v %v", ok, err)
	}
	ts, err := p.Queue.Tasks(ctx)
	if err != nil || len(ts) != 1 || !ts[0].LeaseExpiry.After(clk.Now()) {
		t.Fatalf("the running task's lease: %+v %v", ts, err)
	}
	select {
	case err := <-cause:
		t.Fatalf("the handler's context ended: %v", err)
	default:
	}
	if _, err := p.Queue.Cancel(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	tick(clk, p.Watch)
	if err := <-cause; !errors.Is(err, job.ErrCanceled) {
		t.Fatalf("cause: %v", err)
	}
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TestRenewalFindsLeaseLost: while a handler runs, another worker takes
// its task (this one paused past the lease, as the other's clock shows);
// the next renewal finds the lease lost and cancels the handler, whose
// context ends with job.ErrLeaseLost as its cause; the result the handler
// writes afterwards, with its task's ack, does not commit; the task stays
// the other worker's (this one neither acks nor nacks it). Time is a fake
// clock: the renewal runs when the test advances it.
func TestRenewalFindsLeaseLost(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := clock.NewFake(t0)
	q := job.NewQueue(st, clk)
	if err := q.Enqueue(ctx, job.Task{ID: "t", Type: "x"}); err != nil {
		t.Fatal(err)
	}
	const resultKind = "test.result"
	started := make(chan struct{})
	type outcome struct{ cause, write error }
	ended := make(chan outcome, 1)
	pool := worker.NewPool(q, clk, nil, 1)
	pool.Owner = "a/1"
	pool.Handle("x", func(hctx context.Context, tk job.Task) error {
		close(started)
		<-hctx.Done()
		// Work that goes on regardless: its result and the ack, fenced
		// by the lease, in one transaction.
		werr := st.Update(context.WithoutCancel(hctx), func(tx store.Tx) error {
			if err := tx.Put(ctx, &store.Object{Kind: resultKind, Key: "/t", Data: []byte("a")}, store.PutOptions{}); err != nil {
				return err
			}
			return q.CompleteTx(ctx, tx, tk)
		})
		ended <- outcome{context.Cause(hctx), werr}
		return werr
	})
	done := make(chan error, 1)
	go func() {
		ran, err := pool.RunOnce(ctx)
		if err == nil && !ran {
			err = errors.New("no task ran")
		}
		done <- err
	}()
	<-started
	for clk.Pending() == 0 { // the renewer sleeps on the clock
		runtime.Gosched()
	}

	// Worker b, whose clock is past a's lease, takes the task.
	other := job.NewQueue(st, clock.NewFake(t0.Add(q.LeaseDuration)))
	b, ok, err := other.Lease(ctx, "b/1")
	if err != nil || !ok || b.ID != "t" {
		t.Fatalf("b's lease: %+v %v %v", b, ok, err)
	}
	clk.Advance(q.LeaseDuration / 3) // a's renewal
	var out outcome
	for waiting := true; waiting; {
		select {
		case out = <-ended:
			waiting = false
		default:
			// A renewer that did not see the loss sleeps on the clock
			// again, and the handler would run on.
			if clk.Pending() > 0 {
				t.Fatal("the renewal went on: the handler was not cancelled")
			}
			runtime.Gosched()
		}
	}
	if !errors.Is(out.cause, job.ErrLeaseLost) {
		t.Fatalf("the handler's context ended with %v, want job.ErrLeaseLost", out.cause)
	}
	if !errors.Is(out.write, job.ErrLeaseLost) {
		t.Fatalf("the handler's write after the loss: %v, want job.ErrLeaseLost", out.write)
	}
	if err := <-done; err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	if err := st.View(ctx, func(tx store.Tx) error {
		_, err := tx.Get(ctx, resultKind, "/t")
		return err
	}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the result written after the loss committed: %v", err)
	}
	tasks, err := q.Tasks(ctx)
	if err != nil || len(tasks) != 1 || tasks[0].LeaseOwner != "b/1" || tasks[0].Attempts != b.Attempts || tasks[0].State != job.StateLeased {
		t.Fatalf("tasks: %+v %v, want b's lease as b took it", tasks, err)
	}
	if err := other.Ack(ctx, b); err != nil {
		t.Fatalf("b's ack: %v", err)
	}
}
