package directio

import (
	"os"
	"sync"
	"sync/atomic"
)

// SyncEvery is the interval, in bytes written with direct I/O, at which a
// bulk writer of a whole file (a restore, the bench's I/O floor of one)
// has the file fdatasynced as it goes (Syncer). Direct writes leave no
// dirty page in this kernel, but on a virtual disk they may sit in the
// host's cache, and a final fsync waits for the host to write back all it
// still holds: on the development VM 0.2-0.35 s after a 512 MiB restore at
// load 8 and 1.0-1.5 s after a 2 GiB one, time in which a restore neither
// reads nor decodes (docs/design.md, "Session perf14ap"). Syncing as the
// writes go leaves the final fsync the last part only. 16 MiB keeps that
// true of small files too: the 64 MiB files of the bench's 4 restores at
// once got no sync before their end at 64 MiB.
const SyncEvery = 16 << 20

// Syncer fdatasyncs a file from a goroutine of its own each time another
// `every` bytes were written to it with direct I/O (Wrote), one sync at a
// time and without holding up a write. Durability still comes from the
// writer's final fsync; the syncs only move the wait for the device off
// the end. A sync's error is not a hint, though: a later fsync through
// the same file may not report it again, so Stop returns it.
//
// A nil *Syncer does nothing: StartSyncer returns nil for every <= 0.
type Syncer struct {
	f      *os.File
	every  int64
	direct atomic.Int64 // bytes written with direct I/O
	syncs  atomic.Int64 // fdatasyncs done
	kick   chan struct{}
	done   chan struct{}

	mu  sync.Mutex
	err error // the first fdatasync's error
}

// StartSyncer starts syncing f every `every` direct bytes; nil for
// every <= 0. Stop must be called before f is closed.
func StartSyncer(f *os.File, every int64) *Syncer {
	if every <= 0 {
		return nil
	}
	s := &Syncer{f: f, every: every, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for range s.kick {
			s.sync()
		}
	}()
	return s
}

// sync fdatasyncs the file and keeps the first error.
func (s *Syncer) sync() {
	if err := datasync(s.f); err != nil {
		s.mu.Lock()
		if s.err == nil {
			s.err = &os.PathError{Op: "fdatasync", Path: s.f.Name(), Err: err}
		}
		s.mu.Unlock()
		return
	}
	s.syncs.Add(1)
}

// Wrote records n bytes written to the file with direct I/O, asking for a
// sync each time the total passes another multiple of the interval (one
// is asked for at most while another waits).
func (s *Syncer) Wrote(n int) {
	if s == nil || n <= 0 {
		return
	}
	after := s.direct.Add(int64(n))
	if after/s.every != (after-int64(n))/s.every {
		select {
		case s.kick <- struct{}{}:
		default: // one is pending already
		}
	}
}

// Stop waits for the sync in progress, if any, ends the goroutine and
// returns the first sync's error: the file's data may then not be durable
// whatever a later fsync says. It is called once, after the last Wrote.
func (s *Syncer) Stop() error {
	if s == nil {
		return nil
	}
	close(s.kick)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Syncs returns how many fdatasyncs succeeded so far.
func (s *Syncer) Syncs() int64 {
	if s == nil {
		return 0
	}
	return s.syncs.Load()
}
