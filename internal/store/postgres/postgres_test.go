package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"coffer/internal/store"
	"coffer/internal/store/postgres"
	"coffer/internal/store/postgres/pgtest"
	"coffer/internal/store/storetest"
)

// open opens the store at url, closed when the test ends.
func open(t *testing.T, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	c := pgtest.Start(t)
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		url := c.NewDatabase(t)
		return open(t, url), func() store.Store { return open(t, url) }
	}, storetest.Options{Concurrent: true})
}

// raise makes the transaction fail with SQLSTATE code, as PostgreSQL does
// on a serialization failure (40001) or a deadlock (40P01).
func raise(ctx context.Context, t *testing.T, tx store.Tx, code string) error {
	t.Helper()
	ptx, ok := postgres.Tx(tx)
	if !ok {
		t.Fatal("not a postgres transaction")
	}
	_, err := ptx.Exec(ctx, `DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '`+code+`'; END $$`)
	return err
}

// TestUpdateRetries: an Update whose transaction fails with a
// serialization failure or a deadlock runs its function again on a new
// transaction, and commits only the last run's writes; other errors are not
// retried; retries are bounded and end with the context.
func TestUpdateRetries(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Start(t)
	s := open(t, c.NewDatabase(t))
	for _, code := range []string{"40001", "40P01"} {
		runs := 0
		var indexes []uint64
		err := s.Update(ctx, func(tx store.Tx) error {
			runs++
			indexes = append(indexes[:0:0], append(indexes, tx.Index())...)
			o := store.Object{Kind: "k", Key: "/" + code, Data: []byte(fmt.Sprint(runs))}
			if err := tx.Put(ctx, &o, store.PutOptions{}); err != nil {
				return err
			}
			if runs < 3 {
				return fmt.Errorf("wrapped: %w", raise(ctx, t, tx, code))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", code, err)
		}
		if runs != 3 || indexes[0] == indexes[2] {
			t.Fatalf("%s: %d runs with indexes %v, want 3 with new indexes", code, runs, indexes)
		}
		var got store.Object
		s.View(ctx, func(tx store.Tx) error { got, err = tx.Get(ctx, "k", "/"+code); return err })
		if string(got.Data) != "3" || got.ModifyIndex != indexes[2] {
			t.Fatalf("%s: committed %q@%d, want the last run's 3@%d", code, got.Data, got.ModifyIndex, indexes[2])
		}
	}

	// Each run again is counted, for /metrics.
	var m strings.Builder
	s.WriteMetrics(&m)
	if !strings.Contains(m.String(), "\ncoffer_metadata_transaction_retries_total 4\n") {
		t.Fatalf("metrics after 4 retries:\n%s", m.String())
	}

	// A function that swallows the failure of one of its statements (a
	// Put that lost to a concurrent writer) is run again all the same:
	// the store knows that its transaction is lost.
	put := func(data string) error {
		return s.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Object{Kind: "k", Key: "/x", Data: []byte(data)}, store.PutOptions{})
		})
	}
	if err := put("0"); err != nil {
		t.Fatal(err)
	}
	runs := 0
	err := s.Update(ctx, func(tx store.Tx) error {
		runs++
		if _, err := tx.Get(ctx, "k", "/x"); err != nil {
			return err
		}
		if runs == 1 {
			if err := put("B"); err != nil { // commits after this one began
				return err
			}
		}
		_ = tx.Put(ctx, &store.Object{Kind: "k", Key: "/x", Data: []byte("A")}, store.PutOptions{})
		return nil
	})
	if err != nil || runs != 2 {
		t.Fatalf("swallowed conflict: %v after %d runs, want success after 2", err, runs)
	}

	// Not retried: a unique violation is the function's business.
	runs = 0
	err = s.Update(ctx, func(tx store.Tx) error {
		runs++
		return raise(ctx, t, tx, "23505")
	})
	if err == nil || postgres.Retryable(err) || runs != 1 {
		t.Fatalf("unique violation: %v after %d runs, want an error after 1", err, runs)
	}

	// Bounded.
	s.MaxAttempts = 4
	runs = 0
	err = s.Update(ctx, func(tx store.Tx) error {
		runs++
		return raise(ctx, t, tx, "40001")
	})
	if !errors.Is(err, postgres.ErrTooManyConflicts) || runs != 4 {
		t.Fatalf("always conflicting: %v after %d runs, want ErrTooManyConflicts after 4", err, runs)
	}
	m.Reset()
	s.WriteMetrics(&m)
	if !strings.Contains(m.String(), "\ncoffer_metadata_transaction_conflicts_exhausted_total 1\n") {
		t.Fatalf("metrics after a transaction that kept conflicting:\n%s", m.String())
	}

	// The caller's context ends the retries.
	s.MaxAttempts = 1000
	cctx, cancel := context.WithCancel(ctx)
	runs = 0
	err = s.Update(cctx, func(tx store.Tx) error {
		runs++
		if runs == 2 {
			cancel()
		}
		return raise(cctx, t, tx, "40001")
	})
	if !errors.Is(err, context.Canceled) || runs > 3 {
		t.Fatalf("cancelled: %v after %d runs", err, runs)
	}
}

