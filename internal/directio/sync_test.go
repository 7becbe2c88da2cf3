package directio

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSyncer: direct writes have the file fdatasynced in the background
// once every interval, not only at the end; a nil Syncer (interval 0)
// never syncs; what the writer says went through the page cache does not
// count.
func TestSyncer(t *testing.T) {
	const every = 1 << 20
	for _, tc := range []struct {
		every int64
		want  bool
	}{{every, true}, {0, false}} {
		path := filepath.Join(t.TempDir(), "f")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Open(path, os.O_WRONLY)
		if err != nil {
			f.Close()
			t.Skipf("no direct I/O here: %v", err)
		}
		s := StartSyncer(f, tc.every)
		if (s == nil) == tc.want {
			t.Fatalf("StartSyncer(%d) = %v", tc.every, s)
		}
		p := Buffer(every / 2)
		for i := range p {
			p[i] = byte(i*7 + 3)
		}
		for i := range 8 {
			direct, buffered, err := WriteAt(d, f, p, int64(i)*every/2)
			if direct != len(p) || buffered != 0 || err != nil {
				t.Fatalf("write %d: %d direct, %d buffered, %v", i, direct, buffered, err)
			}
			s.Wrote(direct)
		}
		// A tail that is not a multiple of the alignment goes through the
		// page cache and counts for nothing.
		direct, _, err := WriteAt(d, f, p[:100], 4*every)
		if err != nil {
			t.Fatal(err)
		}
		s.Wrote(direct)
		if err := s.Stop(); err != nil {
			t.Fatalf("every %d: %v", tc.every, err)
		}
		got := s.Syncs()
		switch {
		case tc.want && (got < 1 || got > 4):
			t.Errorf("every %d: %d fdatasyncs while 4 MiB were written directly, want 1 to 4", tc.every, got)
		case !tc.want && got != 0:
			t.Errorf("every 0: %d fdatasyncs, want none", got)
		}
		d.Close()
		f.Close()
	}
}

// TestSyncerReportsItsError: a failed background sync is what Stop
// returns (a later fsync through the file may not say so again).
func TestSyncerReportsItsError(t *testing.T) {
	r, w, err := os.Pipe() // fdatasync of a pipe fails with EINVAL
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	s := StartSyncer(w, 1)
	s.Wrote(1)
	if err := s.Stop(); err == nil {
		t.Fatal("Stop = nil after a sync of a pipe")
	}
	if s.Syncs() != 0 {
		t.Fatalf("%d syncs counted", s.Syncs())
	}
}
