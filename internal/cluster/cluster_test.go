package cluster_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/cluster"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/store/memstore"
	"coffer/internal/store/postgres"
	"coffer/internal/store/postgres/pgtest"
	"coffer/internal/store/sqlite"
	"coffer/internal/store/storetest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// storeTest is a test of the package on one metadata store; open returns
// a handle on the store, a new one each time where the store has handles
// (PostgreSQL), as each node opens its own.
type storeTest func(t *testing.T, open func() store.Store)

// TestOnStores runs each storeTest on each metadata store, on a new, empty
// one: memstore (its Updates run twice, as PostgreSQL re-runs them),
// SQLite and PostgreSQL (one throwaway server for all).
func TestOnStores(t *testing.T) {
	tests := []struct {
		name string
		test storeTest
	}{
		{"Lease", testLease},
		{"LeaseContenders", testLeaseContenders},
		{"AcquireConcurrently", testAcquireConcurrently},
		{"Registry", testRegistry},
		{"Secret", testSecret},
		{"PlaceAndReach", testPlaceAndReach},
		{"SecretSealed", testSecretSealed},
		{"SecretUpgrade", testSecretUpgrade},
		{"Home", testHome},
	}
	t.Run("memstore", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := storetest.Rerun(memstore.New())
				tt.test(t, func() store.Store { return s })
			})
		}
	})
	t.Run("sqlite", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "metadata.db"))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				tt.test(t, func() store.Store { return s })
			})
		}
	})
	t.Run("postgres", func(t *testing.T) {
		c := pgtest.Start(t)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				url := c.NewDatabase(t)
				tt.test(t, func() store.Store {
					s, err := postgres.Open(context.Background(), url)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					return s
				})
			})
		}
	})
}

