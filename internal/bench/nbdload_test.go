package bench

import (
	"context"
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"coffer/internal/clock"
)

// TestFixedWindow: the fixed-window measure cuts the first n of each run
// from its first request (fio's log clock starts earlier), counts the
// requests completed in it, takes the CPU per request and the work's
// progress at its ends, says when the work ended within it, and sets the
// busy window against its two references combined.
func TestFixedWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	const n = 5 * time.Second
	// run has a request completing every step from its first, sent at
	// firstSent on fio's clock, until 2n; each took lat.
	run := func(firstSent, step time.Duration) loadFio {
		lat := 300 * time.Microsecond
		l := loadFio{first: t0, firstSent: firstSent, cpu: map[time.Duration]float64{0: 10, n: 11}}
		for d := firstSent + lat; d < firstSent+2*n; d += step {
			l.samples = append(l.samples, latSample{done: d, lat: lat})
		}
		return l
	}
	busy, ref := run(120*time.Millisecond, time.Millisecond), run(80*time.Millisecond, 500*time.Microsecond)
	// The reference after the busy run is 1.25 times as fast and costs
	// four times the CPU per request.
	after := run(90*time.Millisecond, 400*time.Microsecond)
	after.cpu = map[time.Duration]float64{0: 10, n: 15}
	busy.progress = map[time.Duration]loadProgress{
		0: {Done: 10, Total: 100, ReadFetched: 3},
		n: {Done: 60, Total: 100, ReadFetched: 40, CBW: 7},
	}
	w := fixedWindow(busy, []loadFio{ref, after}, n)
	if w.Busy.Requests != 5000 || len(w.Refs) != 2 || w.Refs[0].Requests != 10000 || w.Refs[1].Requests != 12500 || w.Ref.Requests != 22500 {
		t.Fatalf("requests in the window: %d with the work, %+v without; want 5000, and 10000 and 12500 (22500)", w.Busy.Requests, w.Refs)
	}
	if math.Abs(w.Ratio-1000.0/2250) > 1e-9 || math.Abs(w.Busy.IOPS-1000) > 1e-6 || math.Abs(w.Ref.IOPS-2250) > 1e-6 || math.Abs(w.RefSpread-1.25) > 1e-9 {
		t.Errorf("IOPS %.1f against %.1f (spread %.2f), ratio %.3f; want 1000 against 2250 (the mean of 2000 and 2500; spread 1.25), 0.444", w.Busy.IOPS, w.Ref.IOPS, w.RefSpread, w.Ratio)
	}
	if math.Abs(w.Busy.CPUUsPerRequest-200) > 1e-6 || math.Abs(w.Refs[0].CPUUsPerRequest-100) > 1e-6 || math.Abs(w.Ref.CPUUsPerRequest-6e6/22500) > 1e-6 {
		t.Errorf("CPU-µs per request %.1f with, %.1f and %.1f without (%.1f); want 200, 100 and 400 (266.7 weighted by requests)",
			w.Busy.CPUUsPerRequest, w.Refs[0].CPUUsPerRequest, w.Refs[1].CPUUsPerRequest, w.Ref.CPUUsPerRequest)
	}
	if w.ProgressStart != 0.1 || w.ProgressEnd != 0.6 || w.EndedSeconds != 0 || w.ReadFetched != 37 || w.CBWBlocks != 7 {
		t.Errorf("progress %+v; want 0.1 → 0.6, not ended, 37 fetched, 7 copied", w)
	}
	// The work ended 3.25 s after the first request.
	busy.progress[n] = loadProgress{Ended: true}
	busy.workEnd = t0.Add(3250 * time.Millisecond)
	w = fixedWindow(busy, []loadFio{ref, after}, n)
	if w.ProgressEnd != 1 || w.EndedSeconds != 3.25 || w.ReadFetched != 0 {
		t.Errorf("work ended in the window: %+v; want progress 1, ended at 3.25 s", w)
	}
	if math.Abs(w.CPURatio-(6e6/22500)/200) > 1e-9 {
		t.Errorf("CPU ratio %.3f; want 1.333 (266.7 without ÷ 200 with)", w.CPURatio)
	}
	if got := w.refsText(); got != "2000 / 2500 (1.25×)" {
		t.Errorf("references %q", got)
	}
	if got := w.progressText("hydration"); got != "hydrated 10% → 100% (hydration ended at 3.25s)" {
		t.Errorf("progress text %q", got)
	}
}

