package chunkstore

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"coffer/internal/chunk"
)

// MemIndex is an in-memory Index, for tests and for tools that rebuild an
// index from packs. The zero value is not usable; call NewMemIndex.
type MemIndex struct {
	mu      sync.RWMutex
	entries map[chunk.ID]Entry
}

var _ Index = (*MemIndex)(nil)

// NewMemIndex returns an empty MemIndex.
func NewMemIndex() *MemIndex { return &MemIndex{entries: make(map[chunk.ID]Entry)} }

// Lookup implements Index.
func (m *MemIndex) Lookup(ctx context.Context, ids []chunk.ID) (map[chunk.ID]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[chunk.ID]Entry)
	for _, id := range ids {
		if e, ok := m.entries[id]; ok {
			out[id] = e
		}
	}
	return out, nil
}

// ForEachID implements IDLister.
func (m *MemIndex) ForEachID(ctx context.Context, fn func(chunk.ID)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.RLock()
	ids := make([]chunk.ID, 0, len(m.entries))
	for id := range m.entries {
		ids = append(ids, id)
	}
	m.mu.RUnlock()
	for _, id := range ids {
		fn(id)
	}
	return nil
}

// Add implements Index.
func (m *MemIndex) Add(ctx context.Context, entries []Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range entries {
		m.entries[e.ID] = e
	}
	return nil
}

// Move implements Index.
func (m *MemIndex) Move(ctx context.Context, from string, entries []Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range entries {
		if cur, ok := m.entries[e.ID]; ok && cur.Pack == from {
			m.entries[e.ID] = e
		}
	}
	return nil
}

// SetDeleted implements Index.
func (m *MemIndex) SetDeleted(ctx context.Context, pack string, ids []chunk.ID, at int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		if e, ok := m.entries[id]; ok && e.Pack == pack {
			e.DeletedAt = at
			m.entries[id] = e
		}
	}
	return nil
}

// Delete implements Index.
func (m *MemIndex) Delete(ctx context.Context, pack string, ids []chunk.ID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		if e, ok := m.entries[id]; ok && e.Pack == pack {
			delete(m.entries, id)
		}
	}
	return nil
}

// Packs implements Index.
func (m *MemIndex) Packs(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	seen := make(map[string]bool)
	var out []string
	for _, e := range m.entries {
		if !seen[e.Pack] {
			seen[e.Pack] = true
			out = append(out, e.Pack)
		}
	}
	slices.Sort(out)
	return out, nil
}

// PackEntries implements Index.
func (m *MemIndex) PackEntries(ctx context.Context, pack string) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Entry
	for _, e := range m.entries {
		if e.Pack == pack {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.Offset, b.Offset) })
	return out, nil
}

// Stats implements Index.
func (m *MemIndex) Stats(ctx context.Context) (IndexStats, error) {
	if err := ctx.Err(); err != nil {
		return IndexStats{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var st IndexStats
	packs := make(map[string]bool)
	for _, e := range m.entries {
		st.Chunks++
		st.StoredBytes += int64(e.Length)
		st.RawBytes += int64(e.RawLength)
		if e.DeletedAt != 0 {
			st.Deleted++
		}
		packs[e.Pack] = true
	}
	st.Packs = int64(len(packs))
	return st, nil
}

// Clear implements Index.
func (m *MemIndex) Clear(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.entries)
	return nil
}
