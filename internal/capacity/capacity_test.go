package capacity_test

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"
	"time"

	"coffer/internal/capacity"
	"coffer/internal/clock"
	"coffer/internal/resource"
)

func TestClassify(t *testing.T) {
	enospc := &fs.PathError{Op: "write", Path: "/data/x", Err: syscall.ENOSPC}
	for _, tc := range []struct {
		name    string
		err     error
		noSpace bool
	}{
		{"nil", nil, false},
		{"ENOSPC", fmt.Errorf("put pack: %w", enospc), true},
		{"EDQUOT", fmt.Errorf("put pack: %w", syscall.EDQUOT), true},
		{"EIO", fmt.Errorf("put pack: %w", syscall.EIO), false},
		{"other", errors.New("boom"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := capacity.Classify(tc.err, "the chunk store", "/data/chunks")
			if !tc.noSpace {
				if got != tc.err {
					t.Fatalf("Classify(%v) = %v, want it unchanged", tc.err, got)
				}
				return
			}
			if !errors.Is(got, capacity.ErrNoSpace) || !errors.Is(got, tc.err) {
				t.Fatalf("Classify(%v) = %v: want ErrNoSpace wrapping the cause", tc.err, got)
			}
			e := resource.AsError(got)
			if e == nil || e.Kind != resource.KindInsufficientStorage || e.Code != capacity.Code ||
				!strings.Contains(e.Message, "the chunk store (/data/chunks)") {
				t.Fatalf("Classify(%v): ARM error %+v", tc.err, e)
			}
			if again := capacity.Classify(fmt.Errorf("outer: %w", got), "x", "y"); resource.AsError(again) != e {
				t.Fatalf("classifying twice made a new error: %v", again)
			}
		})
	}
}

// fakeFS is a filesystem whose free space the test sets.
type fakeFS struct{ free, total int64 }

func (f *fakeFS) statfs(string) (int64, int64, error) { return f.free, f.total, nil }

func TestMonitorReserveAndResume(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	fsys := &fakeFS{free: 100 << 20, total: 1 << 30}
	m := capacity.NewMonitor(clk, 10<<20, "/data")
	m.SetStatfs(fsys.statfs)
	if err := m.Check(); err != nil {
		t.Fatalf("Check with 100 MiB free: %v", err)
	}
	if err := m.CheckFor(95 << 20); !errors.Is(err, capacity.ErrNoSpace) {
		t.Fatalf("CheckFor(95 MiB) with 100 MiB free and a 10 MiB reserve: %v, want ErrNoSpace", err)
	}
	fsys.free = 4 << 20
	err := m.Check()
	e := resource.AsError(err)
	if !errors.Is(err, capacity.ErrNoSpace) || e == nil || e.Kind != resource.KindInsufficientStorage ||
		!strings.Contains(e.Message, "/data") || !strings.Contains(e.Message, "4.0 MiB free") || !strings.Contains(e.Message, "10.0 MiB") {
		t.Fatalf("Check below the reserve: %v", err)
	}
	st := m.Status()
	if !st.Low || st.FreeBytes != 4<<20 || st.NoSpaceFailures != 2 || !st.LastNoSpace.Equal(clk.Now()) || st.LastNoSpaceError == "" {
		t.Fatalf("status below the reserve: %+v", st)
	}
	fsys.free = 50 << 20 // space is back
	if err := m.Check(); err != nil {
		t.Fatalf("Check after space returned: %v", err)
	}
	if st := m.Status(); st.Low || st.NoSpaceFailures != 2 {
		t.Fatalf("status after space returned: %+v", st)
	}

	var none *capacity.Monitor
	if none.Check() != nil || none.Status().Low || none.Note(err) != err {
		t.Fatal("a nil Monitor must measure nothing and refuse nothing")
	}
	zero := capacity.NewMonitor(clk, 0, "/data")
	zero.SetStatfs(func(string) (int64, int64, error) { return 0, 1 << 30, nil })
	if !errors.Is(zero.Check(), capacity.ErrNoSpace) {
		t.Fatal("without a reserve, a full filesystem must still be refused")
	}
}

func TestBytes(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 512: "512 B", 1536: "1.5 KiB", 64 << 20: "64.0 MiB", 16 << 40: "16.0 TiB"} {
		if got := capacity.Bytes(in); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", in, got, want)
		}
	}
}