// fencedWrite appends epoch to a log object in a transaction fenced by l.
func fencedWrite(ctx context.Context, st store.Store, l cluster.Lease) error {
	return st.Update(ctx, func(tx store.Tx) error {
		if err := cluster.Fence(ctx, tx, l); err != nil {
			return err
		}
		var log []uint64
		o, err := tx.Get(ctx, "test.log", "/log")
		if err == nil {
			if err := json.Unmarshal(o.Data, &log); err != nil {
				return err
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		log = append(log, l.Epoch)
		b, _ := json.Marshal(log)
		return tx.Put(ctx, &store.Object{Kind: "test.log", Key: "/log", Data: b}, store.PutOptions{})
	})
}

func readLog(t *testing.T, st store.Store) []uint64 {
	t.Helper()
	var log []uint64
	err := st.View(context.Background(), func(tx store.Tx) error {
		o, err := tx.Get(context.Background(), "test.log", "/log")
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(o.Data, &log)
	})
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// testLease: one holder at a time; a holding that is not renewed expires
// and another takes it under a larger epoch; the old holder can neither
// renew nor write (Fence), matched with errors.Is; a release lets another
// in at once; a holder taking its own lease again fences its previous
// incarnation.
func testLease(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	st := open()
	a := &cluster.Leases{Store: st, Clock: clk, TTL: 10 * time.Second}
	b := &cluster.Leases{Store: open(), Clock: clk, TTL: 10 * time.Second}

	la, ok, err := a.Acquire(ctx, "scheduler", "node-a")
	if err != nil || !ok || la.Epoch != 1 || !la.Expiry.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("first acquire: %+v %v %v", la, ok, err)
	}
	if cur, ok, err := b.Acquire(ctx, "scheduler", "node-b"); err != nil || ok || cur.Holder != "node-a" {
		t.Fatalf("acquire of a held lease: %+v %v %v, want refused, naming node-a", cur, ok, err)
	}
	clk.Advance(6 * time.Second)
	if la, err = a.Renew(ctx, la); err != nil || !la.Expiry.Equal(t0.Add(16*time.Second)) || la.Epoch != 1 {
		t.Fatalf("renew: %+v %v", la, err)
	}
	if err := fencedWrite(ctx, st, la); err != nil {
		t.Fatalf("the holder's fenced write: %v", err)
	}
	clk.Advance(9 * time.Second) // 15 s: still held
	if _, ok, _ := b.Acquire(ctx, "scheduler", "node-b"); ok {
		t.Fatal("node-b took a lease renewed until 16 s at 15 s")
	}
	// node-a pauses: no renewal; the holding expires at 16 s.
	clk.Advance(time.Second)
	lb, ok, err := b.Acquire(ctx, "scheduler", "node-b")
	if err != nil || !ok || lb.Epoch != 2 {
		t.Fatalf("acquire after expiry: %+v %v %v", lb, ok, err)
	}
	if _, err := a.Renew(ctx, la); !errors.Is(err, cluster.ErrLeaseLost) {
		t.Fatalf("the paused holder renewed: %v, want ErrLeaseLost", err)
	}
	if err := fencedWrite(ctx, st, la); !errors.Is(err, cluster.ErrLeaseLost) {
		t.Fatalf("the paused holder's fenced write: %v, want ErrLeaseLost", err)
	}
	if err := fencedWrite(ctx, st, lb); err != nil {
		t.Fatalf("the new holder's fenced write: %v", err)
	}
	if got := readLog(t, st); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("committed writes of epochs %v, want [1 2]", got)
	}
	// An expired holding without a successor cannot be renewed either.
	clk.Advance(11 * time.Second)
	if _, err := b.Renew(ctx, lb); !errors.Is(err, cluster.ErrLeaseLost) {
		t.Fatalf("renewal of an expired holding: %v, want ErrLeaseLost", err)
	}
	lb, ok, err = b.Acquire(ctx, "scheduler", "node-b")
	if err != nil || !ok || lb.Epoch != 3 {
		t.Fatalf("acquire again: %+v %v %v", lb, ok, err)
	}
	// A release lets another holder in at once; a stale release fails.
	if err := b.Release(ctx, lb); err != nil {
		t.Fatal(err)
	}
	la, ok, err = a.Acquire(ctx, "scheduler", "node-a")
	if err != nil || !ok || la.Epoch != 4 {
		t.Fatalf("acquire after release: %+v %v %v", la, ok, err)
	}
	if err := b.Release(ctx, lb); !errors.Is(err, cluster.ErrLeaseLost) {
		t.Fatalf("stale release: %v, want ErrLeaseLost", err)
	}
	// A restarted node-a (same holder name) takes over at once and
	// fences its previous incarnation.
	la2, ok, err := a.Acquire(ctx, "scheduler", "node-a")
	if err != nil || !ok || la2.Epoch != 5 {
		t.Fatalf("re-acquire by the same holder: %+v %v %v", la2, ok, err)
	}
	if err := fencedWrite(ctx, st, la); !errors.Is(err, cluster.ErrLeaseLost) {
		t.Fatalf("the previous incarnation's write: %v, want ErrLeaseLost", err)
	}
	// Other lease names are independent.
	if l, ok, err := b.Acquire(ctx, "other", "node-b"); err != nil || !ok || l.Epoch != 1 {
		t.Fatalf("another lease: %+v %v %v", l, ok, err)
	}
	if got, err := a.Get(ctx, "scheduler"); err != nil || got.Holder != "node-a" || got.Epoch != 5 {
		t.Fatalf("Get: %+v %v", got, err)
	}
}

// testLeaseContenders: five electors on a fake clock step in random order,
// some pausing for random stretches (no renewal, then a write with the
// holding they remember); at every instant at most one believes it holds
// the lease, epochs only grow, and every committed write was made under
// the epoch current when it committed: the log of committed epochs never
// goes down, and no paused holder's write lands after a takeover.
func testLeaseContenders(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	const n = 5
	rng := rand.New(rand.NewPCG(1, 2))
	var els [n]*cluster.Elector
	var stores [n]store.Store
	for i := range els {
		stores[i] = open()
		els[i] = &cluster.Elector{Leases: &cluster.Leases{Store: stores[i], Clock: clk, TTL: 9 * time.Second},
			Name: "scheduler", Holder: fmt.Sprintf("node-%d", i)}
	}
	var paused [n]int
	var lastEpoch uint64
	takeovers, fencedOut := 0, 0
	for round := 0; round < 120; round++ {
		for _, i := range rng.Perm(n) {
			if paused[i] > 0 {
				paused[i]--
				continue
			}
			if rng.IntN(12) == 0 {
				paused[i] = 1 + rng.IntN(8)
				continue
			}
			// A holder back from a pause first writes with the
			// holding it remembers, then steps.
			if l, _ := els[i].Held(); l.Epoch != 0 {
				err := fencedWrite(ctx, stores[i], l)
				if err != nil && !errors.Is(err, cluster.ErrLeaseLost) {
					t.Fatal(err)
				}
				if err != nil {
					fencedOut++
				}
			}
			l, ok, err := els[i].Step(ctx)
			if err != nil && !errors.Is(err, cluster.ErrLeaseLost) {
				t.Fatal(err)
			}
			if ok {
				if l.Epoch < lastEpoch {
					t.Fatalf("round %d: epoch %d after %d", round, l.Epoch, lastEpoch)
				}
				if l.Epoch > lastEpoch {
					takeovers++
				}
				lastEpoch = l.Epoch
			}
		}
		holders := 0
		for i := range els {
			if _, ok := els[i].Held(); ok {
				holders++
			}
		}
		if holders > 1 {
			t.Fatalf("round %d: %d electors hold the lease", round, holders)
		}
		clk.Advance(time.Duration(1+rng.IntN(4)) * time.Second)
	}
	log := readLog(t, stores[0])
	for i := 1; i < len(log); i++ {
		if log[i] < log[i-1] {
			t.Fatalf("a write of epoch %d committed after one of epoch %d: %v", log[i], log[i-1], log)
		}
	}
	if takeovers < 5 || fencedOut == 0 {
		t.Fatalf("the run exercised %d takeovers and %d fenced writes: too few to show anything", takeovers, fencedOut)
	}
	t.Logf("%d takeovers, %d fenced writes refused, %d committed", takeovers, fencedOut, len(log))
}

// testAcquireConcurrently: contenders on their own store handles acquire
// one free lease at the same instant; exactly one gets it.
func testAcquireConcurrently(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	const n = 6
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []cluster.Lease
	errs := make(chan error, n)
	for i := range n {
		ls := &cluster.Leases{Store: open(), Clock: clk}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, ok, err := ls.Acquire(ctx, "scheduler", fmt.Sprintf("node-%d", i))
			if err != nil {
				errs <- err
				return
			}
			if ok {
				mu.Lock()
				won = append(won, l)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(won) != 1 || won[0].Epoch != 1 {
		t.Fatalf("holdings taken: %+v, want one of epoch 1", won)
	}
}

// waitFor polls cond (goroutines on a fake clock make progress between
// polls); it fails the test after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// cutOff is a store handle that a test can cut off from the database (a
// network partition): its transactions then fail.
type cutOff struct {
	store.Store
	mu  sync.Mutex
	cut bool
}

var errCut = errors.New("cut off from the database")

func (c *cutOff) set(cut bool) { c.mu.Lock(); c.cut = cut; c.mu.Unlock() }

func (c *cutOff) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	c.mu.Lock()
	cut := c.cut
	c.mu.Unlock()
	if cut {
		return errCut
	}
	return c.Store.Update(ctx, fn)
}

// TestElectorRun: two electors Run; the function runs on one at a time.
// When the holder is cut off from the database its renewals fail, its
// function is stopped when its holding expires, and the other takes over
// after that (not before); when a holder stops gracefully it releases and
// the other takes over at its next step.
func TestElectorRun(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	st := memstore.New()
	var mu sync.Mutex
	running := map[string]uint64{}
	fn := func(name string) func(context.Context, cluster.Lease) {
		return func(ctx context.Context, l cluster.Lease) {
			mu.Lock()
			running[name] = l.Epoch
			mu.Unlock()
			<-ctx.Done()
			mu.Lock()
			delete(running, name)
			mu.Unlock()
		}
	}
	snapshot := func() map[string]uint64 {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]uint64{}
		for k, v := range running {
			out[k] = v
		}
		return out
	}
	start := func(holder string, st store.Store) (stop func()) {
		rctx, cancel := context.WithCancel(ctx)
		e := &cluster.Elector{Leases: &cluster.Leases{Store: st, Clock: clk, TTL: 9 * time.Second}, Name: "scheduler", Holder: holder}
		done := make(chan struct{})
		go func() { defer close(done); e.Run(rctx, fn(holder)) }()
		return func() { cancel(); <-done }
	}
	a := &cutOff{Store: st}
	stopA := start("node-a", a)
	waitFor(t, "node-a to run", func() bool { return snapshot()["node-a"] == 1 && clk.Pending() == 1 })
	stopB := start("node-b", st)
	waitFor(t, "node-b to wait", func() bool { return clk.Pending() == 2 })
	for range 4 { // renewals keep node-a holding
		clk.Advance(3 * time.Second)
		waitFor(t, "both to sleep", func() bool { return clk.Pending() == 2 })
		if got := snapshot(); len(got) != 1 || got["node-a"] != 1 {
			t.Fatalf("running: %v, want node-a alone", got)
		}
	}
	// node-a is cut off just after renewing (until 12+9 = 21 s).
	a.set(true)
	for range 2 { // 15 s, 18 s: node-a still holds, node-b waits
		clk.Advance(3 * time.Second)
		waitFor(t, "both to sleep", func() bool { return clk.Pending() == 2 })
		if got := snapshot(); len(got) != 1 || got["node-a"] != 1 {
			t.Fatalf("at %s running: %v, want node-a alone", clk.Now().Sub(t0), got)
		}
	}
	clk.Advance(3 * time.Second) // 21 s: node-a's holding expires
	waitFor(t, "node-a's function to stop and node-b to take over", func() bool {
		got := snapshot()
		return len(got) == 1 && got["node-b"] == 2
	})
	// node-a reconnects: it does not take the lease back.
	a.set(false)
	clk.Advance(3 * time.Second)
	waitFor(t, "both to sleep", func() bool { return clk.Pending() == 2 })
	if got := snapshot(); len(got) != 1 || got["node-b"] != 2 {
		t.Fatalf("after node-a reconnected: %v, want node-b alone", got)
	}
	// node-b stops gracefully: it releases, node-a takes over at once.
	stopB()
	waitFor(t, "node-b to stop", func() bool { return len(snapshot()) == 0 && clk.Pending() == 1 })
	clk.Advance(3 * time.Second)
	waitFor(t, "node-a to take over", func() bool { return snapshot()["node-a"] == 3 })
	stopA()
}

// testRegistry: nodes register and beat; a node is live while its
// heartbeat is younger than the timeout; a second process registering under
// a name makes the first one's heartbeats fail with ErrNodeReplaced.
func testRegistry(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	r := &cluster.Registry{Store: open(), Clock: clk, Timeout: 10 * time.Second}
	a, err := r.Register(ctx, cluster.Node{Name: "Node-A", API: "https://a:7480", NBD: "a:10809", Incarnation: "1"})
	if err != nil || !a.Started.Equal(t0) || !a.Heartbeat.Equal(t0) {
		t.Fatalf("register: %+v %v", a, err)
	}
	r2 := &cluster.Registry{Store: open(), Clock: clk, Timeout: 10 * time.Second}
	if _, err := r2.Register(ctx, cluster.Node{Name: "node-b", API: "https://b:7480", Incarnation: "2"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(6 * time.Second)
	if a, err = r.Beat(ctx, a, 1<<30); err != nil || !a.Heartbeat.Equal(t0.Add(6*time.Second)) || a.UsedBytes != 1<<30 {
		t.Fatalf("beat: %+v %v", a, err)
	}
	clk.Advance(5 * time.Second) // 11 s: node-b's heartbeat is 11 s old
	nodes, err := r2.Nodes(ctx)
	if err != nil || len(nodes) != 2 || nodes[0].Name != "Node-A" || nodes[1].Name != "node-b" {
		t.Fatalf("nodes: %+v %v", nodes, err)
	}
	if !r.Live(nodes[0], clk.Now()) || r.Live(nodes[1], clk.Now()) {
		t.Fatalf("live: node-a %v, node-b %v; want true, false", r.Live(nodes[0], clk.Now()), r.Live(nodes[1], clk.Now()))
	}
	if n, err := r2.Get(ctx, "node-a"); err != nil || n.API != "https://a:7480" || n.NBD != "a:10809" {
		t.Fatalf("get (names compare case-insensitively): %+v %v", n, err)
	}
	if _, err := r.Get(ctx, "node-c"); !errors.Is(err, cluster.ErrUnknownNode) {
		t.Fatalf("get unknown: %v, want ErrUnknownNode", err)
	}
	// Another process registers as Node-A: the first one's beats fail.
	if _, err := r2.Register(ctx, cluster.Node{Name: "node-a", API: "https://a2:7480", Incarnation: "3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Beat(ctx, a, 0); !errors.Is(err, cluster.ErrNodeReplaced) {
		t.Fatalf("beat of a replaced incarnation: %v, want ErrNodeReplaced", err)
	}
	if n, _ := r.Get(ctx, "node-a"); n.Incarnation != "3" || n.API != "https://a2:7480" {
		t.Fatalf("the replaced incarnation's beat changed the record: %+v", n)
	}
	if _, err := r.Register(ctx, cluster.Node{Name: "x"}); err == nil {
		t.Fatal("registered a node without an incarnation")
	}
}

// testSecret: nodes starting at once each offer a secret; one is stored
// and every node gets that one; later nodes read it without creating.
func testSecret(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	mk, err := cluster.OpenMasterKey(ctx, open(), filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	got := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		st := open()
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = cluster.Secret(ctx, st, mk, "grant-key", func() ([]byte, error) { return []byte(fmt.Sprint("key of node ", i)), nil })
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if string(got[i]) != string(got[0]) {
			t.Fatalf("node %d got %q, node 0 %q: want one secret", i, got[i], got[0])
		}
	}
	b, err := cluster.Secret(ctx, open(), mk, "GRANT-KEY", func() ([]byte, error) { t.Fatal("created a secret that exists"); return nil, nil })
	if err != nil || string(b) != string(got[0]) {
		t.Fatalf("a later node: %q %v", b, err)
	}
	if _, err := cluster.Secret(ctx, open(), mk, "other", func() ([]byte, error) { return nil, errors.New("no entropy") }); err == nil {
		t.Fatal("a failed create was not reported")
	}
}

// testPlaceAndReach: least-used placement picks the live node with the
// least used bytes (one of equals at random), never a node whose heartbeat is older
// than the timeout, nor one silent for half of it while others beat; local placement picks the asking node; Reach answers
// a dead node with 503 NodeUnavailable naming it and when it was last
// seen; homes are found by disk ID and by volume.
func testPlaceAndReach(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	st := open()
	reg := &cluster.Registry{Store: st, Clock: clk, Timeout: 15 * time.Second}
	if got, err := reg.Place(ctx, cluster.PlaceLeastUsed, "node-a"); err != nil || got != "node-a" {
		t.Fatalf("placement with no node registered: %q %v, want the asking node", got, err)
	}
	nodes := map[string]cluster.Node{}
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		n, err := reg.Register(ctx, cluster.Node{Name: name, API: "https://" + name, Incarnation: name + "-1"})
		if err != nil {
			t.Fatal(err)
		}
		nodes[name] = n
	}
	beat := func(name string, used int64) {
		t.Helper()
		if _, err := reg.Beat(ctx, nodes[name], used); err != nil {
			t.Fatal(err)
		}
	}
	beat("node-a", 300)
	beat("node-b", 100)
	beat("node-c", 100)
	// node-b and node-c use 100 bytes each: either is chosen, both in
	// time.
	chosen := map[string]bool{}
	for range 64 {
		got, err := reg.Place(ctx, cluster.PlaceLeastUsed, "node-a")
		if err != nil || (got != "node-b" && got != "node-c") {
			t.Fatalf("least-used: %q %v, want node-b or node-c (100 bytes each)", got, err)
		}
		chosen[got] = true
	}
	if len(chosen) != 2 {
		t.Fatalf("least-used chose only %v of two equally used nodes in 64 placements", chosen)
	}
	if got, err := reg.Place(ctx, cluster.PlaceLocal, "node-a"); err != nil || got != "node-a" {
		t.Fatalf("local: %q %v, want node-a", got, err)
	}
	// node-b stops beating. 8 s on it is still live (a request for its
	// disks still goes to it) but placement passes over it: it may have
	// just died, and a new disk should not wait on it.
	lastB := clk.Now().UTC()
	clk.Advance(8 * time.Second)
	// No node has beaten for 8 s: the live ones are chosen from all the
	// same.
	if got, err := reg.Place(ctx, cluster.PlaceLeastUsed, "node-a"); err != nil || (got != "node-b" && got != "node-c") {
		t.Fatalf("least-used with every node silent for 8 s: %q %v, want node-b or node-c", got, err)
	}
	beat("node-a", 300)
	beat("node-c", 200)
	for range 16 {
		if got, err := reg.Place(ctx, cluster.PlaceLeastUsed, "node-a"); err != nil || got != "node-c" {
			t.Fatalf("least-used with node-b silent for 8 s: %q %v, want node-c", got, err)
		}
	}
	if n, err := reg.Reach(ctx, "node-b", "The disk 'd1'"); err != nil || n.Name != "node-b" {
		t.Fatalf("reach node-b silent for 8 s: %+v %v, want it still live", n, err)
	}
	clk.Advance(8 * time.Second)
	// 16 s on node-b is dead, the others beat on.
	beat("node-a", 300)
	beat("node-c", 200)
	if got, err := reg.Place(ctx, cluster.PlaceLeastUsed, "node-a"); err != nil || got != "node-c" {
		t.Fatalf("least-used with node-b dead: %q %v, want node-c", got, err)
	}
	if n, err := reg.Reach(ctx, "node-c", "The disk 'd1'"); err != nil || n.Name != "node-c" {
		t.Fatalf("reach a live node: %+v %v", n, err)
	}
	_, err := reg.Reach(ctx, "node-b", "The disk 'd1'")
	e := resource.AsError(err)
	if !errors.Is(err, cluster.ErrNodeUnavailable) || e == nil || e.Kind != resource.KindUnavailable || e.Code != cluster.CodeNodeUnavailable ||
		!strings.Contains(e.Message, "'node-b'") || !strings.Contains(e.Message, lastB.Format(time.RFC3339)) || !strings.Contains(e.Message, "The disk 'd1'") {
		t.Fatalf("reach a dead node: %v, want 503 NodeUnavailable naming node-b, the disk and %s", err, lastB.Format(time.RFC3339))
	}
	// node-c stops cleanly: at once it is no longer live, and says so;
	// registering again makes it live.
	if err := reg.Leave(ctx, nodes["node-c"]); err != nil {
		t.Fatal(err)
	}
	if got, err := reg.Place(ctx, cluster.PlaceLeastUsed, "node-a"); err != nil || got != "node-a" {
		t.Fatalf("least-used with node-b dead and node-c stopped: %q %v, want node-a", got, err)
	}
	if _, err := reg.Reach(ctx, "node-c", "The disk 'd2'"); !errors.Is(err, cluster.ErrNodeUnavailable) || !strings.Contains(err.Error(), "it stopped at") {
		t.Fatalf("reach a stopped node: %v, want NodeUnavailable saying it stopped", err)
	}
	if _, err := reg.Register(ctx, cluster.Node{Name: "node-c", API: "https://node-c", Incarnation: "node-c-2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Reach(ctx, "node-c", "The disk 'd2'"); err != nil {
		t.Fatalf("reach node-c registered again: %v", err)
	}
	if _, err := reg.Reach(ctx, "node-x", "The disk 'd1'"); !errors.Is(err, cluster.ErrUnknownNode) {
		t.Fatalf("reach an unknown node: %v, want ErrUnknownNode", err)
	}
	if _, err := cluster.ParsePlacement("nearest"); err == nil {
		t.Fatal("ParsePlacement took an unknown placement")
	}
	// Homes by disk and by volume, case-insensitively.
	const disk = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d1"
	if err := st.Update(ctx, func(tx store.Tx) error { return cluster.SetHome(ctx, tx, disk, "VOL-1", "node-c") }); err != nil {
		t.Fatal(err)
	}
	if err := st.View(ctx, func(tx store.Tx) error {
		h1, err := cluster.Home(ctx, tx, strings.ToUpper(disk))
		if err != nil {
			return err
		}
		h2, err := cluster.VolumeHome(ctx, tx, "vol-1")
		if err != nil {
			return err
		}
		h3, err := cluster.VolumeHome(ctx, tx, "vol-2")
		if h1 != "node-c" || h2 != "node-c" || h3 != "" {
			t.Errorf("homes: by disk %q, by volume %q, of an unknown volume %q; want node-c, node-c, \"\"", h1, h2, h3)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// secretRow returns the stored row of the shared secret name.
func secretRow(t *testing.T, st store.Store, name string) []byte {
	t.Helper()
	var b []byte
	err := st.View(context.Background(), func(tx store.Tx) error {
		o, err := tx.Get(context.Background(), "cluster.secret", "/cluster/secrets/"+name)
		b = o.Data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testSecretSealed: the stored row is not the secret; a node with another
// master key, or none, is refused with an error naming its key file; a
// malformed key file is refused.
func testSecretSealed(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	mk, err := cluster.OpenMasterKey(ctx, open(), path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	secret := []byte("the token-signing key, 32 bytes!")
	got, err := cluster.Secret(ctx, open(), mk, "token-signing-key", func() ([]byte, error) { return secret, nil })
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Secret: %q, %v", got, err)
	}
	row := secretRow(t, open(), "token-signing-key")
	if bytes.Contains(row, secret) || bytes.Contains(row, []byte(base64.StdEncoding.EncodeToString(secret))) {
		t.Fatalf("the stored row holds the secret: %q", row)
	}

	// The same file on another node opens it.
	mk2, err := cluster.OpenMasterKey(ctx, open(), path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cluster.Secret(ctx, open(), mk2, "token-signing-key", nil); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Secret with the same master key file: %q, %v", got, err)
	}

	// A node without the file: not created, refused, the file named.
	missing := filepath.Join(dir, "node2", "master.key")
	_, err = cluster.OpenMasterKey(ctx, open(), missing)
	if !errors.Is(err, cluster.ErrMasterKey) || !strings.Contains(err.Error(), "cannot unseal") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("OpenMasterKey without the file over sealed secrets: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a master key was created over sealed secrets: %v", err)
	}

	// A node with another key: refused, the file named, nothing changed.
	other := filepath.Join(dir, "other.key")
	if err := os.WriteFile(other, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong, err := cluster.OpenMasterKey(ctx, open(), other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cluster.Secret(ctx, open(), wrong, "token-signing-key", func() ([]byte, error) { t.Fatal("created a secret that exists"); return nil, nil })
	if !errors.Is(err, cluster.ErrMasterKey) || !strings.Contains(err.Error(), "cannot unseal secret token-signing-key with master key "+other) {
		t.Fatalf("Secret with the wrong master key: %v", err)
	}
	if !bytes.Equal(secretRow(t, open(), "token-signing-key"), row) {
		t.Fatal("a refused unseal changed the row")
	}

	// A row moved under another name does not open.
	st := open()
	if err := st.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Object{Kind: "cluster.secret", Key: "/cluster/secrets/grant-key", Data: row}, store.PutOptions{})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Secret(ctx, open(), mk, "grant-key", nil); !errors.Is(err, cluster.ErrMasterKey) {
		t.Fatalf("a sealed row moved to another name: %v, want ErrMasterKey", err)
	}

	// Malformed key files.
	for _, text := range []string{"", "not base64!", base64.StdEncoding.EncodeToString([]byte("short"))} {
		bad := filepath.Join(dir, "bad.key")
		if err := os.WriteFile(bad, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := cluster.OpenMasterKey(ctx, open(), bad); !errors.Is(err, cluster.ErrMasterKey) || !strings.Contains(err.Error(), bad) {
			t.Fatalf("master key file %q: %v", text, err)
		}
	}
}

// testSecretUpgrade: a secret an earlier version stored in clear is kept
// (tokens it signed stay valid) and sealed in place when first read; a
// master key is created over a store holding only clear secrets.
func testSecretUpgrade(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	clear := []byte("a grant key stored in clear, 32b")
	if err := open().Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Object{Kind: "cluster.secret", Key: "/cluster/secrets/grant-key", Data: clear}, store.PutOptions{})
	}); err != nil {
		t.Fatal(err)
	}
	mk, err := cluster.OpenMasterKey(ctx, open(), filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatalf("OpenMasterKey over clear secrets: %v", err)
	}
	got, err := cluster.Secret(ctx, open(), mk, "grant-key", func() ([]byte, error) { t.Fatal("created a secret that exists"); return nil, nil })
	if err != nil || !bytes.Equal(got, clear) {
		t.Fatalf("upgraded secret: %q, %v; want the clear one", got, err)
	}
	if row := secretRow(t, open(), "grant-key"); bytes.Contains(row, clear) {
		t.Fatalf("the clear row was not sealed: %q", row)
	}
	if got, err := cluster.Secret(ctx, open(), mk, "grant-key", nil); err != nil || !bytes.Equal(got, clear) {
		t.Fatalf("sealed secret read again: %q, %v", got, err)
	}
}

// TestGoneTx: work bound to a node is gone once neither the node's last
// heartbeat nor the time the work began to wait is within the timeout
// plus the grace: a node that beat again, or work queued (or watched)
// since, waits a full grace more. The cause is NodeUnavailable naming the
// node and when it was last seen; a node that never registered is gone
// once the work has waited as long.
func TestGoneTx(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	st := memstore.New()
	reg := &cluster.Registry{Store: st, Clock: clk}
	if _, err := reg.Register(ctx, cluster.Node{Name: "a", Incarnation: "a1"}); err != nil {
		t.Fatal(err)
	}
	const grace = time.Minute
	wait := cluster.DefaultNodeTimeout + grace
	gone := func(name string, since time.Time) error {
		t.Helper()
		var cause error
		if err := st.View(ctx, func(tx store.Tx) error {
			var err error
			cause, err = reg.GoneTx(ctx, tx, name, "The disk 'd1'", clk.Now(), since, grace)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return cause
	}
	clk.Set(t0.Add(wait - time.Second))
	if c := gone("a", t0); c != nil {
		t.Fatalf("within the grace: %v", c)
	}
	clk.Set(t0.Add(wait))
	c := gone("a", t0)
	if e := resource.AsError(c); !errors.Is(c, cluster.ErrNodeUnavailable) || e == nil || e.Code != cluster.CodeNodeUnavailable ||
		e.Message != "The disk 'd1' is held by node 'a', which is unavailable: it was last seen at 2026-01-01T00:00:00Z (1m15s ago). Retry when the node is back." {
		t.Fatalf("past the grace: %v", c)
	}
	if c := gone("a", t0.Add(time.Second)); c != nil {
		t.Fatalf("work that began to wait a second after the last beat, a second before its grace ends: %v", c)
	}
	if c := gone("b", t0.Add(time.Second)); c != nil {
		t.Fatalf("an unknown node within the grace: %v", c)
	}
	if c := gone("b", t0); !errors.Is(c, cluster.ErrNodeUnavailable) || !strings.Contains(c.Error(), "not registered") {
		t.Fatalf("an unknown node past the grace: %v", c)
	}
}

// testHome: SetHome records a disk's home by disk and by volume, and
// DeleteHome, in the transaction that deletes the disk, leaves no row of
// it behind (kind cluster.home) and keeps the other disks' homes; deleting
// a home that is gone is no error.
func testHome(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	disk := func(name string) string {
		return "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/" + name
	}
	if err := s.Update(ctx, func(tx store.Tx) error {
		if err := cluster.SetHome(ctx, tx, disk("a"), "vol-a", "node-1"); err != nil {
			return err
		}
		return cluster.SetHome(ctx, tx, disk("b"), "vol-b", "node-2")
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Update(ctx, func(tx store.Tx) error { return cluster.DeleteHome(ctx, tx, disk("a"), "vol-a") }); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.View(ctx, func(tx store.Tx) error {
		for _, c := range []struct {
			got  func() (string, error)
			want string
		}{
			{func() (string, error) { return cluster.Home(ctx, tx, disk("a")) }, ""},
			{func() (string, error) { return cluster.VolumeHome(ctx, tx, "vol-a") }, ""},
			{func() (string, error) { return cluster.Home(ctx, tx, disk("B")) }, "node-2"},
			{func() (string, error) { return cluster.VolumeHome(ctx, tx, "vol-b") }, "node-2"},
		} {
			if got, err := c.got(); err != nil || got != c.want {
				return fmt.Errorf("home %q %v, want %q", got, err, c.want)
			}
		}
		rows, err := tx.List(ctx, store.Query{Kind: "cluster.home"})
		if err != nil {
			return err
		}
		if len(rows) != 2 {
			return fmt.Errorf("%d home rows left, want disk b's 2", len(rows))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
