// Package storetest is the conformance suite that every store.Store
// implementation runs: each point of the contract in store's package doc
// (transactions, conditions and ETags, indexes per kind, paging, isolation
// under concurrent writers, re-runs, a View inside an Update). It also
// holds Rerun, a decorator that makes any store run every Update's function
// twice, for testing callers against PostgreSQL's re-runs on SQLite or
// memstore.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"coffer/internal/store"
)

// Factory returns a new empty store and a function that reopens the same
// underlying data (after the first store has been closed).
type Factory func(t *testing.T) (s store.Store, reopen func() store.Store)

// Options describe the store under test.
type Options struct {
	// Concurrent: Updates run at the same time (PostgreSQL), so the suite
	// interleaves them to provoke lost updates and write skew. Stores that
	// run Updates one at a time (SQLite, memstore) rule those out by
	// construction: an interleaving would wait forever.
	Concurrent bool
}

// Run runs the conformance suite.
func Run(t *testing.T, newStore Factory, opts ...Options) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	runContract(t, newStore, o)
	ctx := context.Background()
	put := func(t *testing.T, s store.Store, kind, key, data string, opts store.PutOptions) (store.Object, error) {
		t.Helper()
		o := store.Object{Kind: kind, Key: key, Data: []byte(data)}
		err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(ctx, &o, opts) })
		return o, err
	}

	t.Run("PutGetIndex", func(t *testing.T) {
		s, _ := newStore(t)
		defer s.Close()
		a, err := put(t, s, "k", "/a", "one", store.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := put(t, s, "k", "/a", "two", store.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if b.CreateIndex != a.CreateIndex || b.ModifyIndex <= a.ModifyIndex {
			t.Fatalf("indexes: first %d/%d second %d/%d", a.CreateIndex, a.ModifyIndex, b.CreateIndex, b.ModifyIndex)
		}
		err = s.View(ctx, func(tx store.Tx) error {
			o, err := tx.Get(ctx, "k", "/a")
			if err != nil {
				return err
			}
			if string(o.Data) != "two" || o.ModifyIndex != b.ModifyIndex {
				return fmt.Errorf("got %q@%d, want two@%d", o.Data, o.ModifyIndex, b.ModifyIndex)
			}
			if tx.Index() != b.ModifyIndex {
				return fmt.Errorf("view index %d, want %d", tx.Index(), b.ModifyIndex)
			}
			_, err = tx.Get(ctx, "other", "/a")
			if !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("get other kind: %v, want ErrNotFound", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Conditions", func(t *testing.T) {
		s, _ := newStore(t)
		defer s.Close()
		a, _ := put(t, s, "k", "/a", "one", store.PutOptions{CreateOnly: true})
		if _, err := put(t, s, "k", "/a", "x", store.PutOptions{CreateOnly: true}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("CreateOnly on existing: %v", err)
		}
		if _, err := put(t, s, "k", "/a", "x", store.PutOptions{MatchIndex: a.ModifyIndex + 100}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("MatchIndex mismatch: %v", err)
		}
		if _, err := put(t, s, "k", "/a", "y", store.PutOptions{MatchIndex: a.ModifyIndex}); err != nil {
			t.Fatalf("MatchIndex match: %v", err)
		}
	})

	t.Run("RollbackOnError", func(t *testing.T) {
		s, _ := newStore(t)
		defer s.Close()
		boom := errors.New("boom")
		err := s.Update(ctx, func(tx store.Tx) error {
			o := store.Object{Kind: "k", Key: "/a", Data: []byte("x")}
			if err := tx.Put(ctx, &o, store.PutOptions{}); err != nil {
				return err
			}
			if _, err := tx.Get(ctx, "k", "/a"); err != nil {
				return fmt.Errorf("read own write: %w", err)
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update: %v", err)
		}
		s.View(ctx, func(tx store.Tx) error {
			if _, err := tx.Get(ctx, "k", "/a"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("rolled-back write visible: %v", err)
			}
			if tx.Index() != 0 {
				t.Errorf("index moved by a rolled-back transaction: %d", tx.Index())
			}
			return nil
		})
	})

	t.Run("ListDelete", func(t *testing.T) {
		s, _ := newStore(t)
		defer s.Close()
		for _, k := range []string{"/s/1/g/a", "/s/1/g/b", "/s/1/h/c", "/s/2/g/d", "/s/1/g_x/e"} {
			if _, err := put(t, s, "k", k, k, store.PutOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		put(t, s, "other", "/s/1/g/z", "z", store.PutOptions{})
		s.View(ctx, func(tx store.Tx) error {
			got, err := tx.List(ctx, store.Query{Kind: "k", Prefix: "/s/1/g/"})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0].Key != "/s/1/g/a" || got[1].Key != "/s/1/g/b" {
				t.Errorf("prefix list (LIKE wildcards must be literal) = %v", keys(got))
			}
			all, _ := tx.List(ctx, store.Query{Prefix: "/s/1/g/"})
			if len(all) != 3 {
				t.Errorf("all kinds under prefix = %v", keys(all))
			}
			page, _ := tx.List(ctx, store.Query{Kind: "k", After: "/s/1/g/b", Limit: 2})
			if len(page) != 2 || page[0].Key != "/s/1/g_x/e" {
				t.Errorf("paged list = %v", keys(page))
			}
			return nil
		})
		err := s.Update(ctx, func(tx store.Tx) error { return tx.Delete(ctx, "k", "/s/1/g/a") })
		if err != nil {
			t.Fatal(err)
		}
		err = s.Update(ctx, func(tx store.Tx) error { return tx.Delete(ctx, "k", "/s/1/g/a") })
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
	})

	t.Run("ConcurrentUpdates", func(t *testing.T) {
		s, _ := newStore(t)
		defer s.Close()
		put(t, s, "counter", "/c", "0", store.PutOptions{})
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 10; j++ {
					err := s.Update(ctx, func(tx store.Tx) error {
						o, err := tx.Get(ctx, "counter", "/c")
						if err != nil {
							return err
						}
						var n int
						fmt.Sscan(string(o.Data), &n)
						o.Data = []byte(fmt.Sprint(n + 1))
						return tx.Put(ctx, &o, store.PutOptions{})
					})
					if err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		s.View(ctx, func(tx store.Tx) error {
			o, _ := tx.Get(ctx, "counter", "/c")
			if string(o.Data) != "80" {
				t.Errorf("counter = %s, want 80 (lost updates)", o.Data)
			}
			return nil
		})
	})

	t.Run("KindIndex", func(t *testing.T) {
		s, reopen := newStore(t)
		kindIndex := func(s store.Store, kind string) uint64 {
			t.Helper()
			var idx uint64
			if err := s.View(ctx, func(tx store.Tx) error {
				var err error
				idx, err = tx.KindIndex(ctx, kind)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return idx
		}
		if got := kindIndex(s, "a"); got != 0 {
			t.Fatalf("KindIndex of a kind never written = %d, want 0", got)
		}
		a, _ := put(t, s, "a", "/1", "x", store.PutOptions{})
		if got := kindIndex(s, "a"); got != a.ModifyIndex {
			t.Fatalf("KindIndex after a put = %d, want %d", got, a.ModifyIndex)
		}
		b, _ := put(t, s, "b", "/1", "x", store.PutOptions{})
		if got := kindIndex(s, "a"); got != a.ModifyIndex {
			t.Errorf("a write of another kind moved KindIndex to %d, want %d", got, a.ModifyIndex)
		}
		if got := kindIndex(s, "b"); got != b.ModifyIndex {
			t.Errorf("KindIndex of b = %d, want %d", got, b.ModifyIndex)
		}
		var del uint64
		err := s.Update(ctx, func(tx store.Tx) error {
			if err := tx.Delete(ctx, "a", "/1"); err != nil {
				return err
			}
			del = tx.Index()
			if got, err := tx.KindIndex(ctx, "a"); err != nil || got != del {
				return fmt.Errorf("KindIndex inside the deleting transaction = %d %v, want %d", got, err, del)
			}
			if got, err := tx.KindIndex(ctx, "b"); err != nil || got != b.ModifyIndex {
				return fmt.Errorf("KindIndex of an untouched kind inside a transaction = %d %v, want %d", got, err, b.ModifyIndex)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := kindIndex(s, "a"); got != del {
			t.Errorf("KindIndex after a delete = %d, want %d", got, del)
		}
		boom := errors.New("boom")
		err = s.Update(ctx, func(tx store.Tx) error {
			o := store.Object{Kind: "a", Key: "/2"}
			if err := tx.Put(ctx, &o, store.PutOptions{}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if got := kindIndex(s, "a"); got != del {
			t.Errorf("a rolled-back write moved KindIndex to %d, want %d", got, del)
		}
		s.Close()
		s2 := reopen()
		defer s2.Close()
		if got := kindIndex(s2, "a"); got != del {
			t.Errorf("KindIndex after reopen = %d, want %d", got, del)
		}
	})

	t.Run("Reopen", func(t *testing.T) {
		s, reopen := newStore(t)
		a, _ := put(t, s, "k", "/a", "persist", store.PutOptions{})
		s.Close()
		s2 := reopen()
		defer s2.Close()
		s2.View(ctx, func(tx store.Tx) error {
			o, err := tx.Get(ctx, "k", "/a")
			if err != nil || string(o.Data) != "persist" || o.ModifyIndex != a.ModifyIndex {
				t.Errorf("after reopen: %q@%d %v", o.Data, o.ModifyIndex, err)
			}
			return nil
		})
		b, _ := put(t, s2, "k", "/b", "x", store.PutOptions{})
		if b.ModifyIndex <= a.ModifyIndex {
			t.Errorf("index went backwards after reopen: %d <= %d", b.ModifyIndex, a.ModifyIndex)
		}
	})
}

func keys(os []store.Object) []string {
	var k []string
	for _, o := range os {
		k = append(k, o.Key)
	}
	return k
}
