package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
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

// TestStalledWriterReleasesItsLocks: a writer that stops while it holds
// locks (a node frozen mid-Update keeps its connection) loses its session
// after the stall timeout, so that the writers of the same rows and kinds
// on other nodes go on instead of waiting for it for ever: inside its
// transaction, and while it holds its kinds' session locks before its
// transaction begins. Each node here is a Store of its own on one database.
func TestStalledWriterReleasesItsLocks(t *testing.T) {
	c := pgtest.Start(t)
	plain := c.NewDatabase(t)
	// A store opened on a URL that says nothing has the default timeout.
	var got string
	if err := open(t, plain).View(context.Background(), func(tx store.Tx) error {
		ptx, _ := postgres.Tx(tx)
		return ptx.QueryRow(context.Background(), `SHOW idle_in_transaction_session_timeout`).Scan(&got)
	}); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%ds", int(postgres.StallTimeout.Seconds())); got != want {
		t.Fatalf("idle_in_transaction_session_timeout = %q, want %q", got, want)
	}

	u, err := url.Parse(plain)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("idle_in_transaction_session_timeout", "500") // ms
	u.RawQuery = q.Encode()
	short := u.String()

	put := func(key string) func(tx store.Tx) error {
		return func(tx store.Tx) error {
			return tx.Put(context.Background(), &store.Object{Kind: "job", Key: key}, store.PutOptions{})
		}
	}
	// stall runs the stalled node's write in the background until release
	// is closed, and returns once it holds its locks; its error comes on
	// the returned channel.
	type stalled struct {
		release chan struct{}
		done    chan error
	}
	check := func(t *testing.T, s stalled) {
		t.Helper()
		// The healthy node's write of the same object commits although the
		// stalled node never ends its work (without the timeout it waits
		// until this context ends).
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := open(t, short).Update(ctx, put("/shared"))
		close(s.release) // its store closes only once it gives its connection back
		if err != nil {
			t.Fatalf("the other node's write: %v", err)
		}
		if err := <-s.done; err == nil {
			t.Fatal("the stalled node's write committed after its session was ended")
		}
	}

	t.Run("in its transaction", func(t *testing.T) {
		a := open(t, short)
		s := stalled{release: make(chan struct{}), done: make(chan error, 1)}
		holding := make(chan struct{})
		go func() {
			s.done <- a.Update(context.Background(), func(tx store.Tx) error {
				if err := put("/shared")(tx); err != nil {
					return err
				}
				close(holding)
				<-s.release
				return nil
			})
		}()
		<-holding
		check(t, s)
	})

	t.Run("holding its kinds before its transaction", func(t *testing.T) {
		a := open(t, short)
		s := stalled{release: make(chan struct{}), done: make(chan error, 1)}
		holding := make(chan struct{})
		go func() {
			s.done <- postgres.UpdateHoldingKinds(context.Background(), a, []string{"job"},
				func() { close(holding); <-s.release }, put("/shared"))
		}()
		<-holding
		check(t, s)
	})
}
