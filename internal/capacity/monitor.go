package capacity

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"coffer/internal/clock"
)

// Monitor watches the free space of the filesystems that hold a data
// directory and remembers the last no-space failure seen there. All
// methods are safe for concurrent use; a nil *Monitor measures nothing,
// refuses nothing and ignores what it is told.
type Monitor struct {
	dir     string
	paths   []string
	reserve int64
	clock   clock.Clock
	statfs  func(path string) (free, total int64, err error)

	mu       sync.Mutex
	last     time.Time // of the last no-space failure
	lastErr  string
	failures uint64
}

// NewMonitor returns a monitor of the filesystems holding paths (the data
// directory dir first; the others, e.g. the chunk and volume directories,
// count only when they are on other filesystems). reserve is the free
// space below which Check refuses new data (0: refuse only when full).
func NewMonitor(clk clock.Clock, reserve int64, dir string, paths ...string) *Monitor {
	return &Monitor{dir: dir, paths: append([]string{dir}, paths...), reserve: max(reserve, 0), clock: clk, statfs: statfs}
}

// SetStatfs replaces how free space is measured (for tests).
func (m *Monitor) SetStatfs(f func(path string) (free, total int64, err error)) { m.statfs = f }

func statfs(path string) (free, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

// Reserve returns the free-space reserve in bytes.
func (m *Monitor) Reserve() int64 {
	if m == nil {
		return 0
	}
	return m.reserve
}

// Note records err if it is a no-space failure (errors.Is ErrNoSpace) and
// returns it unchanged, so that it can wrap a return statement.
func (m *Monitor) Note(err error) error {
	if m == nil || !errors.Is(err, ErrNoSpace) {
		return err
	}
	now := m.clock.Now()
	m.mu.Lock()
	m.last, m.lastErr = now, err.Error()
	m.failures++
	m.mu.Unlock()
	return err
}

// Status is a measurement of the data filesystem.
type Status struct {
	// FreeBytes and TotalBytes are of the fullest filesystem holding the
	// data directory (free as an unprivileged user sees it).
	FreeBytes, TotalBytes int64
	ReserveBytes          int64
	// Low is set when FreeBytes is below the reserve, or zero.
	Low bool
	// LastNoSpace is when the last no-space failure happened (zero if
	// none since start), LastNoSpaceError what it said.
	LastNoSpace      time.Time
	LastNoSpaceError string
	// NoSpaceFailures counts no-space failures since start.
	NoSpaceFailures uint64
	// Err is why free space could not be measured.
	Err error
}

// Status measures free space now.
func (m *Monitor) Status() Status {
	if m == nil {
		return Status{}
	}
	st := Status{ReserveBytes: m.reserve}
	measured := false
	for _, p := range m.paths {
		free, total, err := m.statfs(p)
		if err != nil {
			st.Err = err
			continue
		}
		if !measured || free < st.FreeBytes {
			st.FreeBytes, st.TotalBytes = free, total
		}
		measured = true
	}
	st.Low = measured && (st.FreeBytes < m.reserve || st.FreeBytes == 0)
	m.mu.Lock()
	st.LastNoSpace, st.LastNoSpaceError, st.NoSpaceFailures = m.last, m.lastErr, m.failures
	m.mu.Unlock()
	return st
}

// Check returns a no-space error (errors.Is ErrNoSpace) when free space is
// below the reserve, and nil otherwise or when it cannot be measured.
// Callers check before work that stores new data.
func (m *Monitor) Check() error { return m.CheckFor(0) }

// CheckFor is Check for work that is about to write n more bytes: it
// refuses when they would take free space below the reserve.
func (m *Monitor) CheckFor(n int64) error {
	st, ok := m.roomFor(n)
	if ok {
		return nil
	}
	return m.Note(Refused(m.dir, st.FreeBytes, m.reserve))
}

// RoomFor reports whether CheckFor(n) would let work write n more bytes,
// without recording a refusal: for work that may as well not be done
// (a restored disk's space reserved ahead of its writes).
func (m *Monitor) RoomFor(n int64) bool {
	_, ok := m.roomFor(n)
	return ok
}

func (m *Monitor) roomFor(n int64) (Status, bool) {
	if m == nil {
		return Status{}, true
	}
	st := m.Status()
	return st, !st.Low && (n == 0 || st.Err != nil || st.FreeBytes-n >= m.reserve)
}
