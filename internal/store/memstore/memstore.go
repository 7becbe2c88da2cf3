// Package memstore is an in-memory store.Store for tests: read-write
// transactions are serialized, reads see the transaction's own writes, and
// a committed Update is visible to every later read. Each transaction
// reads the snapshot committed when it began (each commit makes a new
// one), and reads do not wait for a running Update (as with SQLite's WAL),
// so a View inside an Update's function does not deadlock. It passes the
// storetest conformance suite; "reopening" returns the same data.
package memstore

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"coffer/internal/store"
)

type objKey struct{ kind, key string }

// state is one committed state; it is never changed once committed.
type state struct {
	objs  map[objKey]store.Object
	index uint64
	kinds map[string]uint64 // KindIndex
}

// Store is an in-memory store.Store.
type Store struct {
	wmu sync.Mutex // serializes Updates
	mu  sync.Mutex // guards cur
	cur *state
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{cur: &state{objs: map[objKey]store.Object{}, kinds: map[string]uint64{}}}
}

// Close does nothing (the data stays for a "reopen").
func (s *Store) Close() error { return nil }

func (s *Store) snapshot() *state {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Update runs fn in a read-write transaction.
func (s *Store) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	base := s.snapshot()
	t := &tx{base: base, index: base.index + 1, writes: map[objKey]*store.Object{}, writable: true}
	if err := fn(t); err != nil {
		return err
	}
	if len(t.writes) == 0 {
		return nil
	}
	next := &state{objs: make(map[objKey]store.Object, len(base.objs)+len(t.writes)),
		kinds: make(map[string]uint64, len(base.kinds)+1), index: t.index}
	for k, o := range base.objs {
		next.objs[k] = o
	}
	for k, i := range base.kinds {
		next.kinds[k] = i
	}
	for k, o := range t.writes {
		if o == nil {
			delete(next.objs, k)
		} else {
			next.objs[k] = *o
		}
		next.kinds[k.kind] = t.index
	}
	s.mu.Lock()
	s.cur = next
	s.mu.Unlock()
	return nil
}

// View runs fn in a read-only transaction on the latest committed state.
func (s *Store) View(ctx context.Context, fn func(tx store.Tx) error) error {
	base := s.snapshot()
	return fn(&tx{base: base, index: base.index})
}

type tx struct {
	base     *state
	index    uint64
	writes   map[objKey]*store.Object // nil value: deleted
	writable bool
}

func (t *tx) Index() uint64 { return t.index }

func (t *tx) KindIndex(ctx context.Context, kind string) (uint64, error) {
	for k := range t.writes {
		if k.kind == kind {
			return t.index, nil
		}
	}
	return t.base.kinds[kind], nil
}

func (t *tx) lookup(k objKey) (store.Object, bool) {
	if o, ok := t.writes[k]; ok {
		if o == nil {
			return store.Object{}, false
		}
		return *o, true
	}
	o, ok := t.base.objs[k]
	return o, ok
}

func clone(o store.Object) store.Object {
	o.Data = append([]byte(nil), o.Data...)
	return o
}

func (t *tx) Get(ctx context.Context, kind, key string) (store.Object, error) {
	o, ok := t.lookup(objKey{kind, key})
	if !ok {
		return store.Object{Kind: kind, Key: key}, fmt.Errorf("get %s %s: %w", kind, key, store.ErrNotFound)
	}
	return clone(o), nil
}

func (t *tx) Put(ctx context.Context, o *store.Object, opts store.PutOptions) error {
	if !t.writable {
		return fmt.Errorf("put %s %s: read-only transaction", o.Kind, o.Key)
	}
	k := objKey{o.Kind, o.Key}
	cur, exists := t.lookup(k)
	if err := store.CheckPut(o, cur, exists, opts, t.index); err != nil {
		return err
	}
	c := clone(*o)
	t.writes[k] = &c
	return nil
}

func (t *tx) Delete(ctx context.Context, kind, key string) error {
	if !t.writable {
		return fmt.Errorf("delete %s %s: read-only transaction", kind, key)
	}
	k := objKey{kind, key}
	if _, ok := t.lookup(k); !ok {
		return fmt.Errorf("delete %s %s: %w", kind, key, store.ErrNotFound)
	}
	t.writes[k] = nil
	return nil
}

func (t *tx) List(ctx context.Context, q store.Query) ([]store.Object, error) {
	seen := map[objKey]bool{}
	var out []store.Object
	consider := func(k objKey) {
		if seen[k] {
			return
		}
		seen[k] = true
		if q.Kind != "" && k.kind != q.Kind {
			return
		}
		if !strings.HasPrefix(k.key, q.Prefix) || (q.After != "" && k.key <= q.After) {
			return
		}
		if o, ok := t.lookup(k); ok {
			out = append(out, clone(o))
		}
	}
	for k := range t.writes {
		consider(k)
	}
	committed := make([]objKey, 0, len(t.base.objs))
	for k := range t.base.objs {
		committed = append(committed, k)
	}
	for _, k := range committed {
		consider(k)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key != out[j].Key {
			return out[i].Key < out[j].Key
		}
		return out[i].Kind < out[j].Kind
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}
