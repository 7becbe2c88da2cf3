package job_test

import (
	"context"
	"testing"
	"time"

	"coffer/internal/job"
	"coffer/internal/job/jobtest"
	"coffer/internal/store"
	"coffer/internal/store/memstore"
	"coffer/internal/store/storetest"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TestQueue runs the queue's conformance suite on memstore with the
// Objects backend, and again with every Update run twice (storetest.Rerun),
// as PostgreSQL may.
func TestQueue(t *testing.T) {
	for name, wrap := range map[string]func(store.Store) store.Store{
		"once":  func(s store.Store) store.Store { return s },
		"rerun": storetest.Rerun,
	} {
		t.Run(name, func(t *testing.T) {
			jobtest.Run(t, func(t *testing.T) func() jobtest.Node {
				st := wrap(memstore.New())
				return func() jobtest.Node { return jobtest.Node{Store: st, Backend: job.Objects{Store: st}} }
			})
		})
	}
}

func TestRecords(t *testing.T) {
	ctx := context.Background()
	st := storetest.Rerun(memstore.New())
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
