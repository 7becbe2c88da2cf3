package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/store"
	"coffer/internal/store/postgres"
	"coffer/internal/store/postgres/pgtest"
	"coffer/internal/store/sqlite"
)

// sessionStores runs test on the session store over SQLite and over
// PostgreSQL (skipped where PostgreSQL is not installed).
func sessionStores(t *testing.T, test func(t *testing.T, db store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "meta.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		test(t, db)
	})
	t.Run("postgres", func(t *testing.T) {
		db, err := postgres.Open(context.Background(), pgtest.Start(t).NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		test(t, db)
	})
}

// startSession starts a session on ss and returns it with a request
// carrying its cookie.
func startSession(t *testing.T, ss *sessions, principal string) (*Session, *http.Request, string) {
	t.Helper()
	w := httptest.NewRecorder()
	s, err := ss.start(context.Background(), w, principal, false)
	if err != nil {
		t.Fatal(err)
	}
	cs := w.Result().Cookies()
	if len(cs) != 1 || cs[0].Value == "" || !cs[0].HttpOnly {
		t.Fatalf("start set cookies %v, want one HttpOnly session cookie", cs)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(cs[0])
	return s, r, cs[0].Value
}

func sessionRow(t *testing.T, db store.Store, s *Session) (store.Object, bool) {
	t.Helper()
	var o store.Object
	var found bool
	err := db.View(context.Background(), func(tx store.Tx) error {
		var err error
		o, err = tx.Get(context.Background(), kindSession, s.key)
		if found = err == nil; errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return o, found
}

// TestSessionStore: a session is a row of the metadata store that a second
// node (another sessions on the same store) reads, keyed by the cookie ID's
// hash and holding no cookie value; last-seen is written at most once per
// touchEvery; idle and absolute expiry follow the injected clock and delete
// the row; signing out deletes it; a flash set on one node is shown once on
// the other.
func TestSessionStore(t *testing.T) {
	sessionStores(t, func(t *testing.T, db store.Store) {
		ctx := context.Background()
		clk := clock.NewFake(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
		nodeA := newSessions(db, clk, 30*time.Minute, 2*time.Hour)
		nodeB := newSessions(db, clk, 30*time.Minute, 2*time.Hour)

		s, r, cookie := startSession(t, nodeA, "principal-1")
		got, err := nodeB.get(ctx, r)
		if err != nil || got == nil || got.PrincipalID != "principal-1" || got.CSRF != s.CSRF {
			t.Fatalf("node B reads the session as %+v, %v; want principal-1 with node A's CSRF token", got, err)
		}

		// The store holds neither the cookie's value nor anything but its hash.
		err = db.View(ctx, func(tx store.Tx) error {
			objs, err := tx.List(ctx, store.Query{})
			for _, o := range objs {
				if strings.Contains(o.Key, cookie) || strings.Contains(string(o.Data), cookie) {
					t.Errorf("row %s %s holds the cookie's value", o.Kind, o.Key)
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}

		// Last-seen: not written within touchEvery, written after it.
		row, _ := sessionRow(t, db, s)
		clk.Advance(touchEvery / 2)
		if got, err := nodeA.get(ctx, r); err != nil || got == nil {
			t.Fatalf("get: %v, %v", got, err)
		}
		if again, _ := sessionRow(t, db, s); again.ModifyIndex != row.ModifyIndex {
			t.Fatalf("a page view %v after the last write wrote the row (index %d → %d)", touchEvery/2, row.ModifyIndex, again.ModifyIndex)
		}
		clk.Advance(touchEvery)
		if got, err := nodeA.get(ctx, r); err != nil || got == nil {
			t.Fatalf("get: %v, %v", got, err)
		}
		if again, _ := sessionRow(t, db, s); again.ModifyIndex == row.ModifyIndex {
			t.Fatal("last-seen was not written after touchEvery")
		}

		// Flash: set through node A, shown once by node B.
		if err := nodeA.setFlash(ctx, s, "Disk d1 created."); err != nil {
			t.Fatal(err)
		}
		gotB, _ := nodeB.get(ctx, r)
		if m, err := nodeB.takeFlash(ctx, gotB); err != nil || m != "Disk d1 created." {
			t.Fatalf("node B's flash: %q, %v", m, err)
		}
		gotA, _ := nodeA.get(ctx, r)
		if m, err := nodeA.takeFlash(ctx, gotA); err != nil || m != "" {
			t.Fatalf("the flash was shown twice: %q, %v", m, err)
		}

		// Idle expiry: alive just before, gone (and its row deleted) at it.
		clk.Advance(30*time.Minute - time.Second)
		if got, err := nodeB.get(ctx, r); err != nil || got == nil {
			t.Fatalf("a session idle for just under 30 min ended: %v", err)
		}
		clk.Advance(30 * time.Minute)
		if got, err := nodeB.get(ctx, r); err != nil || got != nil {
			t.Fatalf("a session idle for 30 min is still live: %+v, %v", got, err)
		}
		if _, found := sessionRow(t, db, s); found {
			t.Fatal("the expired session's row is still stored")
		}

		// Absolute expiry: a session in use every 20 min ends 2 h after it began.
		s2, r2, _ := startSession(t, nodeA, "principal-1")
		for i := 0; i < 5; i++ {
			clk.Advance(20 * time.Minute)
			if got, err := nodeA.get(ctx, r2); err != nil || got == nil {
				t.Fatalf("session in use ended after %d min: %v", 20*(i+1), err)
			}
		}
		clk.Advance(20 * time.Minute)
		if got, err := nodeA.get(ctx, r2); err != nil || got != nil {
			t.Fatalf("a session 2 h old is still live: %+v, %v", got, err)
		}
		if _, found := sessionRow(t, db, s2); found {
			t.Fatal("the expired session's row is still stored")
		}

		// Sign-out deletes the row: the other node no longer knows it.
		s3, r3, _ := startSession(t, nodeA, "principal-1")
		if err := nodeA.end(ctx, httptest.NewRecorder(), r3, false); err != nil {
			t.Fatal(err)
		}
		if got, err := nodeB.get(ctx, r3); err != nil || got != nil {
			t.Fatalf("node B still knows a signed-out session: %+v, %v", got, err)
		}
		if _, found := sessionRow(t, db, s3); found {
			t.Fatal("the signed-out session's row is still stored")
		}
	})
}

// TestSessionSweep: expired rows nobody presents again are deleted by
// later sign-ins, a bounded batch at a time, and live ones are kept.
func TestSessionSweep(t *testing.T) {
	sessionStores(t, func(t *testing.T, db store.Store) {
		clk := clock.NewFake(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
		ss := newSessions(db, clk, 30*time.Minute, 2*time.Hour)
		var old []*Session
		for range sweepBatch + 20 {
			s, _, _ := startSession(t, ss, "")
			old = append(old, s)
		}
		clk.Advance(time.Hour)
		live, _, _ := startSession(t, ss, "p") // sweeps the first batch
		clk.Advance(sweepEvery)
		startSession(t, ss, "p") // the rest
		clk.Advance(sweepEvery)
		startSession(t, ss, "p") // from the start again
		for i, s := range old {
			if _, found := sessionRow(t, db, s); found {
				t.Fatalf("expired session %d of %d is still stored after the sweeps", i, len(old))
			}
		}
		if _, found := sessionRow(t, db, live); !found {
			t.Fatal("a sweep deleted a live session")
		}
	})
}

// BenchmarkSessionGet is what a page view pays for its session (a live
// session within touchEvery of its last write: one read) against its
// reference, a bare read of one row of the same store. Report the ratio:
//
//	go test ./internal/portal -run '^$' -bench SessionGet
func BenchmarkSessionGet(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "meta.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ss := newSessions(db, clock.NewFake(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)), time.Hour, 12*time.Hour)
	w := httptest.NewRecorder()
	s, err := ss.start(ctx, w, "principal-1", false)
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(w.Result().Cookies()[0])
	b.Run("session", func(b *testing.B) {
		for b.Loop() {
			if got, err := ss.get(ctx, r); err != nil || got == nil {
				b.Fatal(got, err)
			}
		}
	})
	b.Run("reference-row-read", func(b *testing.B) {
		for b.Loop() {
			err := db.View(ctx, func(tx store.Tx) error {
				_, err := tx.Get(ctx, kindSession, s.key)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestSigninLimiterShared: two portals on one metadata store (two nodes)
// count the same failed sign-ins: 3 failures through one and 2 through
// the other refuse the client ID, and an address's 5 failures over
// different client IDs refuse that address, on both, until the window
// passes; a key's row is bounded, and expired rows are swept.
func TestSigninLimiterShared(t *testing.T) {
	sessionStores(t, func(t *testing.T, db store.Store) {
		ctx := context.Background()
		clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		nodes := []*signinLimiter{newSigninLimiter(db, clk), newSigninLimiter(db, clk)}
		blocked := func(l *signinLimiter, addr, client string) bool {
			t.Helper()
			wait, err := l.blocked(ctx, addr, client)
			if err != nil {
				t.Fatal(err)
			}
			return wait > 0
		}
		fail := func(l *signinLimiter, addr, client string) {
			t.Helper()
			if err := l.fail(ctx, addr, client); err != nil {
				t.Fatal(err)
			}
		}
		for i := range signinMaxFailures {
			if blocked(nodes[0], "10.0.0.9", "victim") || blocked(nodes[1], "10.0.0.9", "victim") {
				t.Fatalf("refused after %d failures, want %d", i, signinMaxFailures)
			}
			// Each from another address, alternately through either node.
			fail(nodes[i%2], "10.0.1."+string(rune('0'+i)), "victim")
			clk.Advance(time.Minute)
		}
		for n, l := range nodes {
			if !blocked(l, "10.0.0.9", "victim") {
				t.Fatalf("node %d lets the client ID sign in after %d failures through two nodes", n, signinMaxFailures)
			}
		}
		if blocked(nodes[0], "10.0.0.9", "someone-else") {
			t.Fatal("another client ID from a clean address is refused")
		}
		for i := range signinMaxFailures {
			fail(nodes[i%2], "10.0.0.66", "guess-"+string(rune('a'+i)))
		}
		if !blocked(nodes[1], "10.0.0.66", "fresh") || !blocked(nodes[0], "10.0.0.66", "fresh") {
			t.Fatal("an address with 5 failures over two nodes may still try")
		}
		for range 3 * signinMaxFailures {
			fail(nodes[0], "10.0.0.66", "victim")
		}
		err := db.View(ctx, func(tx store.Tx) error {
			for _, k := range limiterKeys("10.0.0.66", "victim") {
				o, err := tx.Get(ctx, kindSigninFailures, k)
				if err != nil {
					return err
				}
				var rec failuresRecord
				if err := json.Unmarshal(o.Data, &rec); err != nil {
					return err
				}
				if len(rec.At) > signinMaxFailures {
					t.Errorf("row %s holds %d failures, want at most %d", k, len(rec.At), signinMaxFailures)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}

		clk.Advance(signinWindow)
		if blocked(nodes[0], "10.0.0.66", "victim") || blocked(nodes[1], "10.0.0.9", "victim") {
			t.Fatal("still refused after the window passed")
		}
		// The next failure sweeps every expired row; only its own remain.
		fail(nodes[1], "10.0.0.7", "late")
		var keys []string
		err = db.View(ctx, func(tx store.Tx) error {
			objs, err := tx.List(ctx, store.Query{Kind: kindSigninFailures})
			keys = nil
			for _, o := range objs {
				keys = append(keys, o.Key)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		want := limiterKeys("10.0.0.7", "late")
		slices.Sort(keys)
		slices.Sort(want)
		if !slices.Equal(keys, want) {
			t.Fatalf("rows after the window and a sweep: %d %v, want only the last failure's %v", len(keys), keys, want)
		}
	})
}

// TestSigninLimitIPv6Prefix: failed sign-ins from five addresses of one
// IPv6 /64 (which one host may hold whole) refuse a sixth address of that
// /64, for any client ID, as five failures from one IPv4 address do; an
// address of another /64 may still try, and an IPv4-mapped address counts
// as its IPv4 address. The old code counted each IPv6 address alone, so a
// host could try without end, each failure a write to the store.
func TestSigninLimitIPv6Prefix(t *testing.T) {
	sessionStores(t, func(t *testing.T, db store.Store) {
		ctx := context.Background()
		clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		l := newSigninLimiter(db, clk)
		blocked := func(addr, client string) bool {
			t.Helper()
			wait, err := l.blocked(ctx, addr, client)
			if err != nil {
				t.Fatal(err)
			}
			return wait > 0
		}
		for i := range signinMaxFailures {
			if err := l.fail(ctx, fmt.Sprintf("2001:db8:1:2::%x", i+1), fmt.Sprintf("guess-%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if !blocked("2001:db8:1:2:ffff::9", "another") {
			t.Error("a sixth address of the /64 may still try")
		}
		if blocked("2001:db8:1:3::1", "another") {
			t.Error("an address of another /64 is refused")
		}
		for i := range signinMaxFailures {
			if err := l.fail(ctx, "192.0.2.7", fmt.Sprintf("v4-%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if !blocked("::ffff:192.0.2.7", "another") {
			t.Error("the IPv4-mapped form of a refused IPv4 address may still try")
		}
	})
}

// heldStore holds its first write transaction until release is closed.
type heldStore struct {
	store.Store
	first   sync.Once
	entered chan struct{}
	release chan struct{}
}

func (h *heldStore) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	h.first.Do(func() {
		close(h.entered)
		<-h.release
	})
	return h.Store.Update(ctx, fn)
}

// TestSigninFailuresGroupCommit: failures that arrive while another's count
// is being written are counted together by one write transaction, and
// every one of them counts: ten failures from one address for ten client
// IDs, nine of them waiting behind the first's write, refuse that address
// and leave each client ID one failure.
func TestSigninFailuresGroupCommit(t *testing.T) {
	sessionStores(t, func(t *testing.T, db store.Store) {
		ctx := context.Background()
		clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		h := &heldStore{Store: db, entered: make(chan struct{}), release: make(chan struct{})}
		l := newSigninLimiter(h, clk)
		var wg sync.WaitGroup
		errs := make(chan error, 10)
		wg.Go(func() { errs <- l.fail(ctx, "198.51.100.4", "client-0") })
		<-h.entered
		for i := 1; i < 10; i++ {
			wg.Go(func() { errs <- l.fail(ctx, "198.51.100.4", fmt.Sprintf("client-%d", i)) })
		}
		// The nine wait in one batch behind the held write.
		for {
			l.mu.Lock()
			n := 0
			if l.queued != nil {
				n = len(l.queued.keys)
			}
			l.mu.Unlock()
			if n == 2*9 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		close(h.release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := l.batches.Load(); n != 2 {
			t.Errorf("%d write transactions for 10 failures, want 2", n)
		}
		if wait, err := l.blocked(ctx, "198.51.100.4", "fresh"); err != nil || wait == 0 {
			t.Errorf("the address with 10 failures may still try (%v)", err)
		}
		for i := range 10 {
			rec, err := readFailures(ctx, l, "203.0.113.1", fmt.Sprintf("client-%d", i))
			if err != nil || len(rec.At) != 1 {
				t.Errorf("client-%d: %d failures counted, want 1 (%v)", i, len(rec.At), err)
			}
		}
	})
}

// readFailures returns the row of clientID's failures (addr's key is not
// read).
func readFailures(ctx context.Context, l *signinLimiter, addr, clientID string) (failuresRecord, error) {
	var rec failuresRecord
	err := l.db.View(ctx, func(tx store.Tx) error {
		var err error
		rec, err = l.read(ctx, tx, limiterKeys(addr, clientID)[1])
		return err
	})
	return rec, err
}
