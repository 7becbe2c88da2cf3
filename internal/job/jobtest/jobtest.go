// Package jobtest is the conformance suite of job queue backends
// (job.Backend): the queue's whole lifecycle over a backend (enqueue and
// de-duplication, ordering, per-target serialization, ack, nack with
// backoff and a delivery limit, cancel, recovery, forgetting), leases that
// expire and fence the worker that lost them, and many workers on several
// "nodes" (store handles) claiming at once, each task once. Time is a fake
// clock throughout.
package jobtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/job"
	"coffer/internal/store"
)

// Node is one handle on the backend's data: a store and the queue backend
// that goes with it.
type Node struct {
	Store   store.Store
	Backend job.Backend
}

// Factory sets up empty data for one test and returns a function that
// opens a handle on it (a node); every call is a new handle on the same
// data, as a second Coffer process would have.
type Factory func(t *testing.T) (open func() Node)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// queue returns a queue over n with clk, a one-minute-per-attempt backoff
// and a 5-minute lease.
func queue(n Node, clk clock.Clock) *job.Queue {
	q := job.NewQueue(n.Store, clk)
	q.Backend = n.Backend
	q.Backoff = func(a int) time.Duration { return time.Duration(a) * time.Minute }
	return q
}

// Run runs the suite.
func Run(t *testing.T, newNodes Factory) {
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, newNodes(t)()) })
	t.Run("LeaseExpiryAndFencing", func(t *testing.T) { testFencing(t, newNodes(t)) })
	t.Run("ConcurrentClaims", func(t *testing.T) { testConcurrentClaims(t, newNodes(t)) })
	t.Run("EnqueueWithRecord", func(t *testing.T) { testEnqueueWithRecord(t, newNodes(t)()) })
	t.Run("RecoverOwned", func(t *testing.T) { testRecoverOwned(t, newNodes(t)) })
	t.Run("NodeAffinity", func(t *testing.T) { testNodeAffinity(t, newNodes(t)) })
	t.Run("Defer", func(t *testing.T) { testDefer(t, newNodes(t)) })
	t.Run("ForgetDoneInBatches", func(t *testing.T) { testForgetDone(t, newNodes(t)()) })
}

// batchBackend records the batches of ForgetDone.
type batchBackend struct {
	job.Backend
	batches []int
}

func (b *batchBackend) ForgetDone(ctx context.Context, tx store.Tx, cutoff time.Time, from string, limit int) (string, int, error) {
	next, n, err := b.Backend.ForgetDone(ctx, tx, cutoff, from, limit)
	if err == nil {
		b.batches = append(b.batches, n)
	}
	return next, n, err
}

// testForgetDone: ForgetDone forgets the IDs of the tasks finished before
// its cutoff, every one of them, in transactions of ForgetBatch IDs at
// most, and remembers those finished since (they are still duplicates).
func testForgetDone(t *testing.T, n Node) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	q := queue(n, clk)
	finish := func(ids ...string) {
		t.Helper()
		for _, id := range ids {
			if err := q.Enqueue(ctx, job.Task{ID: id, Type: "x"}); err != nil {
				t.Fatal(err)
			}
			task, ok, err := q.Lease(ctx, "node1/1")
			if err != nil || !ok {
				t.Fatalf("lease %s: %v %v", id, ok, err)
			}
			if err := q.Ack(ctx, task); err != nil {
				t.Fatal(err)
			}
		}
	}
	var old, recent []string
	for i := range 23 {
		old = append(old, fmt.Sprintf("old-%02d", i))
	}
	for i := range 4 {
		// Before and among the old ones in key order.
		recent = append(recent, fmt.Sprintf("new-%02d", i), fmt.Sprintf("old-%02d-new", i))
	}
	finish(old...)
	clk.Advance(2 * time.Hour)
	finish(recent...)
	b := &batchBackend{Backend: q.Backend}
	q.Backend, q.ForgetBatch = b, 5
	forgot, err := q.ForgetDone(ctx, clk.Now().Add(-time.Hour))
	if err != nil || forgot != len(old) {
		t.Fatalf("forgot %d %v, want %d", forgot, err, len(old))
	}
	if len(b.batches) < (len(old)+4)/5 {
		t.Errorf("batches %v: fewer than the %d markers to forget need", b.batches, len(old))
	}
	for _, n := range b.batches {
		if n > 5 {
			t.Errorf("batches %v: one forgot more than ForgetBatch (5)", b.batches)
		}
	}
	for _, id := range recent {
		if err := q.Enqueue(ctx, job.Task{ID: id, Type: "x"}); !errors.Is(err, job.ErrDuplicate) {
			t.Errorf("enqueue of %s, finished after the cutoff: %v, want ErrDuplicate", id, err)
		}
	}
	for _, id := range old {
		if err := q.Enqueue(ctx, job.Task{ID: id, Type: "x"}); err != nil {
			t.Errorf("enqueue of %s, forgotten: %v", id, err)
		}
	}
	// Nothing more to forget.
	if forgot, err := q.ForgetDone(ctx, clk.Now().Add(-time.Hour)); err != nil || forgot != 0 {
		t.Errorf("a second ForgetDone: %d %v, want none", forgot, err)
	}
}

