// Package faulty wraps a blobstore.Store and injects failures, for crash and
// error-path tests: fail or tear the Nth Put, fail reads, run out of space.
// Counters let a test first count the calls an operation makes and then
// replay it failing at call k for every k.
package faulty

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"

	"coffer/internal/blobstore"
)

// ErrInjected is the default error of an injected fault.
var ErrInjected = errors.New("injected fault")

// Op names the operations a fault can target.
type Op int

// Operations. OpGet covers Get and GetRange.
const (
	OpPut Op = iota
	OpGet
	OpStat
	OpList
	OpDelete
	numOps
)

func (o Op) String() string {
	return [...]string{"put", "get", "stat", "list", "delete"}[o]
}

// PermanentError marks an injected failure that retrying will not fix, like
// the local backend's ENOSPC.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string   { return e.Err.Error() + " (permanent)" }
func (e *PermanentError) Unwrap() error   { return e.Err }
func (e *PermanentError) Permanent() bool { return true }

// ErrNoSpace returns a permanent error wrapping syscall.ENOSPC.
func ErrNoSpace() error { return &PermanentError{Err: syscall.ENOSPC} }

// Fault describes one injected failure.
type Fault struct {
	Op Op
	// Nth is the 1-based number, counted from when the fault is injected, of
	// the matching call that fails. 0 means every matching call fails.
	Nth int
	// Sticky makes the Nth call and every later matching call fail, as if
	// the process had crashed there.
	Sticky bool
	// Prefix restricts the fault to names with this prefix.
	Prefix string
	// Err is the returned error; nil means ErrInjected.
	Err error
	// Truncate applies to OpPut: half of the data is stored under the name
	// (a torn write of a backend that breaks the atomicity contract) before
	// the error is returned.
	Truncate bool
	// Silent applies with Truncate: the Put returns nil after storing the
	// torn object, like a disk that loses data without telling.
	Silent bool

	seen  int
	fired bool
}

// Store is a fault-injecting blobstore.Store.
type Store struct {
	inner blobstore.Store

	mu     sync.Mutex
	faults []*Fault
	counts [numOps]int
	fails  [numOps]int
}

var _ blobstore.Store = (*Store)(nil)

// New wraps inner.
func New(inner blobstore.Store) *Store { return &Store{inner: inner} }

// Inject adds a fault.
func (s *Store) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.seen, f.fired = 0, false
	s.faults = append(s.faults, &f)
}

// Reset removes every fault (counters are kept).
func (s *Store) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Count returns how many calls of op have been made.
func (s *Store) Count(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[op]
}

// Failures returns how many calls of op failed by injection.
func (s *Store) Failures(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fails[op]
}

// check counts a call and returns the fault that fires for it, if any.
func (s *Store) check(op Op, name string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[op]++
	var hit *Fault
	for _, f := range s.faults {
		if f.Op != op || !strings.HasPrefix(name, f.Prefix) {
			continue
		}
		f.seen++
		fire := f.Nth == 0 || f.seen == f.Nth || (f.Sticky && f.seen > f.Nth)
		if fire && hit == nil {
			hit = f
			f.fired = true
		}
	}
	if hit != nil {
		s.fails[op]++
	}
	return hit
}

func (f *Fault) err(op Op, name string) error {
	err := f.Err
	if err == nil {
		err = ErrInjected
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

// Put stores data unless a fault fires.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	f := s.check(OpPut, name)
	if f == nil {
		return s.inner.Put(ctx, name, data)
	}
	if f.Truncate {
		if err := s.inner.Put(ctx, name, data[:len(data)/2]); err != nil {
			return err
		}
		if f.Silent {
			return nil
		}
	}
	return f.err(OpPut, name)
}

// Get reads the object unless a fault fires.
func (s *Store) Get(ctx context.Context, name string) ([]byte, error) {
	if f := s.check(OpGet, name); f != nil {
		return nil, f.err(OpGet, name)
	}
	return s.inner.Get(ctx, name)
}

// GetRange reads a range unless a fault fires.
func (s *Store) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if f := s.check(OpGet, name); f != nil {
		return nil, f.err(OpGet, name)
	}
	return s.inner.GetRange(ctx, name, off, n)
}

// Stat stats the object unless a fault fires.
func (s *Store) Stat(ctx context.Context, name string) (blobstore.Info, error) {
	if f := s.check(OpStat, name); f != nil {
		return blobstore.Info{}, f.err(OpStat, name)
	}
	return s.inner.Stat(ctx, name)
}

// List lists objects unless a fault fires.
func (s *Store) List(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	if f := s.check(OpList, prefix); f != nil {
		return f.err(OpList, prefix)
	}
	return s.inner.List(ctx, prefix, fn)
}

// Delete deletes the object unless a fault fires.
func (s *Store) Delete(ctx context.Context, name string) error {
	if f := s.check(OpDelete, name); f != nil {
		return f.err(OpDelete, name)
	}
	return s.inner.Delete(ctx, name)
}
