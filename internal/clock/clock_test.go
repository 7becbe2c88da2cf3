package clock

import (
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
