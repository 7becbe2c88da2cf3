package clock

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestFakeTimers(t *testing.T) {
	start := time.Date(2026, 3, 8, 1, 0, 0, 0, time.UTC)
	f := NewFake(start)
	a := f.NewTimer(2 * time.Hour)
	b := f.NewTimer(time.Hour)
	c := f.NewTimer(3 * time.Hour)
	if f.Pending() != 3 {
		t.Fatalf("pending = %d", f.Pending())
	}
	if !c.Stop() || c.Stop() {
		t.Fatal("Stop must report true once for a pending timer")
	}
	f.Advance(90 * time.Minute)
	select {
	case at := <-b.C():
		if !at.Equal(start.Add(time.Hour)) {
			t.Fatalf("b fired at %v", at)
		}
	default:
		t.Fatal("b did not fire")
	}
	select {
	case <-a.C():
		t.Fatal("a fired early")
	default:
	}
	f.Set(start) // never backwards
	if !f.Now().Equal(start.Add(90 * time.Minute)) {
		t.Fatalf("clock went backwards: %v", f.Now())
	}
	f.Advance(time.Hour)
	if at := <-a.C(); !at.Equal(start.Add(2 * time.Hour)) {
		t.Fatalf("a fired at %v", at)
	}
	if a.Stop() {
		t.Fatal("Stop after firing must report false")
	}
	if z := f.NewTimer(0); len(z.C()) != 1 {
		t.Fatal("a zero timer fires at once")
	}
}

func TestShifted(t *testing.T) {
	d := -400 * 24 * time.Hour
	before := time.Now()
	got := Shifted{D: d}.Now()
	after := time.Now()
	if got.Before(before.Add(d)) || got.After(after.Add(d)) {
		t.Fatalf("Shifted{%v}.Now() = %v, want between %v and %v", d, got, before.Add(d), after.Add(d))
	}
	tm := Shifted{D: d}.NewTimer(0)
	<-tm.C()
}

// Every ticks once per period of the fake clock, each wait starting after
// the previous tick; it ends when a tick says so, when its context ends,
// and at stop, after which no tick runs.
func TestEvery(t *testing.T) {
	f := NewFake(time.Date(2026, 3, 8, 1, 0, 0, 0, time.UTC))
	ticks := make(chan time.Time)
	more := make(chan bool)
	var extra atomic.Int32 // ticks after the one that ended it
	waitTimer := func() {
		t.Helper()
		for f.Pending() == 0 {
			runtime.Gosched()
		}
	}
	n := 0
	stop := Every(context.Background(), f, time.Minute, func() bool {
		if n++; n > 3 {
			extra.Add(1)
			return true
		}
		ticks <- f.Now()
		return <-more
	})
	for i := 1; i <= 3; i++ {
		waitTimer()
		f.Advance(30 * time.Second)
		if f.Pending() != 1 {
			t.Fatalf("tick %d: the timer fired after half a period", i)
		}
		f.Advance(30 * time.Second)
		if got := <-ticks; got.Sub(time.Date(2026, 3, 8, 1, 0, 0, 0, time.UTC)) != time.Duration(i)*time.Minute {
			t.Fatalf("tick %d at %v", i, got)
		}
		more <- i < 3 // the third tick ends it
	}
	// Ended: however long the clock runs on, no tick comes.
	for i := 0; i < 100; i++ {
		f.Advance(time.Minute)
		runtime.Gosched()
	}
	stop()
	if e := extra.Load(); e != 0 {
		t.Fatalf("%d ticks after a tick returned false", e)
	}
	if n := f.Pending(); n != 0 {
		t.Fatalf("%d timers left after the last tick", n)
	}

	// stop while waiting, and a cancelled context, end it with no tick.
	ctx, cancel := context.WithCancel(context.Background())
	stop1 := Every(ctx, f, time.Minute, func() bool { t.Error("tick after stop"); return true })
	stop2 := Every(context.Background(), f, time.Minute, func() bool { t.Error("tick after stop"); return true })
	for f.Pending() < 2 {
		runtime.Gosched()
	}
	cancel()
	stop2()
	stop1()
	stop1() // a second stop is harmless
	f.Advance(time.Hour)
}
