package worker_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/job"
	"coffer/internal/store/memstore"
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
