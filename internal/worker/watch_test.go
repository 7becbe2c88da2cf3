package worker_test

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/job"
	"coffer/internal/store"
	"coffer/internal/store/memstore"
	"coffer/internal/worker"
)

// counting counts the transactions run on a store.
type counting struct {
	store.Store
	n atomic.Int64
}

func (c *counting) View(ctx context.Context, fn func(tx store.Tx) error) error {
	c.n.Add(1)
	return c.Store.View(ctx, fn)
}

func (c *counting) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	c.n.Add(1)
	return c.Store.Update(ctx, fn)
}

// watched starts RunOnce on a pool over a counting store whose one
// handler, h, runs task "a"; it returns once h runs.
func watched(t *testing.T, h func(ctx context.Context, tk job.Task) error) (*worker.Pool, *clock.Fake, *counting, <-chan error) {
	t.Helper()
	ctx := context.Background()
	clk := clock.NewFake(t0)
	st := &counting{Store: memstore.New()}
	q := job.NewQueue(st, clk)
	p := worker.NewPool(q, clk, quiet, 1)
	started := make(chan struct{})
	p.Handle("slow", func(ctx context.Context, tk job.Task) error {
		close(started)
		return h(ctx, tk)
	})
	if err := q.Enqueue(ctx, job.Task{ID: "a", Type: "slow"}); err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() {
		_, err := p.RunOnce(ctx)
		ran <- err
	}()
	<-started
	return p, clk, st, ran
}

// TestWatchReadsOncePerPeriod: a running task costs its watch one
// transaction per two seconds (the documented cancel latency), plus a
// lease extension every third of the lease: over ten minutes of a long
// task, 300 reads and 6 extensions, where a cancel poll of its own every
// second came on top of the renewals before. A cancel made after that is
// seen within two seconds.
func TestWatchReadsOncePerPeriod(t *testing.T) {
	cause := make(chan error, 1)
	p, clk, st, ran := watched(t, func(ctx context.Context, _ job.Task) error {
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return nil
	})
	const span = 10 * time.Minute
	waiting(clk)
	before := st.n.Load()
	for end := clk.Now().Add(span); clk.Now().Before(end); {
		tick(clk, time.Second)
	}
	waiting(clk) // the last read is done
	got := st.n.Load() - before
	want := int64(span/(2*time.Second) + span/(p.Queue.LeaseDuration/3))
	t.Logf("the watch of one running task: %d transactions in %s of its run", got, span)
	if got > want {
		t.Fatalf("the watch of a running task ran %d transactions in %s, want at most %d (one per 2s, and the extensions)", got, span, want)
	}
	select {
	case err := <-cause:
		t.Fatalf("the handler's context ended: %v", err)
	default:
	}
	if _, err := p.Queue.Cancel(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	tick(clk, time.Second)
	tick(clk, time.Second)
	if err := <-cause; !errors.Is(err, job.ErrCanceled) {
		t.Fatalf("cause: %v", err)
	}
	if err := <-ran; err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
}

// TestTaskGoneStopsHandler: a running task that leaves the queue other
// than by its handler's ack (another worker finished it, or it was
// removed) has its handler's context cancelled at the next watch, with a
// cause that wraps job.ErrNoTask; the worker then neither acks nor nacks
// it, and reports no error.
func TestTaskGoneStopsHandler(t *testing.T) {
	cause := make(chan error, 1)
	p, clk, _, ran := watched(t, func(ctx context.Context, _ job.Task) error {
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return context.Cause(ctx)
	})
	ctx := context.Background()
	if err := p.Queue.Store.Update(ctx, func(tx store.Tx) error {
		return p.Queue.Backend.Finish(ctx, tx, "a", clk.Now())
	}); err != nil {
		t.Fatal(err)
	}
	tick(clk, p.Watch)
	// A hang guard only: the old watch let the handler run on for ever.
	select {
	case err := <-cause:
		if !errors.Is(err, job.ErrNoTask) {
			t.Fatalf("the handler's context ended with %v, want job.ErrNoTask", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the handler of a task that left the queue runs on")
	}
	if err := <-ran; err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
}

// TestOwnAckKeepsHandler: a handler that acks its task in its own
// transaction (as backups and operations do, with their results) and then
// goes on is not cancelled when the watch finds the task gone.
func TestOwnAckKeepsHandler(t *testing.T) {
	ready, acked, proceed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	cause := make(chan error, 1)
	var q *job.Queue
	p, clk, st, ran := watched(t, func(ctx context.Context, tk job.Task) error {
		<-ready
		if err := q.Store.Update(ctx, func(tx store.Tx) error { return q.CompleteTx(ctx, tx, tk) }); err != nil {
			return err
		}
		close(acked)
		<-proceed
		cause <- context.Cause(ctx)
		return nil
	})
	q = p.Queue
	close(ready)
	<-acked
	n := st.n.Load()
	tick(clk, p.Watch)
	for st.n.Load() == n { // the watch has read the task
		runtime.Gosched()
	}
	close(proceed)
	if err := <-cause; err != nil {
		t.Fatalf("the handler's context ended after its own ack: %v", err)
	}
	if err := <-ran; err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
}
