package dataprotection_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/store/sqlite"
)

// TestRetentionAfterDeadRetentionJob: a retention job that stops being
// retried (its deliveries used up by server stops) fails, and the expired
// points it left are deleted by a later retention run: they must not stay
// listed past their expiry forever.
func TestRetentionAfterDeadRetentionJob(t *testing.T) {
	e := newEnv(t, t0)
	s := e.standard(true)
	pol := e.policy(s.vault, "Hourly", mustBuild(t, dataprotection.DiskPolicyOptions{Hours: 1, Retention: "4h"}))
	e.protect(s.bi, biJSON(s.disk, "local", pol, s.snapRG.String()))
	for range 2 {
		if _, err := e.backupNow(s.bi, "BackupIntervals", "Default"); err != nil {
			t.Fatal(err)
		}
		e.drain()
		e.clk.Advance(time.Minute)
	}
	if n := len(e.rps(s.bi)); n != 2 {
		t.Fatalf("%d recovery points, want 2", n)
	}
	// Suspended: no scheduled backups; every point but the latest expires.
	if _, err := e.svc.SetProtection(e.ctx, s.bi, dataprotection.SuspendBackups, dataprotection.ChangeNote{}); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(5 * time.Hour)
	if _, fired, err := e.sched.Tick(e.ctx); err != nil || len(fired.Retention) != 1 {
		t.Fatalf("tick after expiry: retention %v, %v", fired.Retention, err)
	}
	// Every delivery of the retention task is cut short by a stop.
	for i := 0; i < 3; i++ {
		if _, ok, err := e.queue.Lease(e.ctx, "dead-process"); err != nil || !ok {
			t.Fatalf("lease %d: %v %v", i, ok, err)
		}
		if err := e.pool.Recover(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.RecoverJobs(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.drain()
	jobs, err := e.svc.ListJobs(e.ctx, s.vault, job.Filter{Operation: job.OpRetention})
	if err != nil || len(jobs) != 1 || jobs[0].Properties.Status != "Failed" {
		t.Fatalf("retention jobs after three stops: %+v, %v", jobs, err)
	}
	// The scheduler plans the next run within the hour, and runs it then.
	e.clk.Advance(time.Minute)
	next, _, err := e.sched.Tick(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	ended, err := time.Parse(time.RFC3339, jobs[0].Properties.EndTime)
	if err != nil {
		t.Fatal(err)
	}
	if next.IsZero() || next.After(ended.Add(time.Hour)) {
		t.Fatalf("after the failed retention run the scheduler next wakes at %v, want by %v", next, ended.Add(time.Hour))
	}
	e.clk.Set(next)
	if _, _, err := e.sched.Tick(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.drain()
	rps := e.rps(s.bi)
	if len(rps) != 1 {
		t.Errorf("%d recovery points, want 1 (the latest, kept while backups are suspended)", len(rps))
	}
	for _, rp := range rps[:len(rps)-1] {
		exp, _ := time.Parse(time.RFC3339, rp.Properties.ExpiryTime)
		if !exp.After(e.clk.Now()) {
			t.Errorf("recovery point %s expired at %s is still listed at %s, after its retention job failed", rp.Name, exp, e.clk.Now())
		}
	}
}

// TestRetentionInterruptedAfterSnapshotDelete: the process stops while
// retention deletes an expired point, after its snapshot is gone and
// before its record is. The point is never listed without its snapshot,
// and after the restart the retention run finishes.
func TestRetentionInterruptedAfterSnapshotDelete(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, st, clock.NewFake(t0), nil)
	s := e.standard(true)
	pol := e.policy(s.vault, "Hourly", mustBuild(t, dataprotection.DiskPolicyOptions{Hours: 1, Retention: "4h"}))
	e.protect(s.bi, biJSON(s.disk, "local", pol, s.snapRG.String()))
	for range 2 {
		if _, err := e.backupNow(s.bi, "BackupIntervals", "Default"); err != nil {
			t.Fatal(err)
		}
		e.drain()
		e.clk.Advance(time.Minute)
	}
	if _, err := e.svc.SetProtection(e.ctx, s.bi, dataprotection.SuspendBackups, dataprotection.ChangeNote{}); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(5 * time.Hour)
	if _, fired, err := e.sched.Tick(e.ctx); err != nil || len(fired.Retention) != 1 {
		t.Fatalf("tick after expiry: retention %v, %v", fired.Retention, err)
	}
	deleted := make(chan struct{})
	e.disks.afterDelete = func(ctx context.Context) error {
		close(deleted)
		<-ctx.Done()
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.pool.RunOnce(ctx)
		done <- err
	}()
	<-deleted
	cancel() // the process dies
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted worker: %v", err)
	}
	listed := func(e *env) {
		t.Helper()
		for _, rp := range e.rps(s.bi) {
			for _, ds := range rp.Properties.RecoveryPointDataStoresDetails {
				if !e.disks.hasSnapshot(ds.ID) {
					t.Errorf("recovery point %s is listed, but its snapshot %s is gone", rp.Name, ds.ID)
				}
			}
		}
	}
	listed(e)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st2, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	e.disks.afterDelete = nil
	e2 := newEnvOn(t, st2, e.clk, e.disks)
	listed(e2)
	if err := e2.pool.Recover(e2.ctx); err != nil {
		t.Fatal(err)
	}
	if err := e2.svc.Recover(e2.ctx); err != nil {
		t.Fatal(err)
	}
	e2.drain()
	if n := len(e2.rps(s.bi)); n != 1 {
		t.Fatalf("%d recovery points after the restart, want 1 (the latest)", n)
	}
	jobs, err := e2.svc.ListJobs(e2.ctx, s.vault, job.Filter{Operation: job.OpRetention})
	if err != nil || len(jobs) != 1 || jobs[0].Properties.Status != "Completed" {
		t.Fatalf("retention job after the restart: %+v, %v", jobs, err)
	}
}