// TestConcurrentWritersOfOneKind: many Updates writing one kind at once
// (each also reading an object the others write) all commit; the report
// says how many runs they took.
func TestConcurrentWritersOfOneKind(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Start(t)
	s := open(t, c.NewDatabase(t))
	const writers, each = 16, 10
	var runs atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				err := s.Update(ctx, func(tx store.Tx) error {
					runs.Add(1)
					if _, err := tx.Get(ctx, "job", "/progress"); err != nil && !errors.Is(err, store.ErrNotFound) {
						return err
					}
					return tx.Put(ctx, &store.Object{Kind: "job", Key: fmt.Sprintf("/%d/%d", w, i)}, store.PutOptions{})
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d Updates of one kind by %d writers at once took %d runs", writers*each, writers, runs.Load())
}

// TestConcurrentWritersOfOverlappingKinds: many Updates at once, each
// writing its own objects of a varying set of overlapping kinds and some
// one shared object (so that the writers alone could never deadlock on
// rows), all commit and none is ended as
// a deadlock: the store takes its kind locks in one global order. A re-run
// used to hold the kinds its last run wrote as session locks and then wait
// for the others it wrote, in whatever order that made: two such re-runs
// deadlocked, and PostgreSQL took a second (deadlock_timeout) to say so.
func TestConcurrentWritersOfOverlappingKinds(t *testing.T) {
	// Before the fix the writers could wait for ever: end them.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := pgtest.Start(t)
	url := c.NewDatabase(t)
	nodes := []*postgres.Store{open(t, url), open(t, url), open(t, url)} // as three nodes
	kinds := []string{"disk", "operation", "job", "grant", "snapshot"}
	const writers, each = 12, 8
	var runs atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				run := 0
				err := nodes[w%len(nodes)].Update(ctx, func(tx store.Tx) error {
					runs.Add(1)
					run++
					// Everyone reads the kinds' indexes and one shared
					// object that some write: serialization failures.
					for _, k := range kinds {
						if _, err := tx.KindIndex(ctx, k); err != nil {
							return err
						}
					}
					if _, err := tx.Get(ctx, "group", "/shared"); err != nil && !errors.Is(err, store.ErrNotFound) {
						return err
					}
					if w%3 == 0 {
						if err := tx.Put(ctx, &store.Object{Kind: "group", Key: "/shared"}, store.PutOptions{}); err != nil {
							return err
						}
					}
					// A different set of kinds on each run and by each
					// writer, written in a different order.
					n := 1 + (w+i+run)%3
					for j := range n {
						k := kinds[(w*7+i*3+run*5+j*(w%2*2-1+len(kinds)))%len(kinds)]
						o := store.Object{Kind: k, Key: fmt.Sprintf("/%d/%d/%d", w, i, j)}
						if err := tx.Put(ctx, &o, store.PutOptions{}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, s := range nodes {
		var m strings.Builder
		s.WriteMetrics(&m)
		if !strings.Contains(m.String(), "\ncoffer_metadata_transaction_deadlocks_total 0\n") {
			t.Errorf("Updates of overlapping kinds deadlocked:\n%s", m.String())
		}
	}
	t.Logf("%d Updates of overlapping kinds by %d writers at once took %d runs", writers*each, writers, runs.Load())
}