// TestRefPair: references combine into their mean IOPS, mean p50 and p99,
// highest maximum and CPU per request weighted by requests; their spread
// is the highest IOPS over the lowest, 0 when one served nothing.
func TestRefPair(t *testing.T) {
	before := windowFigures{Seconds: 5, Requests: 100000, IOPS: 20000, P50Ms: 1, P99Ms: 4, MaxMs: 30, CPUUsPerRequest: 10}
	after := windowFigures{Seconds: 5, Requests: 300000, IOPS: 60000, P50Ms: 0.5, P99Ms: 2, MaxMs: 10, CPUUsPerRequest: 30}
	c, spread := refPair([]windowFigures{before, after})
	want := windowFigures{Seconds: 10, Requests: 400000, IOPS: 40000, P50Ms: 0.75, P99Ms: 3, MaxMs: 30, CPUUsPerRequest: 25}
	if math.Abs(c.CPUUsPerRequest-want.CPUUsPerRequest) > 1e-9 {
		t.Errorf("CPU-µs per request %v; want %v", c.CPUUsPerRequest, want.CPUUsPerRequest)
	}
	c.CPUUsPerRequest = want.CPUUsPerRequest
	if c != want || spread != 3 {
		t.Errorf("combined %+v, spread %v; want %+v, 3", c, spread, want)
	}
	if _, spread := refPair([]windowFigures{before, {Seconds: 5}}); spread != 0 {
		t.Errorf("spread with an empty reference %v; want 0", spread)
	}
	if c, _ := refPair([]windowFigures{after}); c != after {
		t.Errorf("one reference combined into %+v; want it unchanged", c)
	}
}

// TestWaitRestProcs: the load part's runs wait for GOMAXPROCS to come
// back to its resting value, looking every procsPoll, and give up after
// the limit.
func TestWaitRestProcs(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 8, 2, 0, 0, 0, time.UTC))
	// advance moves the fake clock by procsPoll whenever waitRestProcs
	// waits on it, until done is closed.
	advance := func(done chan struct{}) {
		for {
			select {
			case <-done:
				return
			default:
			}
			if clk.Pending() > 0 {
				clk.Advance(procsPoll)
			} else {
				runtime.Gosched()
			}
		}
	}
	var calls atomic.Int32
	// GOMAXPROCS is 3 for the first five looks, then 2.
	procs := func() int {
		if calls.Add(1) <= 5 {
			return 3
		}
		return 2
	}
	done := make(chan struct{})
	go advance(done)
	t0 := clk.Now()
	ok, err := waitRestProcs(context.Background(), clk, procs, 2, time.Second)
	close(done)
	if err != nil || !ok || calls.Load() != 6 || clk.Now().Sub(t0) != 5*procsPoll {
		t.Errorf("waited %v with %d looks: %v, %v; want 250ms, 6 looks, reached", clk.Now().Sub(t0), calls.Load(), ok, err)
	}
	// Never back: it gives up at the limit.
	done = make(chan struct{})
	go advance(done)
	t0 = clk.Now()
	ok, err = waitRestProcs(context.Background(), clk, func() int { return 3 }, 2, time.Second)
	close(done)
	if err != nil || ok || clk.Now().Sub(t0) != time.Second {
		t.Errorf("waited %v: %v, %v; want 1s, not reached", clk.Now().Sub(t0), ok, err)
	}
}
