package bench

import (
	"math"
	"testing"
	"time"
)

// TestFixedWindow: the fixed-window measure cuts the first n of each run
// from its first request (fio's log clock starts earlier), counts the
// requests completed in it, takes the CPU per request and the work's
// progress at its ends, and says when the work ended within it.
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
	busy.progress = map[time.Duration]loadProgress{
		0: {Done: 10, Total: 100, ReadFetched: 3},
		n: {Done: 60, Total: 100, ReadFetched: 40, CBW: 7},
	}
	w := fixedWindow(busy, ref, n)
	if w.Busy.Requests != 5000 || w.Ref.Requests != 10000 {
		t.Fatalf("requests in the window: %d with the work, %d without; want 5000 and 10000", w.Busy.Requests, w.Ref.Requests)
	}
	if math.Abs(w.Ratio-0.5) > 1e-9 || math.Abs(w.Busy.IOPS-1000) > 1e-6 {
		t.Errorf("IOPS %.1f, ratio %.3f; want 1000 and 0.5", w.Busy.IOPS, w.Ratio)
	}
	if math.Abs(w.Busy.CPUUsPerRequest-200) > 1e-6 || math.Abs(w.Ref.CPUUsPerRequest-100) > 1e-6 {
		t.Errorf("CPU-µs per request %.1f with, %.1f without; want 200 and 100", w.Busy.CPUUsPerRequest, w.Ref.CPUUsPerRequest)
	}
	if w.ProgressStart != 0.1 || w.ProgressEnd != 0.6 || w.EndedSeconds != 0 || w.ReadFetched != 37 || w.CBWBlocks != 7 {
		t.Errorf("progress %+v; want 0.1 → 0.6, not ended, 37 fetched, 7 copied", w)
	}
	// The work ended 3.25 s after the first request.
	busy.progress[n] = loadProgress{Ended: true}
	busy.workEnd = t0.Add(3250 * time.Millisecond)
	w = fixedWindow(busy, ref, n)
	if w.ProgressEnd != 1 || w.EndedSeconds != 3.25 || w.ReadFetched != 0 {
		t.Errorf("work ended in the window: %+v; want progress 1, ended at 3.25 s", w)
	}
	if got := w.progressText("hydration"); got != "hydrated 10% → 100% (hydration ended at 3.25s)" {
		t.Errorf("progress text %q", got)
	}
}
