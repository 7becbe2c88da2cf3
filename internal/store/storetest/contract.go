package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"coffer/internal/store"
)

// runContract runs the tests of the contract's finer points: ETags and
// conditions, paging, isolation, nesting.
func runContract(t *testing.T, newStore Factory, o Options) {
	ctx := context.Background()
	put := func(t *testing.T, s store.Store, kind, key string, data []byte, opts store.PutOptions) store.Object {
		t.Helper()
		obj := store.Object{Kind: kind, Key: key, Data: data}
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(ctx, &obj, opts) }); err != nil {
			t.Fatalf("put %s %s: %v", kind, key, err)
		}
		return obj
	}
	get := func(t *testing.T, s store.Store, kind, key string) (store.Object, error) {
		t.Helper()
		var obj store.Object
		err := s.View(ctx, func(tx store.Tx) error {
			var err error
			obj, err = tx.Get(ctx, kind, key)
			return err
		})
		return obj, err
	}

	// ETags: ModifyIndex is the ETag; it moves on every write of the
	// object, CreateIndex stays, a recreated object is new, both objects
	// of one Update share its index, and binary data round-trips.
	t.Run("ETags", func(t *testing.T) {
		s, _ := newStore(t)
		defer s.Close()
		bin := []byte{0, 1, 2, 0xff, 0, '\'', '\\', '%'}
		a := put(t, s, "k", "/a", bin, store.PutOptions{CreateOnly: true})
		if a.CreateIndex == 0 || a.CreateIndex != a.ModifyIndex {
			t.Fatalf("new object: create %d modify %d, want equal and non-zero", a.CreateIndex, a.ModifyIndex)
		}
		got, err := get(t, s, "k", "/a")
		if err != nil || !bytes.Equal(got.Data, bin) || got.ModifyIndex != a.ModifyIndex || got.CreateIndex != a.CreateIndex {
			t.Fatalf("get: %q@%d/%d %v, want %q@%d", got.Data, got.CreateIndex, got.ModifyIndex, err, bin, a.ModifyIndex)
		}
		b := put(t, s, "k", "/a", []byte("2"), store.PutOptions{MatchIndex: a.ModifyIndex})
		if b.CreateIndex != a.CreateIndex || b.ModifyIndex <= a.ModifyIndex {
			t.Fatalf("replace: create %d modify %d after %d/%d", b.CreateIndex, b.ModifyIndex, a.CreateIndex, a.ModifyIndex)
		}
		// The old ETag no longer matches; nothing changes.
		err = s.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Object{Kind: "k", Key: "/a", Data: []byte("stale")}, store.PutOptions{MatchIndex: a.ModifyIndex})
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("put with a stale ETag: %v, want ErrConflict", err)
		}
		if got, _ := get(t, s, "k", "/a"); string(got.Data) != "2" || got.ModifyIndex != b.ModifyIndex {
			t.Fatalf("after the refused put: %q@%d", got.Data, got.ModifyIndex)
		}
		// MatchIndex of a missing object is a conflict, not a create.
		err = s.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Object{Kind: "k", Key: "/missing"}, store.PutOptions{MatchIndex: b.ModifyIndex})
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("MatchIndex on a missing object: %v, want ErrConflict", err)
		}
		// Two objects in one Update share its index.
		var x, y store.Object
		err = s.Update(ctx, func(tx store.Tx) error {
			x = store.Object{Kind: "k", Key: "/x"}
			y = store.Object{Kind: "other", Key: "/y"}
			if err := tx.Put(ctx, &x, store.PutOptions{}); err != nil {
				return err
			}
			if err := tx.Put(ctx, &y, store.PutOptions{}); err != nil {
				return err
			}
			if x.ModifyIndex != tx.Index() || y.ModifyIndex != tx.Index() {
				return fmt.Errorf("indexes %d and %d, want the transaction's %d", x.ModifyIndex, y.ModifyIndex, tx.Index())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if x.ModifyIndex <= b.ModifyIndex {
			t.Fatalf("a later Update's index %d <= %d", x.ModifyIndex, b.ModifyIndex)
		}
		// Deleted and created again: a new object (new CreateIndex).
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.Delete(ctx, "k", "/a") }); err != nil {
			t.Fatal(err)
		}
		c := put(t, s, "k", "/a", nil, store.PutOptions{CreateOnly: true})
		if c.CreateIndex <= b.ModifyIndex || c.Data == nil {
			t.Fatalf("recreated: create index %d (was %d), data %v", c.CreateIndex, a.CreateIndex, c.Data)
		}
	})

	// A failed condition is an answer, not a broken transaction: the
	// function may go on and commit other writes.
	t.Run("FailedConditionKeepsTransaction", func(t *testing.T) {
		s, _ := newStore(t)
		defer s.Close()
		put(t, s, "k", "/a", []byte("1"), store.PutOptions{})
		err := s.Update(ctx, func(tx store.Tx) error {
			err := tx.Put(ctx, &store.Object{Kind: "k", Key: "/a"}, store.PutOptions{CreateOnly: true})
			if !errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("CreateOnly on an existing object: %v", err)
			}
			if _, err := tx.Get(ctx, "k", "/nothing"); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("get missing: %v", err)
			}
			if err := tx.Delete(ctx, "k", "/nothing"); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("delete missing: %v", err)
			}
			return tx.Put(ctx, &store.Object{Kind: "k", Key: "/b", Data: []byte("2")}, store.PutOptions{})
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := get(t, s, "k", "/b"); err != nil || string(got.Data) != "2" {
			t.Fatalf("the write after the refused one: %q %v", got.Data, err)
		}
	})

	// Paging: pages of Limit keys, each after the last key of the one
	// before, give every key once, in (Key, Kind) order; prefixes are
	// literal, non-ASCII ones too.
	t.Run("Paging", func(t *testing.T) {
		s, _ := newStore(t)
		defer s.Close()
		var want []string
		err := s.Update(ctx, func(tx store.Tx) error {
			for i := range 57 {
				k := fmt.Sprintf("/p/%03d", i)
				want = append(want, k)
				if err := tx.Put(ctx, &store.Object{Kind: "k", Key: k}, store.PutOptions{}); err != nil {
					return err
				}
			}
			for _, k := range []string{"/p", "/p0", "/q/1", "/é/1", "/é/2", "/éa/3", "/e/4", "/\U0010ffff/1", "/\U0010ffffx"} {
				if err := tx.Put(ctx, &store.Object{Kind: "k", Key: k}, store.PutOptions{}); err != nil {
					return err
				}
			}
			// The same key in two kinds: ordered by kind after key.
			return tx.Put(ctx, &store.Object{Kind: "a", Key: "/p/010"}, store.PutOptions{})
		})
		if err != nil {
			t.Fatal(err)
		}
		err = s.View(ctx, func(tx store.Tx) error {
			var got []string
			after := ""
			for pages := 0; ; pages++ {
				if pages > 20 {
					return fmt.Errorf("paging does not end: %v", got)
				}
				page, err := tx.List(ctx, store.Query{Kind: "k", Prefix: "/p/", After: after, Limit: 10})
				if err != nil {
					return err
				}
				if len(page) > 10 {
					return fmt.Errorf("a page of %d, limit 10", len(page))
				}
				if len(page) == 0 {
					break
				}
				for _, o := range page {
					got = append(got, o.Key)
				}
				after = page[len(page)-1].Key
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("paged keys %v\nwant %v", got, want)
			}
			both, err := tx.List(ctx, store.Query{Prefix: "/p/010"})
			if err != nil {
				return err
			}
			if len(both) != 2 || both[0].Kind != "a" || both[1].Kind != "k" {
				return fmt.Errorf("one key in two kinds: %v", both)
			}
			for prefix, n := range map[string]int{"/é/": 2, "/é": 3, "/e": 1, "/\U0010ffff": 2, "/\U0010ffff/": 1, "/": 57 + 9} {
				l, err := tx.List(ctx, store.Query{Kind: "k", Prefix: prefix})
				if err != nil {
					return err
				}
				if len(l) != n {
					return fmt.Errorf("prefix %q: %d keys %v, want %d", prefix, len(l), keys(l), n)
				}
			}
			if l, _ := tx.List(ctx, store.Query{Kind: "k", After: "/\U0010ffffx"}); len(l) != 0 {
				return fmt.Errorf("after the last key: %v", keys(l))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	// Prefixes are literal byte strings: no LIKE wildcards (%, _, \\), no
	// case folding, a prefix that is a whole key lists that key and the
	// keys under it, and prefixes ending in the highest runes have a
	// correct end; with and without a Kind (the two key indexes).
	t.Run("PrefixLiteral", func(t *testing.T) {
		s, _ := newStore(t)
		defer s.Close()
		all := []string{
			"/a%b", "/a%b/1", "/axb/2", "/a_b/3", "/aXb/4", `/a\b/5`, `/a\\b/6`, "/A%B/7", "/ab",
			"/é", "/é/8", "/éa", "/ê", "/\ud7ff/9", "/\ue000/10", "/\uffff/11",
			"/\U0010ffff", "/\U0010ffff\U0010ffff/12", "/\U0010ffffa",
		}
		err := s.Update(ctx, func(tx store.Tx) error {
			for _, k := range all {
				for _, kind := range []string{"k", "other"} {
					if err := tx.Put(ctx, &store.Object{Kind: kind, Key: k}, store.PutOptions{}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			prefix string
			want   []string
		}{
			{"/a%", []string{"/a%b", "/a%b/1"}},
			{"/a%b", []string{"/a%b", "/a%b/1"}},
			{"/a%b/", []string{"/a%b/1"}},
			{"/a_", []string{"/a_b/3"}},
			{`/a\`, []string{`/a\\b/6`, `/a\b/5`}},
			{`/a\\`, []string{`/a\\b/6`}},
			{"/A", []string{"/A%B/7"}},
			{"/aX", []string{"/aXb/4"}},
			{"/ab", []string{"/ab"}},
			{"/é", []string{"/é", "/é/8", "/éa"}},
			{"/\ud7ff", []string{"/\ud7ff/9"}},
			{"/\uffff", []string{"/\uffff/11"}},
			{"/\U0010ffff", []string{"/\U0010ffff", "/\U0010ffffa", "/\U0010ffff\U0010ffff/12"}},
			{"/\U0010ffff\U0010ffff", []string{"/\U0010ffff\U0010ffff/12"}},
			{"/b", nil},
		} {
			err := s.View(ctx, func(tx store.Tx) error {
				l, err := tx.List(ctx, store.Query{Kind: "k", Prefix: c.prefix})
				if err != nil {
					return err
				}
				if fmt.Sprint(keys(l)) != fmt.Sprint(c.want) {
					return fmt.Errorf("kind k: %q", keys(l))
				}
				l, err = tx.List(ctx, store.Query{Prefix: c.prefix})
				if err != nil {
					return err
				}
				if len(l) != 2*len(c.want) {
					return fmt.Errorf("every kind: %q, want each of %q twice", keys(l), c.want)
				}
				return nil
			})
			if err != nil {
				t.Errorf("prefix %q: %v", c.prefix, err)
			}
		}
	})

	// A View reads one snapshot: an Update that commits while it runs
	// is invisible to it, and visible to the next View.
	t.Run("ViewSnapshot", func(t *testing.T) {
		s, _ := newStore(t)
		defer s.Close()
		put(t, s, "k", "/x", []byte("1"), store.PutOptions{})
		err := s.View(ctx, func(tx store.Tx) error {
			o, err := tx.Get(ctx, "k", "/x")
			if err != nil || string(o.Data) != "1" {
				return fmt.Errorf("first read: %q %v", o.Data, err)
			}
			idx := tx.Index()
			put(t, s, "k", "/x", []byte("2"), store.PutOptions{})
			put(t, s, "k", "/y", []byte("new"), store.PutOptions{})
			if o, err := tx.Get(ctx, "k", "/x"); err != nil || string(o.Data) != "1" {
				return fmt.Errorf("a commit after the View began shows in it: %q %v", o.Data, err)
			}
			if _, err := tx.Get(ctx, "k", "/y"); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("an object created after the View began shows in it: %v", err)
			}
			if l, err := tx.List(ctx, store.Query{Kind: "k"}); err != nil || len(l) != 1 {
				return fmt.Errorf("list in the View: %v %v", keys(l), err)
			}
			if tx.Index() != idx {
				return fmt.Errorf("the View's index moved from %d to %d", idx, tx.Index())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := get(t, s, "k", "/x"); string(o.Data) != "2" {
			t.Fatalf("a later View reads %q", o.Data)
		}
	})

	// A View inside an Update's function is its own transaction: it does
	// not see the Update's writes, and it does not wait for it, however
	// many Updates do the same at once.
	t.Run("ViewInsideUpdate", func(t *testing.T) {
		s, _ := newStore(t)
		defer s.Close()
		put(t, s, "k", "/committed", []byte("c"), store.PutOptions{})
		var wg sync.WaitGroup
		errs := make(chan error, 24)
		for i := range 24 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.Update(ctx, func(tx store.Tx) error {
					key := fmt.Sprintf("/mine/%d", i)
					if err := tx.Put(ctx, &store.Object{Kind: "k", Key: key}, store.PutOptions{}); err != nil {
						return err
					}
					return s.View(ctx, func(vtx store.Tx) error {
						if _, err := vtx.Get(ctx, "k", key); !errors.Is(err, store.ErrNotFound) {
							return fmt.Errorf("the nested View sees the Update's uncommitted write: %v", err)
						}
						if _, err := vtx.Get(ctx, "k", "/committed"); err != nil {
							return fmt.Errorf("the nested View: %w", err)
						}
						return nil
					})
				})
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := s.View(ctx, func(tx store.Tx) error {
			l, err := tx.List(ctx, store.Query{Kind: "k", Prefix: "/mine/"})
			if err == nil && len(l) != 24 {
				err = fmt.Errorf("%d writes committed, want 24", len(l))
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	})

	// Per kind, indexes follow commit order: Views that read one
	// KindIndex see the same objects of that kind, and a later View never
	// reads a smaller one, with many writers of the kind at once (what
	// the RBAC cache relies on).
	t.Run("KindIndexCommitOrder", func(t *testing.T) {
		s, _ := newStore(t)
		defer s.Close()
		var wg sync.WaitGroup
		var done atomic.Bool
		seen := map[uint64]int{} // KindIndex → number of objects of the kind
		var readErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last uint64
			for !done.Load() && readErr == nil {
				readErr = s.View(ctx, func(tx store.Tx) error {
					idx, err := tx.KindIndex(ctx, "w")
					if err != nil {
						return err
					}
					l, err := tx.List(ctx, store.Query{Kind: "w"})
					if err != nil {
						return err
					}
					if idx < last {
						return fmt.Errorf("KindIndex went back from %d to %d", last, idx)
					}
					last = idx
					if n, ok := seen[idx]; ok && n != len(l) {
						return fmt.Errorf("KindIndex %d with %d objects, and before with %d", idx, len(l), n)
					}
					seen[idx] = len(l)
					return nil
				})
			}
		}()
		var werr atomic.Value
		var writers sync.WaitGroup
		for w := range 6 {
			writers.Add(1)
			go func() {
				defer writers.Done()
				for i := range 15 {
					err := s.Update(ctx, func(tx store.Tx) error {
						if err := tx.Put(ctx, &store.Object{Kind: "w", Key: fmt.Sprintf("/%d/%d", w, i)}, store.PutOptions{}); err != nil {
							return err
						}
						return tx.Put(ctx, &store.Object{Kind: "other", Key: fmt.Sprintf("/%d/%d", w, i)}, store.PutOptions{})
					})
					if err != nil {
						werr.Store(err)
					}
				}
			}()
		}
		writers.Wait()
		done.Store(true)
		wg.Wait()
		if err, _ := werr.Load().(error); err != nil {
			t.Fatal(err)
		}
		if readErr != nil {
			t.Fatal(readErr)
		}
		if err := s.View(ctx, func(tx store.Tx) error {
			l, _ := tx.List(ctx, store.Query{Kind: "w"})
			idx, err := tx.KindIndex(ctx, "w")
			if err == nil && (len(l) != 90 || idx > tx.Index()) {
				err = fmt.Errorf("%d objects (want 90), KindIndex %d, Index %d", len(l), idx, tx.Index())
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	})

	// Lost update: A reads x, B writes x and commits, A writes x from
	// what it read. Serializable Updates forbid A's commit on a stale
	// read: A runs again and sees B's write.
	t.Run("NoLostUpdate", func(t *testing.T) {
		if !o.Concurrent {
			t.Skip("Updates run one at a time: no interleaving to test (ConcurrentUpdates covers them)")
		}
		s, _ := newStore(t)
		defer s.Close()
		put(t, s, "k", "/x", []byte("0"), store.PutOptions{})
		runs := 0
		interleave(t, s, &runs, func(tx store.Tx) error {
			obj, err := tx.Get(ctx, "k", "/x")
			if err != nil {
				return err
			}
			obj.Data = append(obj.Data, '+')
			return tx.Put(ctx, &obj, store.PutOptions{})
		}, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Object{Kind: "k", Key: "/x", Data: []byte("B")}, store.PutOptions{})
		})
		if got, _ := get(t, s, "k", "/x"); string(got.Data) != "B+" || runs != 2 {
			t.Fatalf("x = %q after %d runs of A, want B+ after 2 (A ran again on B's write)", got.Data, runs)
		}
	})

	// Write skew: two doctors on call, each goes off call if the other is
	// still on. Snapshot isolation lets both go; serializable Updates keep
	// one on call.
	t.Run("NoWriteSkew", func(t *testing.T) {
		if !o.Concurrent {
			t.Skip("Updates run one at a time: no interleaving to test")
		}
		s, _ := newStore(t)
		defer s.Close()
		// Each doctor is of its own kind, so that nothing but the
		// reads relates the two Updates.
		put(t, s, "doctor.a", "/on", []byte("1"), store.PutOptions{})
		put(t, s, "doctor.b", "/on", []byte("1"), store.PutOptions{})
		offIfOther := func(me, other string) func(tx store.Tx) error {
			return func(tx store.Tx) error {
				o, err := tx.Get(ctx, "doctor."+other, "/on")
				if err != nil {
					return err
				}
				if string(o.Data) != "1" {
					return nil
				}
				return tx.Put(ctx, &store.Object{Kind: "doctor." + me, Key: "/on", Data: []byte("0")}, store.PutOptions{})
			}
		}
		runs := 0
		interleave(t, s, &runs, offIfOther("a", "b"), offIfOther("b", "a"))
		a, _ := get(t, s, "doctor.a", "/on")
		b, _ := get(t, s, "doctor.b", "/on")
		if string(a.Data)+string(b.Data) != "01" && string(a.Data)+string(b.Data) != "10" {
			t.Fatalf("on call: a=%s b=%s, want exactly one (write skew)", a.Data, b.Data)
		}
		if runs != 2 {
			t.Fatalf("A ran %d times, want 2", runs)
		}
	})
}

// interleave runs Update A, whose function reads (first), then lets
// Update B run to its commit, then lets A finish (second) — on A's first
// run only; later runs of A go straight through. It counts A's runs.
func interleave(t *testing.T, s store.Store, runs *int, a, b func(tx store.Tx) error) {
	t.Helper()
	ctx := context.Background()
	readDone, bDone := make(chan struct{}), make(chan error, 1)
	aDone := make(chan error, 1)
	go func() {
		aDone <- s.Update(ctx, func(tx store.Tx) error {
			*runs++
			if *runs > 1 {
				return a(tx)
			}
			// The read half of A: a reads through tx before the
			// pause, and writes after it.
			return readThenWrite(tx, a, readDone, bDone)
		})
	}()
	select {
	case <-readDone:
	case err := <-aDone:
		t.Fatalf("A ended before it paused: %v", err)
	}
	bDone <- s.Update(ctx, b)
	if err := <-aDone; err != nil {
		t.Fatalf("A: %v", err)
	}
}

// readThenWrite runs a against a Tx that pauses before a's first write:
// it closes readDone, then waits for B's outcome.
func readThenWrite(tx store.Tx, a func(tx store.Tx) error, readDone chan struct{}, bDone chan error) error {
	p := &pausingTx{Tx: tx, readDone: readDone, bDone: bDone}
	return a(p)
}

// pausingTx pauses before its first Put or Delete.
type pausingTx struct {
	store.Tx
	readDone chan struct{}
	bDone    chan error
	paused   bool
}

func (p *pausingTx) pause() error {
	if p.paused {
		return nil
	}
	p.paused = true
	close(p.readDone)
	if err := <-p.bDone; err != nil {
		return fmt.Errorf("B: %w", err)
	}
	return nil
}

func (p *pausingTx) Put(ctx context.Context, o *store.Object, opts store.PutOptions) error {
	if err := p.pause(); err != nil {
		return err
	}
	return p.Tx.Put(ctx, o, opts)
}

func (p *pausingTx) Delete(ctx context.Context, kind, key string) error {
	if err := p.pause(); err != nil {
		return err
	}
	return p.Tx.Delete(ctx, kind, key)
}
