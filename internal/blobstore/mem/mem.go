// Package mem implements blobstore.Store in memory, for tests. Objects are
// copied on Put and on Get, so callers may reuse their buffers. Names are
// checked as every store checks them (blobstore.CheckName).
package mem

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"coffer/internal/blobstore"
)

// Store is an in-memory blob store. The zero value is not usable; call New.
type Store struct {
	mu   sync.RWMutex
	objs map[string][]byte
}

var _ blobstore.Store = (*Store)(nil)

// New returns an empty Store.
func New() *Store { return &Store{objs: make(map[string][]byte)} }

// Put stores a copy of data under name.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	if err := check(ctx, name); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	b := append([]byte{}, data...)
	s.mu.Lock()
	s.objs[name] = b
	s.mu.Unlock()
	return nil
}

// check returns the context's error or the name's.
func check(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return blobstore.CheckName(name)
}

func (s *Store) get(name string) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.objs[name]
	return b, ok
}

// Get returns a copy of the object.
func (s *Store) Get(ctx context.Context, name string) ([]byte, error) {
	if err := check(ctx, name); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	b, ok := s.get(name)
	if !ok {
		return nil, fmt.Errorf("get %s: %w", name, blobstore.ErrNotFound)
	}
	return append([]byte{}, b...), nil
}

// GetRange returns a copy of n bytes at off.
func (s *Store) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if err := check(ctx, name); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("get %s [%d,+%d]: negative range", name, off, n)
	}
	b, ok := s.get(name)
	if !ok {
		return nil, fmt.Errorf("get %s: %w", name, blobstore.ErrNotFound)
	}
	if off+n > int64(len(b)) {
		return nil, fmt.Errorf("get %s [%d,+%d]: object is %d bytes: %w", name, off, n, len(b), io.ErrUnexpectedEOF)
	}
	return append([]byte{}, b[off:off+n]...), nil
}

// Stat returns the object's size.
func (s *Store) Stat(ctx context.Context, name string) (blobstore.Info, error) {
	if err := check(ctx, name); err != nil {
		return blobstore.Info{}, fmt.Errorf("stat %s: %w", name, err)
	}
	b, ok := s.get(name)
	if !ok {
		return blobstore.Info{}, fmt.Errorf("stat %s: %w", name, blobstore.ErrNotFound)
	}
	return blobstore.Info{Name: name, Size: int64(len(b))}, nil
}

// List calls fn for objects with the prefix in lexical order. It works on a
// snapshot of the names, so fn may call other methods.
func (s *Store) List(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	s.mu.RLock()
	var infos []blobstore.Info
	for name, b := range s.objs {
		if strings.HasPrefix(name, prefix) {
			infos = append(infos, blobstore.Info{Name: name, Size: int64(len(b))})
		}
	}
	s.mu.RUnlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	for _, in := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		if err := fn(in); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the object.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := check(ctx, name); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objs[name]; !ok {
		return fmt.Errorf("delete %s: %w", name, blobstore.ErrNotFound)
	}
	delete(s.objs, name)
	return nil
}
