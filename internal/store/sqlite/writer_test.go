package sqlite

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"coffer/internal/store"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// queued reports how many writes wait for the write connection.
func queued(s *Store) int {
	s.wr.mu.Lock()
	defer s.wr.mu.Unlock()
	return len(s.wr.queue)
}

// waitUntil polls cond (a goroutine reaching a queue cannot be observed
// otherwise); it fails the test after a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// holdWriter starts an Update that keeps the write connection until the
// returned function is called, and waits until it has it.
func holdWriter(t *testing.T, s *Store) (release func() error) {
	t.Helper()
	ctx := context.Background()
	holding, release1 := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Update(ctx, func(tx store.Tx) error {
			close(holding)
			<-release1
			return tx.Put(ctx, &store.Object{Kind: "k", Key: "/hold"}, store.PutOptions{})
		})
	}()
	<-holding
	return func() error {
		close(release1)
		return <-done
	}
}

// walCommits counts the commit frames in the database's WAL: one per
// durable commit (one fsync each, with synchronous=FULL).
func walCommits(t *testing.T, dbPath string) int {
	t.Helper()
	b, err := os.ReadFile(dbPath + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 32 {
		return 0
	}
	pageSize := int(binary.BigEndian.Uint32(b[8:12]))
	salt := b[16:24]
	n := 0
	for off := 32; off+24+pageSize <= len(b); off += 24 + pageSize {
		h := b[off : off+24]
		if string(h[8:16]) != string(salt) {
			break // a frame of an earlier WAL generation
		}
		if binary.BigEndian.Uint32(h[4:8]) != 0 {
			n++
		}
	}
	return n
}

// TestUpdatesQueueInOrderAndCommitTogether queues writes one by one behind
// a held write connection: they run in the order they arrived (with
// database/sql's pool, a freed connection went to a random waiter, and the
// unlucky waited many times the average) and commit in far fewer WAL
// commits, fsyncs, than writes (each write was its own commit, so under
// load the fsync bounded the writes per second). Each write keeps its own
// index.
func TestUpdatesQueueInOrderAndCommitTogether(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	release := holdWriter(t, s)
	before := walCommits(t, path)
	const n = 40
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	objs := make([]store.Object, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Update(ctx, func(tx store.Tx) error {
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				objs[i] = store.Object{Kind: "k", Key: fmt.Sprintf("/w/%02d", i), Data: []byte("x")}
				return tx.Put(ctx, &objs[i], store.PutOptions{})
			})
		}()
		waitUntil(t, fmt.Sprintf("write %d is queued", i), func() bool { return queued(s) == i+1 })
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if want := slices.Sorted(slices.Values(order)); !slices.Equal(order, want) {
		t.Errorf("writes ran in the order %v, not in the order they queued", order)
	}
	commits := walCommits(t, path) - before
	if commits > n/4 {
		t.Errorf("%d queued writes took %d WAL commits (fsyncs), want them committed together", n, commits)
	}
	for i := 1; i < n; i++ {
		if objs[i].ModifyIndex != objs[i-1].ModifyIndex+1 {
			t.Errorf("write %d has index %d after %d: each write must have its own, in order", i, objs[i].ModifyIndex, objs[i-1].ModifyIndex)
		}
	}
	s.View(ctx, func(tx store.Tx) error {
		got, err := tx.List(ctx, store.Query{Kind: "k", Prefix: "/w/"})
		if err != nil || len(got) != n {
			t.Errorf("%d writes visible (%v), want %d", len(got), err, n)
		}
		if tx.Index() != objs[n-1].ModifyIndex {
			t.Errorf("store index %d, want %d", tx.Index(), objs[n-1].ModifyIndex)
		}
		return nil
	})
	t.Logf("%d writes: %d WAL commits", n, commits)
}

// TestGroupedUpdatesFailAlone puts a write that fails, one that panics and
// one whose caller is cancelled midway into one group between two that
// succeed: only their own writes are undone, and the writes after them see
// the earlier ones, as in a serial order.
func TestGroupedUpdatesFailAlone(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	release := holdWriter(t, s)
	boom := errors.New("boom")
	cctx, cancel := context.WithCancel(ctx)
	putCtx := func(ctx context.Context, tx store.Tx, key string) error {
		return tx.Put(ctx, &store.Object{Kind: "k", Key: key, Data: []byte(key)}, store.PutOptions{})
	}
	put := func(tx store.Tx, key string) error { return putCtx(ctx, tx, key) }
	steps := []struct {
		ctx context.Context
		fn  func(tx store.Tx) error
	}{
		{ctx, func(tx store.Tx) error { return put(tx, "/a") }},
		{ctx, func(tx store.Tx) error {
			if err := put(tx, "/fails"); err != nil {
				return err
			}
			return boom
		}},
		{ctx, func(tx store.Tx) error {
			put(tx, "/panics")
			panic("fn panicked")
		}},
		{cctx, func(tx store.Tx) error {
			if err := putCtx(cctx, tx, "/cancelled-1"); err != nil {
				return err
			}
			cancel()
			return putCtx(cctx, tx, "/cancelled-2")
		}},
		{ctx, func(tx store.Tx) error {
			if _, err := tx.Get(ctx, "k", "/a"); err != nil {
				return fmt.Errorf("the group's first write is not visible to the last: %w", err)
			}
			for _, k := range []string{"/fails", "/panics", "/cancelled-1"} {
				if _, err := tx.Get(ctx, "k", k); !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("the undone write %s is visible to the next: %v", k, err)
				}
			}
			return put(tx, "/z")
		}},
	}
	errs := make([]error, len(steps))
	panics := make([]any, len(steps))
	var wg sync.WaitGroup
	for i, st := range steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { panics[i] = recover() }()
			errs[i] = s.Update(st.ctx, st.fn)
		}()
		waitUntil(t, fmt.Sprintf("write %d is queued", i), func() bool { return queued(s) == i+1 })
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if errs[0] != nil || errs[4] != nil {
		t.Fatalf("the writes that succeed: %v, %v", errs[0], errs[4])
	}
	if !errors.Is(errs[1], boom) {
		t.Errorf("the failing write: %v, want its own error", errs[1])
	}
	if panics[2] != "fn panicked" {
		t.Errorf("the panicking write: recovered %v, want its panic to reach its caller", panics[2])
	}
	if !errors.Is(errs[3], context.Canceled) {
		t.Errorf("the cancelled write: %v, want context.Canceled", errs[3])
	}
	s.View(ctx, func(tx store.Tx) error {
		for _, k := range []string{"/a", "/z"} {
			if _, err := tx.Get(ctx, "k", k); err != nil {
				t.Errorf("%s: %v", k, err)
			}
		}
		for _, k := range []string{"/fails", "/panics", "/cancelled-1", "/cancelled-2"} {
			if _, err := tx.Get(ctx, "k", k); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s of a failed write was committed: %v", k, err)
			}
		}
		return nil
	})
}

