//go:build linux

package nbd_test

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/lowprio"
	"coffer/internal/nbd/nbdtest"
)

// TestConnectionThreadsHavePs: each plain connection's reader thread,
// which blocks in system calls, has a P of its own with one left idle
// while it transmits (lowprio.SyscallThreadP): GOMAXPROCS 2 becomes 5
// with 4 connections writing, stays 5 when they end (a GOMAXPROCS change
// stops the world), and is 2 again once the lowering's clock has moved
// on. The writes land.
func TestConnectionThreadsHavePs(t *testing.T) {
	fc := clock.NewFake(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	defer lowprio.SetClock(fc)()
	prev := runtime.GOMAXPROCS(2)
	defer runtime.GOMAXPROCS(prev)
	ex := &exports{}
	f := fileBackend(t, 16<<20)
	ex.add("rw", f, false)
	addr, srv := startServer(t, ex, nil)
	var clients []*nbdtest.Client
	for i := range 4 {
		c, err := nbdtest.Dial(t.Context(), addr, "rw", nbdtest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A reply means the connection's reader thread is transmitting.
		if _, err := c.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i)<<20); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		if got, want := runtime.GOMAXPROCS(0), max(2, i+2); got != want {
			t.Fatalf("%d connections: GOMAXPROCS %d, want %d", i+1, got, want)
		}
	}
	for _, c := range clients {
		if err := c.Disconnect(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil { // waits for the connections to end
		t.Fatal(err)
	}
	if got := runtime.GOMAXPROCS(0); got != 5 {
		t.Fatalf("just after the connections: GOMAXPROCS %d, want 5", got)
	}
	fc.Advance(time.Hour)
	for deadline := time.Now().Add(time.Minute); runtime.GOMAXPROCS(0) != 2; runtime.Gosched() {
		if time.Now().After(deadline) { // a hang, not a speed
			t.Fatalf("an hour after the connections: GOMAXPROCS %d, want 2", runtime.GOMAXPROCS(0))
		}
	}
	for i := range 4 {
		p := make([]byte, 4096)
		if _, err := f.ReadAt(p, int64(i)<<20); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, bytes.Repeat([]byte{byte(i + 1)}, 4096)) {
			t.Fatalf("block %d: the write did not land", i)
		}
	}
}
