package storetest

import (
	"context"
	"sync"

	"coffer/internal/store"
)

// ListCounter wraps a store and counts the Lists of each kind run through
// its Views and Updates, for tests of what a caller reads.
type ListCounter struct {
	store.Store
	mu    sync.Mutex
	lists map[string]int
}

// CountLists wraps s in a ListCounter.
func CountLists(s store.Store) *ListCounter {
	return &ListCounter{Store: s, lists: map[string]int{}}
}

// Lists returns how many Lists of each of kinds ran since the last Reset,
// summed.
func (c *ListCounter) Lists(kinds ...string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range kinds {
		n += c.lists[k]
	}
	return n
}

// Reset sets every count to zero.
func (c *ListCounter) Reset() {
	c.mu.Lock()
	clear(c.lists)
	c.mu.Unlock()
}

func (c *ListCounter) View(ctx context.Context, fn func(tx store.Tx) error) error {
	return c.Store.View(ctx, func(tx store.Tx) error { return fn(countingTx{tx, c}) })
}

func (c *ListCounter) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	return c.Store.Update(ctx, func(tx store.Tx) error { return fn(countingTx{tx, c}) })
}

type countingTx struct {
	store.Tx
	c *ListCounter
}

func (t countingTx) List(ctx context.Context, q store.Query) ([]store.Object, error) {
	t.c.mu.Lock()
	t.c.lists[q.Kind]++
	t.c.mu.Unlock()
	return t.Tx.List(ctx, q)
}
