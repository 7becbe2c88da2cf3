package retry_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/blobtest"
	"coffer/internal/blobstore/faulty"
	"coffer/internal/blobstore/mem"
	"coffer/internal/blobstore/metrics"
	"coffer/internal/blobstore/retry"
	"coffer/internal/clock"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Store { return retry.New(mem.New(), retry.Options{}) })
}

var (
	errTransient = fmt.Errorf("%w: connection reset", blobstore.ErrTransient)
	errThrottled = fmt.Errorf("%w: 503 SlowDown", blobstore.ErrThrottled)
)

// run calls f in a goroutine and, whenever f waits on the fake clock,
// moves the clock on in 10 ms steps, until f returns.
func run(clk *clock.Fake, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	for {
		select {
		case err := <-done:
			return err
		default:
		}
		if clk.Pending() > 0 {
			clk.Advance(10 * time.Millisecond)
		} else {
			runtime.Gosched()
		}
	}
}

func fakeClock() *clock.Fake { return clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

// Transient and throttled failures are retried until the call succeeds.
func TestRetriesTransientErrors(t *testing.T) {
	for _, fail := range []error{errTransient, errThrottled} {
		clk := fakeClock()
		inner := faulty.New(mem.New())
		for i := 1; i <= 3; i++ {
			inner.Inject(faulty.Fault{Op: faulty.OpPut, Nth: i, Err: fail})
		}
		s := retry.New(inner, retry.Options{Clock: clk})
		if err := run(clk, func() error { return s.Put(context.Background(), "a", []byte("x")) }); err != nil {
			t.Fatalf("Put after 3 %v failures: %v", fail, err)
		}
		if got := inner.Count(faulty.OpPut); got != 4 {
			t.Errorf("%v: %d attempts, want 4", fail, got)
		}
		if got := s.Retries(metrics.OpPut); got != 3 {
			t.Errorf("%v: Retries(put) = %d, want 3", fail, got)
		}
	}
}

// Missing objects, permanent and unmarked errors are returned at once.
func TestDoesNotRetryOtherErrors(t *testing.T) {
	for _, fail := range []error{
		blobstore.ErrNotFound,
		faulty.ErrNoSpace(),
		&faulty.PermanentError{Err: errTransient}, // marked transient, yet permanent
		errors.New("unmarked"),
	} {
		inner := faulty.New(mem.New())
		inner.Inject(faulty.Fault{Op: faulty.OpGet, Err: fail})
		s := retry.New(inner, retry.Options{Clock: fakeClock()})
		if _, err := s.Get(context.Background(), "a"); !errors.Is(err, fail) {
			t.Errorf("Get = %v, want %v", err, fail)
		}
		if got := inner.Count(faulty.OpGet); got != 1 {
			t.Errorf("%v: %d attempts, want 1", fail, got)
		}
	}
}

// A call that keeps failing gives up when its budget is spent, with the
// last error.
func TestGivesUpAfterBudget(t *testing.T) {
	clk := fakeClock()
	inner := faulty.New(mem.New())
	inner.Inject(faulty.Fault{Op: faulty.OpStat, Err: errThrottled})
	s := retry.New(inner, retry.Options{Clock: clk, Base: time.Second, Max: 8 * time.Second, Budget: time.Minute})
	start := clk.Now()
	err := run(clk, func() error { _, err := s.Stat(context.Background(), "a"); return err })
	if !errors.Is(err, blobstore.ErrThrottled) {
		t.Fatalf("Stat = %v, want the throttled error", err)
	}
	// Waits of at least 0.5, 1, 2, 4, 4, … seconds fit a minute at most 16 times.
	if n := inner.Count(faulty.OpStat); n < 5 || n > 17 {
		t.Errorf("%d attempts in a one-minute budget", n)
	}
	if el := clk.Now().Sub(start); el > time.Minute {
		t.Errorf("retried for %v, past the one-minute budget", el)
	}
}

// The end of the context ends the wait between attempts.
func TestContextEndsWait(t *testing.T) {
	clk := fakeClock() // never advanced: only the context can end the wait
	inner := faulty.New(mem.New())
	inner.Inject(faulty.Fault{Op: faulty.OpDelete, Err: errTransient})
	s := retry.New(inner, retry.Options{Clock: clk})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Delete(ctx, "a") }()
	for clk.Pending() == 0 {
		runtime.Gosched()
	}
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || !errors.Is(err, blobstore.ErrTransient) {
		t.Errorf("Delete = %v, want context.Canceled with the last error", err)
	}
	if blobstore.Retryable(err) {
		t.Errorf("an error of a cancelled call is Retryable")
	}
}

// flakyList fails a listing after delivering some names, the first times
// it is called.
type flakyList struct {
	blobstore.Store
	mu        sync.Mutex
	failAfter []int // names delivered before failing, per call
	calls     int
}

func (f *flakyList) List(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	f.mu.Lock()
	call := f.calls
	f.calls++
	f.mu.Unlock()
	n := 0
	return f.Store.List(ctx, prefix, func(in blobstore.Info) error {
		if call < len(f.failAfter) && n == f.failAfter[call] {
			return errTransient
		}
		n++
		return fn(in)
	})
}

// A retried List delivers every name once, in order.
func TestListResumes(t *testing.T) {
	ctx := context.Background()
	m := mem.New()
	var want []string
	for i := range 10 {
		name := fmt.Sprintf("l/%02d", i)
		want = append(want, name)
		m.Put(ctx, name, nil)
	}
	inner := &flakyList{Store: m, failAfter: []int{3, 5, 0}}
	clk := fakeClock()
	s := retry.New(inner, retry.Options{Clock: clk})
	var got []string
	err := run(clk, func() error {
		return s.List(ctx, "l/", func(in blobstore.Info) error { got = append(got, in.Name); return nil })
	})
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("List = %v, %v; want %v", got, err, want)
	}
	if inner.calls != 4 {
		t.Errorf("%d listings, want 4", inner.calls)
	}
}

// An error from the caller's function ends the listing, even one marked
// transient.
func TestListCallerErrorNotRetried(t *testing.T) {
	ctx := context.Background()
	m := mem.New()
	m.Put(ctx, "a", nil)
	inner := &flakyList{Store: m}
	s := retry.New(inner, retry.Options{Clock: fakeClock()})
	err := s.List(ctx, "", func(blobstore.Info) error { return errTransient })
	if err != errTransient {
		t.Errorf("List = %v, want the function's error as it was", err)
	}
	if inner.calls != 1 {
		t.Errorf("%d listings, want 1", inner.calls)
	}
}
