package dataprotection_test

import (
	"errors"
	"testing"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/resource"
)

// TestCancelJob: a backup waiting for a worker is cancelled (its task
// leaves the queue, the job ends Cancelled and no recovery point is made);
// one a worker has taken, and one that has ended, are refused with 409.
func TestCancelJob(t *testing.T) {
	e := newEnv(t, t0)
	s := e.standard(true)
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
	by := dataprotection.Caller{Name: "alice", Type: "User"}

	j1, err := e.backupNow(s.bi, "BackupHourly", "Default")
	if err != nil {
		t.Fatal(err)
	}
	name := resource.MustParse(j1).Name()
	got, err := e.svc.CancelJob(e.ctx, s.vault, name, by)
	if err != nil {
		t.Fatal(err)
	}
	if got.Properties.Status != "Cancelled" || got.Properties.ExtendedInfo == nil ||
		got.Properties.ExtendedInfo.AdditionalDetails["CancelReason"] != "Cancelled by alice." {
		t.Fatalf("cancelled job: %+v", got.Properties)
	}
	e.drain()
	if j := e.job(j1); j.Properties.Status != "Cancelled" || len(e.rps(s.bi)) != 0 || e.disks.snapshotCount() != 0 {
		t.Fatalf("after the workers ran: %s, %d points, %d snapshots", j.Properties.Status, len(e.rps(s.bi)), e.disks.snapshotCount())
	}
	// Ended: refused.
	if _, err := e.svc.CancelJob(e.ctx, s.vault, name, by); code(err) != dataprotection.CodeJobNotCancellable {
		t.Fatalf("cancel an ended job: %v", err)
	}

	// Taken by a worker: refused, and the backup goes on to complete.
	e.clk.Advance(time.Hour)
	j2, err := e.backupNow(s.bi, "BackupHourly", "Default")
	if err != nil {
		t.Fatal(err)
	}
	task, ok, err := e.queue.Lease(e.ctx, "worker-1")
	if err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	if _, err := e.svc.CancelJob(e.ctx, s.vault, resource.MustParse(j2).Name(), by); code(err) != dataprotection.CodeJobNotCancellable {
		t.Fatalf("cancel a running job: %v", err)
	}
	if err := e.svc.ExecBackup(e.ctx, task); err != nil {
		t.Fatal(err)
	}
	// The job's end acked its task, in the same transaction.
	if err := e.queue.Ack(e.ctx, task); !errors.Is(err, job.ErrNoTask) {
		t.Fatalf("ack after the backup ended: %v, want job.ErrNoTask", err)
	}
	if j := e.job(j2); j.Properties.Status != "Completed" {
		t.Fatalf("the running backup after a refused cancel: %s", j.Properties.Status)
	}

	// A job that does not exist is a 404.
	if _, err := e.svc.CancelJob(e.ctx, s.vault, "00000000-0000-0000-0000-000000000000", by); !resource.IsNotFound(err) {
		t.Fatalf("cancel a missing job: %v", err)
	}
}
