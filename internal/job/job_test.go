package job_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/job"
	"coffer/internal/store"
	"coffer/internal/store/memstore"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestQueue(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	q := job.NewQueue(memstore.New(), clk)
	q.Backoff = func(a int) time.Duration { return time.Duration(a) * time.Minute }

	for _, tk := range []job.Task{{ID: "a", Type: "x", Target: "disk1"}, {ID: "b", Type: "x", Target: "disk1"}, {ID: "c", Type: "x", Target: "disk2"}} {
		if err := q.Enqueue(ctx, tk); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
	}
	if err := q.Enqueue(ctx, job.Task{ID: "a", Type: "x"}); !errors.Is(err, job.ErrDuplicate) {
		t.Fatalf("duplicate: %v", err)
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
	c := lease("c") // b waits: disk1 is busy
	lease("")
	if err := q.Ack(ctx, a); err != nil {
		t.Fatal(err)
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
	}
	// A lease expires and the task is delivered again; the old owner's ack
	// fails.
	clk.Advance(q.LeaseDuration)
	c2 := lease("c")
	if err := q.Ack(ctx, c); !errors.Is(err, job.ErrLeaseLost) {
		t.Fatalf("ack after the lease moved: %v", err)
	}
	// Cancel: a leased task is marked and dropped at its next nack.
	if removed, err := q.Cancel(ctx, "c"); err != nil || removed {
		t.Fatalf("cancel leased: %v %v", removed, err)
	}
	if dead, err := q.Nack(ctx, c2, nil); err != nil || !dead {
		t.Fatalf("nack of a cancelled task: %v %v", dead, err)
	}
	if err := q.Enqueue(ctx, job.Task{ID: "d", Type: "x", Target: "disk1"}); err != nil {
		t.Fatal(err)
	}
	if removed, err := q.Cancel(ctx, "d"); err != nil || !removed {
		t.Fatalf("cancel pending: %v %v", removed, err)
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
	if n, dead, err := q.Recover(ctx); err != nil || n != 0 || len(dead) != 1 {
		t.Fatalf("recover past the limit: %d %v %v", n, dead, err)
	}
}

func TestRecords(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	vault := "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/v"
	recs := []job.Record{
		{ID: "1", VaultID: vault, Operation: job.OpBackup, Status: job.Completed, StartTime: t0, EndTime: t0.Add(time.Minute), IsUserTriggered: true},
		{ID: "2", VaultID: vault, Operation: job.OpBackup, Status: job.Failed, StartTime: t0.Add(time.Hour), EndTime: t0.Add(2 * time.Hour)},
		{ID: "3", VaultID: vault, Operation: job.OpRestore, Status: job.InProgress, StartTime: t0.Add(40 * 24 * time.Hour)},
	}
	if err := st.Update(ctx, func(tx store.Tx) error {
		for _, r := range recs {
			if err := job.Put(ctx, tx, r, store.PutOptions{}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	list := func(f job.Filter) (ids string) {
		st.View(ctx, func(tx store.Tx) error {
			rs, err := job.List(ctx, tx, vault, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				ids += r.ID
			}
			return nil
		})
		return ids
	}
	for _, c := range []struct {
		f    job.Filter
		want string
	}{
		{job.Filter{}, "321"},
		{job.Filter{Status: "failed"}, "2"},
		{job.Filter{Operation: "OnDemandBackup"}, "1"},
		{job.Filter{Operation: "ScheduledBackup"}, "2"},
		{job.Filter{Operation: "Restore"}, "3"},
		{job.Filter{From: t0.Add(time.Minute), To: t0.Add(24 * time.Hour)}, "2"},
	} {
		if got := list(c.f); got != c.want {
			t.Errorf("filter %+v: %q, want %q", c.f, got, c.want)
		}
	}
	// Kept at least 30 days.
	if n, err := job.Cleanup(ctx, st, t0.Add(30*24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("cleanup at 30 days: %d %v", n, err)
	}
	if n, err := job.Cleanup(ctx, st, t0.Add(40*24*time.Hour)); err != nil || n != 2 || list(job.Filter{}) != "3" {
		t.Fatalf("cleanup at 40 days: %d %v", n, err)
	}
	for d, want := range map[time.Duration]string{0: "PT0S", 6*time.Minute + 5740989600: "PT6M5.7409896S", 2 * time.Hour: "PT2H"} {
		if got := job.Duration(d); got != want {
			t.Errorf("Duration(%v) = %s, want %s", d, got, want)
		}
	}
	w := recs[0].ToResource(t0).Properties
	if w.Duration != "PT1M" || w.VaultName != "v" || w.SubscriptionID != "s" || w.Status != "Completed" {
		t.Fatalf("wire: %+v", w)
	}
}
