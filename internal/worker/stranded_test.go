package worker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/cluster"
	"coffer/internal/job"
	"coffer/internal/store"
	"coffer/internal/store/postgres"
	"coffer/internal/store/postgres/pgtest"
	"coffer/internal/store/sqlite"
	"coffer/internal/worker"
)

// handle is one node's handle on the shared metadata.
type handle struct {
	st store.Store
	b  job.Backend
}

// eachBackend runs test on SQLite (one handle: a file allows one) and on
// PostgreSQL (a handle per call, as nodes have), when its server programs
// are here.
func eachBackend(t *testing.T, test func(t *testing.T, open func() handle)) {
	t.Run("sqlite", func(t *testing.T) {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		test(t, func() handle { return handle{st, job.Objects{Store: st}} })
	})
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.Start(t).NewDatabase(t)
		test(t, func() handle {
			st, err := postgres.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return handle{st, st.Queue()}
		})
	})
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestFailStranded: a task bound to node a (a backup of a disk a holds)
// is failed by FailStranded on node b once a has not beaten for the node
// timeout plus the grace, with a NodeUnavailable cause naming a and when
// it was last seen (a task a had leased too, its completion by a then
// refused); not before, nor before the grace has passed since the task
// was queued, not when a came back within the grace (a then
// runs it), and never for a type that waits for its node. A second sweep, from another node, fails
// nothing again; a sweep whose fence refuses changes nothing. Time is a
// fake clock.
func TestFailStranded(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func() handle) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		const grace = time.Minute
		newNode := func(name string) (*worker.Pool, *cluster.Registry, cluster.Node, *[]error) {
			h := open()
			reg := &cluster.Registry{Store: h.st, Clock: clk}
			n, err := reg.Register(ctx, cluster.Node{Name: name, Incarnation: name + "-1"})
			if err != nil {
				t.Fatal(err)
			}
			q := job.NewQueue(h.st, clk)
			q.Backend = h.b
			p := worker.NewPool(q, clk, quiet, 1)
			p.Node, p.Owner = name, name+"/1"
			p.WaitForNode = map[string]bool{"delete-volume": true}
			var dead []error
			p.Dead = func(ctx context.Context, tk job.Task, cause error) {
				dead = append(dead, cause)
				if tk.Node != "a" || !strings.HasPrefix(tk.ID, "backup") {
					t.Errorf("%s failed task %+v", name, tk)
				}
			}
			ran := func(ctx context.Context, tk job.Task) error { return nil }
			p.Handle("backup", ran)
			p.Handle("delete-volume", ran)
			return p, reg, n, &dead
		}
		pa, rega, na, _ := newNode("a")
		pb, regb, nb, deadB := newNode("b")
		pc, regc, nc, deadC := newNode("c")
		gone := func(reg *cluster.Registry) worker.NodeGone {
			return func(ctx context.Context, tx store.Tx, tk job.Task) (error, error) {
				return reg.GoneTx(ctx, tx, tk.Node, "The disk 'd1'", clk.Now(), tk.CreatedAt, grace)
			}
		}
		beat := func(reg *cluster.Registry, n cluster.Node) {
			if _, err := reg.Beat(ctx, n, 0); err != nil {
				t.Fatal(err)
			}
		}
		sweep := func(p *worker.Pool, reg *cluster.Registry, n cluster.Node, want int) {
			t.Helper()
			beat(reg, n) // the sweeper is live
			got, err := p.FailStranded(ctx, nil, gone(reg), nil)
			if err != nil || got != want {
				t.Fatalf("%s's sweep at %s failed %d tasks (%v), want %d", p.Node, clk.Now().Sub(t0), got, err, want)
			}
		}
		queued := func() map[string]bool {
			ts, err := pb.Queue.Tasks(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ids := map[string]bool{}
			for _, tk := range ts {
				ids[tk.ID] = true
			}
			return ids
		}
		enqueue := func(tk job.Task) {
			if err := pa.Queue.Enqueue(ctx, tk); err != nil {
				t.Fatal(err)
			}
		}
		deadline := cluster.DefaultNodeTimeout + grace

		// a stops beating; its backup waits out the grace.
		enqueue(job.Task{ID: "backup-1", Type: "backup", Node: "a"})
		enqueue(job.Task{ID: "mine", Type: "backup", Node: "b"})
		clk.Advance(deadline - time.Second)
		sweep(pb, regb, nb, 0)
		// a returns within the grace: the backup is not failed past the
		// first deadline, and a runs it.
		beat(rega, na)
		lastA := clk.Now()
		clk.Advance(2 * time.Second)
		sweep(pb, regb, nb, 0)
		if !queued()["backup-1"] {
			t.Fatal("the backup of a node back within the grace left the queue")
		}
		if ran, err := pa.RunOnce(ctx); err != nil || !ran || queued()["backup-1"] {
			t.Fatalf("a runs its backup on its return: %v %v", ran, err)
		}

		// a leases a backup and dies: at the deadline, its lease (a's
		// own, longer than the grace) keeps the task no more than the
		// queued one; a's completion of it, should a still run, commits
		// nothing. The deadline of tasks queued after a's last beat runs
		// from their queueing.
		clk.Advance(time.Second)
		queuedAt := clk.Now()
		enqueue(job.Task{ID: "backup-2", Type: "backup", Node: "a"})
		enqueue(job.Task{ID: "backup-3", Type: "backup", Node: "a"})
		leased, ok, err := pa.Queue.Lease(ctx, pa.Owner)
		if err != nil || !ok || leased.ID != "backup-2" {
			t.Fatalf("a's lease: %+v %v %v", leased, ok, err)
		}
		enqueue(job.Task{ID: "volume", Type: "delete-volume", Node: "a"})
		clk.Set(queuedAt.Add(deadline - time.Second))
		sweep(pb, regb, nb, 0)
		clk.Set(queuedAt.Add(deadline + time.Second))
		// A sweep whose fence refuses (b lost the scheduler lease)
		// changes nothing.
		lost := errors.New("fence refused")
		if _, err := pb.FailStranded(ctx, nil, gone(regb), func(context.Context, store.Tx) error { return lost }); !errors.Is(err, lost) {
			t.Fatalf("a sweep under a refusing fence: %v", err)
		}
		if q := queued(); !q["backup-2"] || !q["backup-3"] || len(*deadB) != 0 {
			t.Fatalf("after a refused sweep: queued %v, failed %v", q, *deadB)
		}
		sweep(pb, regb, nb, 2)
		if q := queued(); len(q) != 2 || !q["volume"] || !q["mine"] {
			t.Fatalf("queued after the deadline: %v, want the volume's deletion and b's own backup", q)
		}
		for _, cause := range *deadB {
			if !errors.Is(cause, cluster.ErrNodeUnavailable) {
				t.Fatalf("cause %v, want cluster.ErrNodeUnavailable", cause)
			}
			seen := lastA.UTC().Format(time.RFC3339)
			if msg := cause.Error(); !strings.Contains(msg, "The disk 'd1' is held by node 'a'") || !strings.Contains(msg, "last seen at "+seen) {
				t.Fatalf("cause %q, want it to name the disk, node a and %s", msg, seen)
			}
		}
		if err := pa.Queue.Store.Update(ctx, func(tx store.Tx) error { return pa.Queue.CompleteTx(ctx, tx, leased) }); !errors.Is(err, job.ErrLeaseLost) {
			t.Fatalf("a's completion of its failed task: %v, want job.ErrLeaseLost", err)
		}

		// Nodes c and b sweep in turn: the task is failed once.
		enqueue(job.Task{ID: "backup-4", Type: "backup", Node: "a"})
		clk.Advance(deadline + time.Second)
		beat(regb, nb)
		sweep(pc, regc, nc, 1)
		sweep(pb, regb, nb, 0)
		if q := queued(); len(q) != 2 || len(*deadB) != 2 || len(*deadC) != 1 {
			t.Fatalf("in the end: queued %v, failed by b %v, by c %v", q, *deadB, *deadC)
		}
	})
}

