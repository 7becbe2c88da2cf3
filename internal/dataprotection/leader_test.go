package dataprotection_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/cluster"
	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/worker"
)

// reachable is one node's handle on the shared store, which the test can
// cut (the node died, or lost the network): its transactions then fail.
type reachable struct {
	store.Store
	mu   sync.Mutex
	cut  bool
	left int // Updates before the cut comes by itself (<0: never)
}

var errUnreachable = errors.New("the database is unreachable")

func (r *reachable) set(cut bool, left int) {
	r.mu.Lock()
	r.cut, r.left = cut, left
	r.mu.Unlock()
}

func (r *reachable) up() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.left == 0 {
		r.cut = true
	}
	if r.left > 0 {
		r.left--
	}
	return !r.cut
}

func (r *reachable) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	if !r.up() {
		return errUnreachable
	}
	return r.Store.Update(ctx, fn)
}

func (r *reachable) View(ctx context.Context, fn func(tx store.Tx) error) error {
	r.mu.Lock()
	cut := r.cut
	r.mu.Unlock()
	if cut {
		return errUnreachable
	}
	return r.Store.View(ctx, fn)
}

// schedNode is one node's scheduler, run only while its elector holds the
// scheduler lease, with its writes fenced by that holding.
type schedNode struct {
	name string
	db   *reachable
	el   *cluster.Elector
	sc   *dataprotection.Scheduler

	epoch uint64    // of the holding it last ticked under
	next  time.Time // when its last Tick said something is due next
}

func (e *env) schedNode(name string) *schedNode {
	db := &reachable{Store: e.st, left: -1}
	svc := *e.svc
	svc.Store = db
	sc := dataprotection.NewScheduler(&svc, e.clk, quiet)
	sc.FireBatch = 5 // a Tick of 30 due instances writes in 6 transactions
	return &schedNode{name: name, db: db, sc: sc,
		el: &cluster.Elector{Leases: &cluster.Leases{Store: db, Clock: e.clk, TTL: 15 * time.Second}, Name: "scheduler", Holder: name}}
}

// step is what the node's loop does every 5 s: keep or take the lease,
// and, when it holds it, tick under it as Scheduler.Run would: at once
// when it has just taken the lease, then when something is due. It
// reports whether it holds the lease.
func (n *schedNode) step(t *testing.T, ctx context.Context) (bool, dataprotection.Fired) {
	t.Helper()
	l, ok, err := n.el.Step(ctx)
	if err != nil && !errors.Is(err, cluster.ErrLeaseLost) && !errors.Is(err, errUnreachable) {
		t.Fatalf("%s: %v", n.name, err)
	}
	if !ok {
		return false, dataprotection.Fired{}
	}
	if l.Epoch == n.epoch && (n.next.IsZero() || n.sc.Clock.Now().Before(n.next)) {
		return true, dataprotection.Fired{}
	}
	n.epoch = l.Epoch
	n.sc.Fence = func(ctx context.Context, tx store.Tx) error { return cluster.Fence(ctx, tx, l) }
	next, fired, err := n.sc.Tick(ctx)
	if err != nil && !errors.Is(err, errUnreachable) {
		t.Fatalf("%s: tick: %v", n.name, err)
	}
	n.next = next
	return true, fired
}

