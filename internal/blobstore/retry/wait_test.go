package retry

import (
	"testing"
	"time"
)

// Each wait lies between half and all of min(Max, Base·2^(attempt-1)).
func TestWaitBounds(t *testing.T) {
	s := New(nil, Options{Base: 100 * time.Millisecond, Max: 5 * time.Second})
	for attempt := 1; attempt <= 70; attempt++ {
		bound := min(5*time.Second, 100*time.Millisecond<<min(attempt-1, 20))
		lo, hi := time.Duration(1<<62), time.Duration(0)
		for range 2000 {
			d := s.wait(attempt)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < bound/2 || hi > bound {
			t.Errorf("attempt %d: waits in [%v, %v], want within [%v, %v]", attempt, lo, hi, bound/2, bound)
		}
		if hi-lo < bound/4 {
			t.Errorf("attempt %d: waits in [%v, %v] hardly vary (no jitter)", attempt, lo, hi)
		}
	}
	// Bounds near the largest duration do not overflow.
	s = New(nil, Options{Base: time.Duration(1) << 61, Max: time.Duration(1<<63 - 1)})
	for attempt := 1; attempt <= 70; attempt++ {
		if d := s.wait(attempt); d <= 0 {
			t.Fatalf("attempt %d: wait %v", attempt, d)
		}
	}
}