// testDefer: Defer releases a leased task to be delivered again after its
// delay, not before, and without using a delivery (a task deferred more
// often than its limit still gets all its deliveries); each later lease is
// a newer epoch; a worker whose lease passed to another node can neither
// defer the task nor commit work fenced by HeldTx, which holds for the
// current holder and keeps the task leased.
func testDefer(t *testing.T, open func() Node) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	n1, n2 := open(), open()
	q1, q2 := queue(n1, clk), queue(n2, clk)
	if err := q1.Enqueue(ctx, job.Task{ID: "t", Type: "x", Target: "disk", MaxAttempts: 2}); err != nil {
		t.Fatal(err)
	}
	var last job.Task
	for i := 1; i <= 3; i++ { // more deferrals than deliveries
		a, ok, err := q1.Lease(ctx, "node1/1")
		if err != nil || !ok || a.Attempts <= last.Attempts {
			t.Fatalf("lease %d: %+v %v %v (the one before: epoch %d)", i, a, ok, err, last.Attempts)
		}
		if err := q1.Defer(ctx, a, 10*time.Minute); err != nil {
			t.Fatalf("defer %d: %v", i, err)
		}
		last = a
		tasks, err := q2.Tasks(ctx)
		if err != nil || len(tasks) != 1 || tasks[0].State != job.StatePending || tasks[0].LeaseOwner != "" ||
			!tasks[0].NotBefore.Equal(clk.Now().UTC().Add(10*time.Minute)) {
			t.Fatalf("after defer %d: %+v %v", i, tasks, err)
		}
		if _, err := q1.Extend(ctx, a); !errors.Is(err, job.ErrLeaseLost) {
			t.Fatalf("a deferred task's lease was renewed: %v", err)
		}
		clk.Advance(10*time.Minute - time.Second)
		if _, ok, err := q2.Lease(ctx, "node2/1"); err != nil || ok {
			t.Fatalf("a task deferred %d times was delivered before its time: %v %v", i, ok, err)
		}
		clk.Advance(time.Second)
	}
	// Its two deliveries are all left: the first fails and is retried.
	a, ok, err := q1.Lease(ctx, "node1/1")
	if err != nil || !ok {
		t.Fatalf("lease after the deferrals: %v %v", ok, err)
	}
	if dead, err := q1.Nack(ctx, a, errors.New("failed")); err != nil || dead {
		t.Fatalf("the first failed delivery after deferrals: dead %v, %v", dead, err)
	}
	clk.Advance(time.Hour)

	// Node 1 leases it and pauses past its lease; node 2 takes it over.
	a, ok, err = q1.Lease(ctx, "node1/1")
	if err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	held := func(q *job.Queue, n Node, tk job.Task, what string) error {
		return n.Store.Update(ctx, func(tx store.Tx) error {
			if err := q.HeldTx(ctx, tx, tk); err != nil {
				return err
			}
			return tx.Put(ctx, &store.Object{Kind: "result", Key: "/t", Data: []byte(what)}, store.PutOptions{})
		})
	}
	if err := held(q1, n1, a, "node1"); err != nil {
		t.Fatalf("work fenced by the holder's lease: %v", err)
	}
	clk.Advance(q1.LeaseDuration)
	b, ok, err := q2.Lease(ctx, "node2/1")
	if err != nil || !ok || b.Attempts != a.Attempts+1 {
		t.Fatalf("claim after expiry: %+v %v %v", b, ok, err)
	}
	if err := q1.Defer(ctx, a, time.Minute); !errors.Is(err, job.ErrLeaseLost) {
		t.Fatalf("defer by the old owner: %v, want job.ErrLeaseLost", err)
	}
	if err := held(q1, n1, a, "node1 late"); !errors.Is(err, job.ErrLeaseLost) {
		t.Fatalf("work fenced by the old owner's lease: %v, want job.ErrLeaseLost", err)
	}
	tasks, err := q1.Tasks(ctx)
	if err != nil || len(tasks) != 1 || tasks[0].LeaseOwner != "node2/1" || tasks[0].State != job.StateLeased {
		t.Fatalf("after the old owner's defer: %+v %v, want node2's lease", tasks, err)
	}
	n1.Store.View(ctx, func(tx store.Tx) error {
		o, err := tx.Get(ctx, "result", "/t")
		if err != nil || string(o.Data) != "node1" {
			t.Fatalf("result %q %v, want what node1 wrote while it held the lease", o.Data, err)
		}
		return nil
	})
	// The last delivery is node 2's: its failure ends the task.
	if dead, err := q2.Nack(ctx, b, errors.New("failed")); err != nil || !dead {
		t.Fatalf("the last delivery's failure: dead %v, %v", dead, err)
	}
	if err := held(q2, n2, b, "node2"); !errors.Is(err, job.ErrLeaseLost) {
		t.Fatalf("work fenced by a finished task's lease: %v, want job.ErrLeaseLost", err)
	}
}