// TestSchedulerOneAtATime: three nodes' schedulers share one store; only
// the holder of the scheduler lease ticks. A slot falls due for 30
// backup instances and the holder dies after queuing some of them; the
// others wait until its lease expires, then one takes over and queues the
// rest; the dead holder, back from its pause with its old holding, writes
// nothing (its Tick fails with ErrLeaseLost). Every due backup is queued
// exactly once, at this slot and the next (whose holder dies too).
func TestSchedulerOneAtATime(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 59, 40, 0, time.UTC)
	e := newEnv(t, start)
	s := e.standard(true)
	pol := e.policy(s.vault, "Hourly", mustBuild(t, dataprotection.DiskPolicyOptions{Hours: 1, Retention: "P7D"}))
	disks := resource.GroupID(subA, "rg-disks")
	e.assign(s.principal, "3e5e47e6-65f7-47ef-90b5-e5dd4d455f24", disks.String())
	const n = 30
	instances := map[string]bool{}
	for i := range n {
		disk := diskID(subA, "rg-disks", fmt.Sprintf("disk%02d", i))
		e.disks.add(disk, "local", "StandardSSD_LRS", []byte{byte(i)})
		bi := dataprotection.InstanceID(s.vault, fmt.Sprintf("disk%02d-bi", i))
		e.protect(bi, biJSON(disk, "local", pol, s.snapRG.String()))
		instances[bi.String()] = true
	}
	ctx := e.ctx
	a, b, c := e.schedNode("node-a"), e.schedNode("node-b"), e.schedNode("node-c")
	nodes := []*schedNode{a, b, c}
	var queued []string // job IDs of scheduled backups, in order
	// round steps every node once, then moves the clock 5 s; it checks
	// that at most one node held the lease.
	round := func() {
		t.Helper()
		holders := 0
		for _, nd := range nodes {
			ok, fired := nd.step(t, ctx)
			if ok {
				holders++
			}
			queued = append(queued, fired.Backups...)
		}
		if holders > 1 {
			t.Fatalf("at %s, %d schedulers held the lease", e.clk.Now().Format(time.TimeOnly), holders)
		}
		e.clk.Advance(5 * time.Second)
	}
	for e.clk.Now().Before(start.Add(20 * time.Second)) { // to 01:00:00
		round()
	}
	if l, _ := a.el.Held(); l.Epoch != 1 {
		t.Fatalf("node-a holds epoch %d, want 1", l.Epoch)
	}
	// 01:00:00: the slot is due; node-a renews (until 01:00:15) and dies
	// after 3 of its Updates: the renewal and two batches of 5 instances.
	a.db.set(false, 3)
	round()
	if len(queued) != 10 {
		t.Fatalf("node-a queued %d backups before it died, want 10", len(queued))
	}
	// node-a's lease runs until 01:00:15: nobody ticks meanwhile.
	for e.clk.Now().Before(start.Add(35 * time.Second)) {
		round()
	}
	if len(queued) != 10 {
		t.Fatalf("%d backups queued while node-a's lease ran, want 10", len(queued))
	}
	// 01:00:15: node-b takes the lease over, but before it ticks, node-a
	// comes back from its pause and goes on with the Tick it was in, under
	// its old holding: it writes nothing.
	lb, ok, err := b.el.Step(ctx)
	if err != nil || !ok || lb.Epoch != 2 {
		t.Fatalf("node-b's takeover: %+v %v %v", lb, ok, err)
	}
	a.db.set(false, -1)
	if _, fired, err := a.sc.Tick(ctx); !errors.Is(err, cluster.ErrLeaseLost) || len(fired.Backups) != 0 {
		t.Fatalf("the old holder's tick: %+v %v, want nothing queued and ErrLeaseLost", fired, err)
	}
	a.db.set(true, -1) // and dies again, for good
	for e.clk.Now().Before(start.Add(45 * time.Second)) {
		round()
	}
	if len(queued) != n {
		t.Fatalf("%d backups queued after the takeover, want %d", len(queued), n)
	}
	e.drain()
	// 02:00: node-b dies before the slot; node-c takes over when its
	// lease expires and queues every backup.
	for e.clk.Now().Before(start.Add(time.Hour - 5*time.Second)) {
		round()
	}
	b.db.set(true, -1)
	for e.clk.Now().Before(start.Add(time.Hour + 30*time.Second)) {
		round()
	}
	if l, ok := c.el.Held(); !ok || l.Epoch != 3 {
		t.Fatalf("node-c holds %+v (%v), want epoch 3", l, ok)
	}
	e.drain()
	if len(queued) != 2*n {
		t.Fatalf("%d backups queued over two slots, want %d", len(queued), 2*n)
	}
	// Each instance: one completed backup per slot, none twice.
	var recs []job.Record
	e.update(func(tx store.Tx) error {
		var err error
		recs, err = job.List(ctx, tx, s.vault.String(), job.Filter{})
		return err
	})
	per := map[string]int{}
	for _, r := range recs {
		if r.Operation != job.OpBackup {
			continue
		}
		if r.IsUserTriggered || r.Status != job.Completed {
			t.Errorf("job %s of %s: %s (user-triggered %v)", r.ID, r.BackupInstanceFriendlyName, r.Status, r.IsUserTriggered)
		}
		per[r.BackupInstanceID]++
	}
	for bi := range instances {
		if per[bi] != 2 {
			t.Errorf("%s: %d scheduled backups, want 2", bi, per[bi])
		}
	}
	if len(per) != n {
		t.Errorf("backups of %d instances, want %d", len(per), n)
	}
}