// listCounting counts the times the queue is listed.
type listCounting struct {
	job.Backend
	lists int
}

func (b *listCounting) List(ctx context.Context, tx store.Tx, target string) ([]job.Task, error) {
	b.lists++
	return b.Backend.List(ctx, tx, target)
}

// TestFailStrandedReadsNoQueueWhileNodesLive: with the registry's AnyGone
// as its first check, a sweep does not list the queue while every node
// has beaten within the timeout plus the grace (a healthy cluster, or one
// whose sweeper began to watch less than that ago); once a node has been
// gone that long, the sweep reads the queue and fails its work.
func TestFailStrandedReadsNoQueueWhileNodesLive(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func() handle) {
		ctx := context.Background()
		clk := clock.NewFake(t0)
		const grace = time.Minute
		deadline := cluster.DefaultNodeTimeout + grace
		h := open()
		reg := &cluster.Registry{Store: h.st, Clock: clk}
		var nodes []cluster.Node
		for _, name := range []string{"a", "b"} {
			n, err := reg.Register(ctx, cluster.Node{Name: name, Incarnation: name + "-1"})
			if err != nil {
				t.Fatal(err)
			}
			nodes = append(nodes, n)
		}
		counting := &listCounting{Backend: h.b}
		q := job.NewQueue(h.st, clk)
		q.Backend = counting
		p := worker.NewPool(q, clk, quiet, 1)
		p.Node, p.Owner = "b", "b/1"
		var dead []error
		p.Dead = func(ctx context.Context, tk job.Task, cause error) { dead = append(dead, cause) }
		p.Handle("backup", func(ctx context.Context, tk job.Task) error { return nil })
		if err := q.Enqueue(ctx, job.Task{ID: "backup-1", Type: "backup", Node: "a"}); err != nil {
			t.Fatal(err)
		}
		watching := clk.Now()
		anyGone := func(ctx context.Context) (bool, error) { return reg.AnyGone(ctx, clk.Now(), watching, grace) }
		gone := func(ctx context.Context, tx store.Tx, tk job.Task) (error, error) {
			return reg.GoneTx(ctx, tx, tk.Node, "The disk 'd1'", clk.Now(), watching, grace)
		}
		sweep := func(want, wantLists int) {
			t.Helper()
			counting.lists = 0
			got, err := p.FailStranded(ctx, anyGone, gone, nil)
			if err != nil || got != want || counting.lists != wantLists {
				t.Fatalf("sweep at %s failed %d tasks (%v) and listed the queue %d times, want %d and %d",
					clk.Now().Sub(t0), got, err, counting.lists, want, wantLists)
			}
		}
		beat := func(n cluster.Node) {
			if _, err := reg.Beat(ctx, n, 0); err != nil {
				t.Fatal(err)
			}
		}

		// A healthy cluster for a long while: every sweep reads the
		// nodes only.
		for range 10 {
			clk.Advance(deadline / 3)
			beat(nodes[0])
			beat(nodes[1])
			sweep(0, 0)
		}
		// a stops beating: within the grace nothing is read either.
		lastA := clk.Now()
		clk.Advance(deadline - time.Second)
		beat(nodes[1])
		sweep(0, 0)
		// Past it, the sweep reads the queue and fails a's backup.
		clk.Set(lastA.Add(deadline))
		beat(nodes[1])
		sweep(1, 1)
		if len(dead) != 1 || !errors.Is(dead[0], cluster.ErrNodeUnavailable) {
			t.Fatalf("failed with %v, want one cluster.ErrNodeUnavailable", dead)
		}
	})
}