// testNodeAffinity: a task with a Node is claimed only by that node's
// owners (named Node/…, case-insensitively), even when it is the oldest;
// tasks without one by any node; the Node survives a nack.
func testNodeAffinity(t *testing.T, open func() Node) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	n1, n2 := open(), open()
	q1, q2 := queue(n1, clk), queue(n2, clk)
	if err := q1.Enqueue(ctx, job.Task{ID: "homed", Type: "x", Target: "disk1", Node: "Node-A"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if err := q1.Enqueue(ctx, job.Task{ID: "any", Type: "x"}); err != nil {
		t.Fatal(err)
	}
	b, ok, err := q2.Lease(ctx, "node-b/1")
	if err != nil || !ok || b.ID != "any" {
		t.Fatalf("node-b leased %+v %v %v, want the task of any node", b, ok, err)
	}
	if _, ok, err := q2.Lease(ctx, "node-b/1"); err != nil || ok {
		t.Fatalf("node-b leased node-a's task: %v %v", ok, err)
	}
	if err := q2.Ack(ctx, b); err != nil {
		t.Fatal(err)
	}
	a, ok, err := q1.Lease(ctx, "node-a/1")
	if err != nil || !ok || a.ID != "homed" || a.Node != "Node-A" {
		t.Fatalf("node-a leased %+v %v %v, want its task", a, ok, err)
	}
	if _, err := q1.Nack(ctx, a, errors.New("again")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	if _, ok, err := q2.Lease(ctx, "node-b/1"); err != nil || ok {
		t.Fatalf("node-b leased node-a's task after a nack: %v %v", ok, err)
	}
	if a, ok, err = q1.Lease(ctx, "node-a/2"); err != nil || !ok || a.ID != "homed" || a.Node != "Node-A" {
		t.Fatalf("node-a's next run leased %+v %v %v", a, ok, err)
	}
}

// testRecoverOwned: a node that restarts releases the tasks its earlier
// run leased (RecoverOwned with its name) and leaves another live node's
// leases alone: that node still acks its task.
func testRecoverOwned(t *testing.T, open func() Node) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	n1, n2 := open(), open()
	q1, q2 := queue(n1, clk), queue(n2, clk)
	for _, id := range []string{"a", "b", "c"} {
		if err := q1.Enqueue(ctx, job.Task{ID: id, Type: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	a, _, err := q1.Lease(ctx, "node-a/run1")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := q2.Lease(ctx, "node-b/run1")
	if err != nil {
		t.Fatal(err)
	}
	// node-a restarts: its run1 task comes back at once, node-b's does not.
	released, dead, err := q1.RecoverOwned(ctx, "node-a/")
	if err != nil || released != 1 || len(dead) != 0 {
		t.Fatalf("recover node-a: %d released, %d dead, %v; want 1, 0", released, len(dead), err)
	}
	var got []string
	for {
		x, ok, err := q1.Lease(ctx, "node-a/run2")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, x.ID)
	}
	if fmt.Sprint(got) != fmt.Sprintf("[%s c]", a.ID) {
		t.Fatalf("node-a's second run leased %v, want [%s c]", got, a.ID)
	}
	if err := q2.Ack(ctx, b); err != nil {
		t.Fatalf("node-b's ack after node-a recovered: %v", err)
	}
}

func testLifecycle(t *testing.T, n Node) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	q := queue(n, clk)
	for _, tk := range []job.Task{{ID: "a", Type: "x", Target: "disk1"}, {ID: "b", Type: "x", Target: "DISK1"}, {ID: "c", Type: "y", Target: "disk2"}} {
		if err := q.Enqueue(ctx, tk); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
	}
	if err := q.Enqueue(ctx, job.Task{ID: "A", Type: "x"}); !errors.Is(err, job.ErrDuplicate) {
		t.Fatalf("duplicate (another case): %v", err)
	}
	active := func(target string, types ...string) bool {
		t.Helper()
		var busy bool
		if err := n.Store.View(ctx, func(tx store.Tx) error {
			var err error
			busy, err = q.ActiveTx(ctx, tx, target, types...)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return busy
	}
	if !active("Disk1") || !active("disk2", "y") || active("disk2", "x") || active("disk3") || active("") {
		t.Fatal("ActiveTx: wrong answers")
	}
	lease := func(want string) job.Task {
		t.Helper()
		tk, ok, err := q.Lease(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if ok {
			got = tk.ID
		}
		if got != want {
			t.Fatalf("leased %q, want %q", got, want)
		}
		return tk
	}
	a := lease("a")
	if a.State != job.StateLeased || a.LeaseOwner != "w" || a.Attempts != 1 || !a.LeaseExpiry.Equal(clk.Now().Add(q.LeaseDuration)) ||
		a.Type != "x" || a.Target != "disk1" || a.MaxAttempts != q.DefaultMaxAttempts || !a.CreatedAt.Equal(t0) {
		t.Fatalf("leased task: %+v", a)
	}
	c := lease("c") // b waits: disk1 is busy
	lease("")
	if next, err := q.NextReady(ctx); err != nil || !next.Equal(t0.Add(time.Second)) {
		t.Fatalf("NextReady = %v %v, want b's NotBefore %v", next, err, t0.Add(time.Second))
	}
	if err := q.Ack(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(ctx, a); !errors.Is(err, job.ErrNoTask) {
		t.Fatalf("second ack: %v", err)
	}
	if err := q.Enqueue(ctx, job.Task{ID: "a", Type: "x"}); !errors.Is(err, job.ErrDuplicate) {
		t.Fatalf("re-enqueue of a done task: %v", err)
	}
	b := lease("b")
	// Nack: retried after the backoff, up to the delivery limit.
	for i := 1; i <= 3; i++ {
		dead, err := q.Nack(ctx, b, errors.New("boom"))
		if err != nil {
			t.Fatal(err)
		}
		if dead != (i == 3) {
			t.Fatalf("nack %d: dead %v", i, dead)
		}
		if dead {
			break
		}
		lease("")
		clk.Advance(time.Duration(i) * time.Minute)
		b = lease("b")
		if b.LastError != "boom" || b.Attempts != i+1 {
			t.Fatalf("retried task: %+v", b)
		}
	}
	// Cancel: a leased task is marked and dropped at its next nack.
	if removed, err := q.Cancel(ctx, "c"); err != nil || removed {
		t.Fatalf("cancel leased: %v %v", removed, err)
	}
	if canceled, err := q.Canceled(ctx, "c"); err != nil || !canceled {
		t.Fatalf("Canceled: %v %v", canceled, err)
	}
	if dead, err := q.Nack(ctx, c, nil); err != nil || !dead {
		t.Fatalf("nack of a cancelled task: %v %v", dead, err)
	}
	if err := q.Enqueue(ctx, job.Task{ID: "d", Type: "x", Target: "disk1", Payload: []byte(`{"p":1}`)}); err != nil {
		t.Fatal(err)
	}
	if ts, err := q.Tasks(ctx); err != nil || len(ts) != 1 || string(ts[0].Payload) != `{"p":1}` {
		t.Fatalf("tasks: %+v %v", ts, err)
	}
	if removed, err := q.Cancel(ctx, "d"); err != nil || !removed {
		t.Fatalf("cancel pending: %v %v", removed, err)
	}
	if err := q.Enqueue(ctx, job.Task{ID: "d", Type: "x"}); !errors.Is(err, job.ErrDuplicate) {
		t.Fatalf("re-enqueue of a cancelled task: %v", err)
	}
	if ts, _ := q.Tasks(ctx); len(ts) != 0 {
		t.Fatalf("tasks left: %+v", ts)
	}
	// Recover releases leases of a dead process.
	if err := q.Enqueue(ctx, job.Task{ID: "e", Type: "x", Target: "disk1", MaxAttempts: 2}); err != nil {
		t.Fatal(err)
	}
	lease("e")
	if n, dead, err := q.Recover(ctx); err != nil || n != 1 || len(dead) != 0 {
		t.Fatalf("recover: %d %v %v", n, dead, err)
	}
	lease("e")
	if n, dead, err := q.Recover(ctx); err != nil || n != 0 || len(dead) != 1 || dead[0].ID != "e" {
		t.Fatalf("recover past the limit: %d %v %v", n, dead, err)
	}
	// Finished IDs are forgotten after the cutoff, and may come again.
	clk.Advance(time.Hour)
	if _, err := q.ForgetDone(ctx, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(ctx, job.Task{ID: "a", Type: "x"}); err != nil {
		t.Fatalf("enqueue of a forgotten ID: %v", err)
	}
}

// testFencing: a lease that expires makes the task claimable again, by a
// worker of another node; the first worker, back from its pause, can no
// longer ack, nack or renew it, nor commit its result with AckTx; an
// extended lease is not claimable.
func testFencing(t *testing.T, open func() Node) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	n1, n2 := open(), open()
	q1, q2 := queue(n1, clk), queue(n2, clk)
	if err := q1.Enqueue(ctx, job.Task{ID: "t", Type: "x", Target: "disk"}); err != nil {
		t.Fatal(err)
	}
	a, ok, err := q1.Lease(ctx, "node1")
	if err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	// Renewed before expiry: nobody else gets it.
	clk.Advance(q1.LeaseDuration * 3 / 4)
	if a, err = q1.Extend(ctx, a); err != nil {
		t.Fatal(err)
	}
	clk.Advance(q1.LeaseDuration * 3 / 4)
	if _, ok, err := q2.Lease(ctx, "node2"); err != nil || ok {
		t.Fatalf("a renewed lease was claimed: %v %v", ok, err)
	}
	// Node 1 pauses past its lease; node 2 takes the task over.
	clk.Advance(q1.LeaseDuration)
	b, ok, err := q2.Lease(ctx, "node2")
	if err != nil || !ok || b.Attempts != a.Attempts+1 || b.LeaseOwner != "node2" {
		t.Fatalf("claim after expiry: %+v %v %v", b, ok, err)
	}
	if _, err := q1.Extend(ctx, a); !errors.Is(err, job.ErrLeaseLost) {
		t.Fatalf("renewal by the old owner: %v", err)
	}
	if _, err := q1.Nack(ctx, a, errors.New("late")); !errors.Is(err, job.ErrLeaseLost) {
		t.Fatalf("nack by the old owner: %v", err)
	}
	// The old owner's result and ack commit together, or not at all.
	err = n1.Store.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(ctx, &store.Object{Kind: "result", Key: "/t", Data: []byte("node1")}, store.PutOptions{}); err != nil {
			return err
		}
		return q1.AckTx(ctx, tx, a)
	})
	if !errors.Is(err, job.ErrLeaseLost) {
		t.Fatalf("ack by the old owner: %v", err)
	}
	// The same owner name with an older epoch is fenced off too.
	stale := b
	stale.Attempts--
	if err := q2.Ack(ctx, stale); !errors.Is(err, job.ErrLeaseLost) {
		t.Fatalf("ack with an old epoch: %v", err)
	}
	err = n2.Store.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(ctx, &store.Object{Kind: "result", Key: "/t", Data: []byte("node2")}, store.PutOptions{}); err != nil {
			return err
		}
		return q2.AckTx(ctx, tx, b)
	})
	if err != nil {
		t.Fatalf("ack by the new owner: %v", err)
	}
	n1.Store.View(ctx, func(tx store.Tx) error {
		o, err := tx.Get(ctx, "result", "/t")
		if err != nil || string(o.Data) != "node2" {
			t.Fatalf("result %q %v, want node2's alone", o.Data, err)
		}
		return nil
	})
}

// testConcurrentClaims: workers on three nodes claim at once; every task
// runs exactly once, and no two tasks of one target ever hold live leases
// together.
func testConcurrentClaims(t *testing.T, open func() Node) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	const tasks, targets, nodes, perNode = 60, 10, 3, 4
	qs := make([]*job.Queue, nodes)
	for i := range qs {
		qs[i] = queue(open(), clk)
	}
	for i := range tasks {
		if err := qs[0].Enqueue(ctx, job.Task{ID: fmt.Sprintf("t%02d", i), Type: "x", Target: fmt.Sprintf("disk%d", i%targets)}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu      sync.Mutex
		ran     = map[string]int{}
		running = map[string]string{} // target → task holding it
		errs    []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for n := range nodes {
		for w := range perNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				owner := fmt.Sprintf("node%d/w%d", n, w)
				for idle := 0; idle < 50; {
					tk, ok, err := qs[n].Lease(ctx, owner)
					if err != nil {
						fail(err)
						return
					}
					if !ok {
						mu.Lock()
						done := len(ran) == tasks
						mu.Unlock()
						if done {
							return
						}
						idle++
						continue
					}
					idle = 0
					target := strings.ToLower(tk.Target)
					mu.Lock()
					if other, busy := running[target]; busy {
						errs = append(errs, fmt.Errorf("%s leased %s while %s holds %s", owner, tk.ID, other, target))
					}
					running[target] = tk.ID
					ran[tk.ID]++
					mu.Unlock()
					// The work: others claim meanwhile.
					if _, err := qs[n].Tasks(ctx); err != nil {
						fail(err)
					}
					runtime.Gosched()
					mu.Lock()
					delete(running, target)
					mu.Unlock()
					if err := qs[n].Ack(ctx, tk); err != nil {
						fail(fmt.Errorf("%s: ack %s: %w", owner, tk.ID, err))
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	if len(ran) != tasks {
		t.Fatalf("%d tasks ran, want %d", len(ran), tasks)
	}
	for id, k := range ran {
		if k != 1 {
			t.Errorf("task %s ran %d times", id, k)
		}
	}
	if ts, err := qs[1].Tasks(ctx); err != nil || len(ts) != 0 {
		t.Fatalf("left: %v %v", ts, err)
	}
}

// testEnqueueWithRecord: a task enqueued in a transaction that fails is
// not queued; one enqueued with a record in a committed one is.
func testEnqueueWithRecord(t *testing.T, n Node) {
	ctx := context.Background()
	q := queue(n, clock.NewFake(t0))
	boom := errors.New("boom")
	err := n.Store.Update(ctx, func(tx store.Tx) error {
		if err := q.EnqueueTx(ctx, tx, job.Task{ID: "x", Type: "x"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if ts, _ := q.Tasks(ctx); len(ts) != 0 {
		t.Fatalf("a rolled-back enqueue left %v", ts)
	}
	err = n.Store.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(ctx, &store.Object{Kind: "record", Key: "/x"}, store.PutOptions{}); err != nil {
			return err
		}
		return q.EnqueueTx(ctx, tx, job.Task{ID: "x", Type: "x"})
	})
	if err != nil {
		t.Fatal(err)
	}
	if ts, _ := q.Tasks(ctx); len(ts) != 1 {
		t.Fatalf("tasks %v, want x", ts)
	}
}