// TestSchedulerWatchesOtherNodes: a backup instance protected through
// another node's service (whose Refresh does not reach this scheduler) is
// scheduled on time by a scheduler that watches the store, while it
// sleeps on a far deadline.
func TestSchedulerWatchesOtherNodes(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 59, 0, 0, time.UTC)
	e := newEnv(t, start)
	s := e.standard(true)
	pol := e.policy(s.vault, "Hourly", mustBuild(t, dataprotection.DiskPolicyOptions{Hours: 1, Retention: "P7D"}))
	e.sched.Watch = 10 * time.Second
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.sched.Run(ctx) }()
	defer func() { cancel(); <-done }()
	asleep := func() {
		t.Helper()
		for i := 0; e.clk.Pending() != 1; i++ {
			if i > 2000 {
				t.Fatal("the scheduler did not go to sleep")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	asleep()
	other := *e.svc
	other.Refresh = nil // another node's service
	if _, _, err := other.PutInstance(e.ctx, dataprotection.Caller{Name: "test"}, s.bi,
		dataprotection.InstanceInput{Properties: instance(biJSON(s.disk, "local", pol, s.snapRG.String()))}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.ConfigureInstance(e.ctx, s.bi); err != nil {
		t.Fatal(err)
	}
	for e.clk.Now().Before(start.Add(time.Minute)) {
		e.clk.Advance(5 * time.Second)
		time.Sleep(time.Millisecond)
		asleep()
	}
	tasks, err := e.queue.Tasks(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 1 || tasks[0].Type != dataprotection.TaskBackup {
		t.Fatalf("queued at 01:00: %+v, want the scheduled backup", tasks)
	}
}

// TestBackupsRunOnTheDiskHome: a backup of a disk whose home is node-a is
// queued for node-a: node-b's workers do not take it, node-a's run it.
func TestBackupsRunOnTheDiskHome(t *testing.T) {
	e := newEnv(t, time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC))
	s := e.standard(true)
	e.svc.Home = cluster.Home
	e.update(func(tx store.Tx) error {
		return cluster.SetHome(e.ctx, tx, s.disk.String(), "vol-"+s.disk.Name(), "node-a")
	})
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
	jobID, err := e.backupNow(s.bi, "BackupHourly", "Default")
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := e.queue.Tasks(e.ctx)
	if err != nil || len(tasks) != 1 || tasks[0].Node != "node-a" {
		t.Fatalf("queued %+v %v, want one backup for node-a", tasks, err)
	}
	b := worker.NewPool(e.queue, e.clk, quiet, 1)
	b.Node, b.Owner = "node-b", "node-b/1"
	b.Handle(dataprotection.TaskBackup, e.svc.ExecBackup)
	if ran, err := b.RunOnce(e.ctx); err != nil || ran {
		t.Fatalf("node-b ran node-a's backup: %v %v", ran, err)
	}
	e.pool.Node, e.pool.Owner = "node-a", "node-a/1"
	e.drain()
	if j := e.job(jobID); j.Properties.Status != string(job.Completed) {
		t.Fatalf("backup on node-a: %s", j.Properties.Status)
	}
}

// TestBackupOfDeadHomeFails: a backup queued for node-a, whose heartbeat
// stopped, is failed by node-b's sweep once node-a has been down for the
// node timeout plus the grace (not before): the job ends Failed with
// NodeUnavailable naming node-a and when it was last seen, and no task is
// left in the queue.
func TestBackupOfDeadHomeFails(t *testing.T) {
	e := newEnv(t, time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC))
	s := e.standard(true)
	e.svc.Home = cluster.Home
	e.update(func(tx store.Tx) error {
		return cluster.SetHome(e.ctx, tx, s.disk.String(), "vol-"+s.disk.Name(), "node-a")
	})
	reg := &cluster.Registry{Store: e.st, Clock: e.clk}
	a, err := reg.Register(e.ctx, cluster.Node{Name: "node-a", Incarnation: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	seen := e.clk.Now()
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
	jobID, err := e.backupNow(s.bi, "BackupHourly", "Default")
	if err != nil {
		t.Fatal(err)
	}
	b := worker.NewPool(e.queue, e.clk, quiet, 1)
	b.Node, b.Owner = "node-b", "node-b/1"
	b.Dead = e.svc.FailTask
	gone := func(ctx context.Context, tx store.Tx, tk job.Task) (error, error) {
		return reg.GoneTx(ctx, tx, tk.Node, "The disk '"+s.disk.Name()+"'", e.clk.Now(), tk.CreatedAt, cluster.DefaultTaskGrace)
	}
	e.clk.Set(a.Heartbeat.Add(cluster.DefaultNodeTimeout + cluster.DefaultTaskGrace - time.Second))
	if n, err := b.FailStranded(e.ctx, nil, gone, nil); err != nil || n != 0 {
		t.Fatalf("a sweep within the grace failed %d tasks: %v", n, err)
	}
	if j := e.job(jobID); j.Properties.Status != string(job.InProgress) {
		t.Fatalf("the backup within the grace: %s", j.Properties.Status)
	}
	e.clk.Advance(2 * time.Second)
	if n, err := b.FailStranded(e.ctx, nil, gone, nil); err != nil || n != 1 {
		t.Fatalf("the sweep past the grace failed %d tasks: %v", n, err)
	}
	j := e.job(jobID)
	if j.Properties.Status != string(job.Failed) || len(j.Properties.ErrorDetails) != 1 {
		t.Fatalf("the backup of a disk on a dead node: %s %+v", j.Properties.Status, j.Properties.ErrorDetails)
	}
	d := j.Properties.ErrorDetails[0]
	when := seen.UTC().Format(time.RFC3339)
	if d.Code != cluster.CodeNodeUnavailable || !strings.Contains(d.Message, "node 'node-a'") || !strings.Contains(d.Message, when) {
		t.Fatalf("the job's error: %+v, want NodeUnavailable naming node-a and %s", d, when)
	}
	if !d.IsRetryable || d.IsUserError {
		t.Fatalf("the job's error: isRetryable %v, isUserError %v; want a retryable error that is not the user's (node-a may come back)", d.IsRetryable, d.IsUserError)
	}
	if tasks, err := e.queue.Tasks(e.ctx); err != nil || len(tasks) != 0 {
		t.Fatalf("queued after the failure: %+v %v", tasks, err)
	}
}