// TestQueuedUpdateCancelled: a write whose caller gives up while it waits
// returns the context's error and never runs.
func TestQueuedUpdateCancelled(t *testing.T) {
	s, _ := openTemp(t)
	release := holdWriter(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	ran := false
	done := make(chan error, 1)
	go func() {
		done <- s.Update(ctx, func(tx store.Tx) error { ran = true; return nil })
	}()
	waitUntil(t, "the write is queued", func() bool { return queued(s) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled write: %v", err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if ran {
		t.Fatal("the cancelled write ran")
	}
}

// TestGroupRefusedAfterTransactionEnds: when a write ends the group's
// transaction (SQLite rolls it back on some errors), the writes after it
// are refused rather than run outside any transaction, and nothing of the
// group is committed.
func TestGroupRefusedAfterTransactionEnds(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	release := holdWriter(t, s)
	errs := make([]error, 3)
	ran := make([]bool, 3)
	fns := []writeFunc{
		func(ctx context.Context, b *batch) (bool, error) {
			ran[0] = true
			_, err := b.tx.ExecContext(ctx, `INSERT INTO objects (kind, key, data, create_index, modify_index) VALUES ('k', '/first', x'', 1, 1)`)
			return true, err
		},
		func(ctx context.Context, b *batch) (bool, error) {
			ran[1] = true
			_, err := b.tx.ExecContext(ctx, `ROLLBACK`) // as SQLite does on SQLITE_FULL or an interrupt
			return false, err
		},
		func(ctx context.Context, b *batch) (bool, error) {
			ran[2] = true
			_, err := b.tx.ExecContext(ctx, `INSERT INTO objects (kind, key, data, create_index, modify_index) VALUES ('k', '/after', x'', 2, 2)`)
			return true, err
		},
	}
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.wr.do(ctx, fn)
		}()
		waitUntil(t, fmt.Sprintf("write %d is queued", i), func() bool { return queued(s) == i+1 })
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Errorf("write %d succeeded in a group whose transaction had ended", i)
		}
	}
	if ran[2] {
		t.Error("a write ran after its group's transaction had ended")
	}
	s.View(ctx, func(tx store.Tx) error {
		for _, k := range []string{"/first", "/after"} {
			if _, err := tx.Get(ctx, "k", k); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s was committed: %v", k, err)
			}
		}
		return nil
	})
	// The writer goes on with the next group.
	if err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Object{Kind: "k", Key: "/next"}, store.PutOptions{})
	}); err != nil {
		t.Fatalf("write after the broken group: %v", err)
	}
}

// TestUpdateAfterClose fails instead of hanging.
func TestUpdateAfterClose(t *testing.T) {
	s, _ := openTemp(t)
	s.Close()
	err := s.Update(context.Background(), func(tx store.Tx) error { return nil })
	if !errors.Is(err, errClosed) {
		t.Fatalf("Update after Close: %v", err)
	}
}
