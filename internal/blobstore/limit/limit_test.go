package limit_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/blobtest"
	"coffer/internal/blobstore/limit"
	"coffer/internal/blobstore/mem"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Store { return limit.New(mem.New(), limit.Options{Max: 4}) })
}

var errThrottled = fmt.Errorf("%w: 503 SlowDown", blobstore.ErrThrottled)

// gate is a store whose Puts block until the test answers them, and which
// counts the Puts in flight.
type gate struct {
	blobstore.Store
	mu       sync.Mutex
	inFlight int
	most     int
	arrived  chan struct{}
	answers  chan error
}

func newGate() *gate {
	return &gate{Store: mem.New(), arrived: make(chan struct{}, 1000), answers: make(chan error)}
}

func (g *gate) Put(ctx context.Context, name string, data []byte) error {
	g.mu.Lock()
	g.inFlight++
	g.most = max(g.most, g.inFlight)
	g.mu.Unlock()
	g.arrived <- struct{}{}
	err := <-g.answers
	g.mu.Lock()
	g.inFlight--
	g.mu.Unlock()
	return err
}

// start begins n Puts and waits until k of them reached the store.
func start(t *testing.T, s *limit.Store, g *gate, n, k int) *sync.WaitGroup {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { s.Put(context.Background(), fmt.Sprint("o", i), nil) })
	}
	for range k {
		<-g.arrived
	}
	return &wg
}

// answer answers one Put in flight with err and waits for the next to
// arrive, if more is true.
func answer(g *gate, err error, more bool) {
	g.answers <- err
	if more {
		<-g.arrived
	}
}

// The bound halves once for a burst of throttled calls sent together,
// again for each later round, down to Min, and grows back by one after
// each bound's worth of answered calls.
func TestHalvesAndGrowsBack(t *testing.T) {
	g := newGate()
	s := limit.New(g, limit.Options{Max: 8})
	if s.Limit() != 8 {
		t.Fatalf("first bound %d, want Max 8", s.Limit())
	}
	// Eight calls in flight together, all throttled: one halving.
	wg := start(t, s, g, 8, 8)
	for range 8 {
		answer(g, errThrottled, false)
	}
	wg.Wait()
	if got := s.Limit(); got != 4 {
		t.Fatalf("after a burst of 8 throttled calls the bound is %d, want 4", got)
	}
	// Each call started after a halving halves again, down to Min.
	var got []int
	for range 4 {
		wg := start(t, s, g, 1, 1)
		answer(g, errThrottled, false)
		wg.Wait()
		got = append(got, s.Limit())
	}
	if want := []int{2, 1, 1, 1}; !slices.Equal(got, want) {
		t.Fatalf("bounds after single throttled calls %v, want %v", got, want)
	}
	// Growing back: bound b needs b answered calls to become b+1. A
	// missing object is an answer too.
	got = got[:0]
	for i := range 28 {
		wg := start(t, s, g, 1, 1)
		var err error
		if i%5 == 0 {
			err = blobstore.ErrNotFound
		}
		answer(g, err, false)
		wg.Wait()
		got = append(got, s.Limit())
	}
	want := []int{2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 8}
	if !slices.Equal(got, want) {
		t.Fatalf("bounds while growing back\n%v, want\n%v", got, want)
	}
	throttled, decreases, increases := s.Stats()
	if throttled != 12 || decreases != 3 || increases != 7 {
		t.Errorf("Stats = %d throttled, %d decreases, %d increases; want 12, 3, 7", throttled, decreases, increases)
	}
}

// Other errors neither lower nor raise the bound.
func TestOtherErrorsLeaveBound(t *testing.T) {
	g := newGate()
	s := limit.New(g, limit.Options{Max: 4})
	wg := start(t, s, g, 1, 1)
	answer(g, errThrottled, false)
	wg.Wait()
	for _, err := range []error{fmt.Errorf("%w: reset", blobstore.ErrTransient), errors.New("denied"), context.Canceled} {
		wg := start(t, s, g, 1, 1)
		answer(g, err, false)
		wg.Wait()
		if got := s.Limit(); got != 2 {
			t.Errorf("after %v the bound is %d, want 2", err, got)
		}
	}
}

// No more calls than the bound reach the store, and waiting calls go in
// as slots free up, also after the bound shrank.
func TestBoundsCallsInFlight(t *testing.T) {
	g := newGate()
	s := limit.New(g, limit.Options{Max: 4})
	wg := start(t, s, g, 20, 4)
	// One throttled answer halves the bound to 2: the next answer lets no
	// waiting call in, the one after lets one in.
	answer(g, errThrottled, false)
	for s.Limit() != 2 {
		runtime.Gosched()
	}
	answer(g, nil, false)
	answer(g, nil, true)
	if got := s.InFlight(); got != 2 {
		t.Errorf("%d calls in flight under a bound of 2", got)
	}
	for range 17 { // 2 in flight, 15 waiting
		answer(g, nil, false)
	}
	wg.Wait()
	if g.most != 4 {
		t.Errorf("at most %d calls were in flight, want 4", g.most)
	}
}

// A call waiting for a slot gives up when its context ends, and its place
// is not lost to the others.
func TestWaitEndsWithContext(t *testing.T) {
	g := newGate()
	s := limit.New(g, limit.Options{Max: 1})
	wg := start(t, s, g, 1, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Put(ctx, "waiting", nil) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("waiting Put = %v, want context.Canceled", err)
	}
	answer(g, nil, false)
	wg.Wait()
	wg = start(t, s, g, 1, 1) // the slot is free again
	answer(g, nil, false)
	wg.Wait()
}

// The caller's List function may call the store, even with a bound of 1.
func TestListFunctionMayCallStore(t *testing.T) {
	ctx := context.Background()
	s := limit.New(mem.New(), limit.Options{Max: 1})
	for _, n := range []string{"a", "b"} {
		if err := s.Put(ctx, n, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	err := s.List(ctx, "", func(in blobstore.Info) error {
		_, err := s.Get(ctx, in.Name)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
