package dataprotection_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/rbac"
	"coffer/internal/resource"
)

// TestCancelJob: a backup waiting for a worker is cancelled (its task
// leaves the queue, the job ends Cancelled and no recovery point is made);
// one that has ended is refused with 409.
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

	// A job that does not exist is a 404.
	if _, err := e.svc.CancelJob(e.ctx, s.vault, "00000000-0000-0000-0000-000000000000", by); !resource.IsNotFound(err) {
		t.Fatalf("cancel a missing job: %v", err)
	}
}

// runTask leases the next task and runs it in the background with a
// context that cancel cancels with a cause, as the worker pool's watch
// does; done receives the handler's result.
func (e *env) runTask(exec func(context.Context, job.Task) error) (cancel context.CancelCauseFunc, done <-chan error) {
	e.t.Helper()
	task, ok, err := e.queue.Lease(e.ctx, "worker-1")
	if err != nil || !ok {
		e.t.Fatalf("lease: %v %v", ok, err)
	}
	ctx, cancel := context.WithCancelCause(e.ctx)
	ch := make(chan error, 1)
	go func() {
		err := exec(ctx, task)
		if err == nil { // as the worker does: a job's end acks its task itself
			if err = e.queue.Ack(e.ctx, task); errors.Is(err, job.ErrNoTask) {
				err = nil
			}
		}
		ch <- err
	}()
	return cancel, ch
}

// TestCancelRunningBackup: a backup that a worker runs is cancelled. The
// request marks the job (still InProgress, with who cancelled it, and no
// longer Cancellable) and its task; the worker, told through its
// context, or finding the mark when it would commit, deletes the
// snapshot it made and ends the job Cancelled: no recovery point, no
// snapshot, and the instance keeps its protection state.
func TestCancelRunningBackup(t *testing.T) {
	for _, how := range []string{"context", "commit"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t, t0)
			s := e.standard(true)
			e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
			by := dataprotection.Caller{Name: "alice", Type: "User"}
			j, err := e.backupNow(s.bi, "BackupHourly", "Default")
			if err != nil {
				t.Fatal(err)
			}
			inSnapshot, release := make(chan struct{}), make(chan struct{})
			e.disks.after = func(ctx context.Context) error { // the snapshot is made, not yet a recovery point
				close(inSnapshot)
				select {
				case <-ctx.Done():
					return context.Cause(ctx)
				case <-release:
					return nil
				}
			}
			cancel, done := e.runTask(e.svc.ExecBackup)
			<-inSnapshot
			got, err := e.svc.CancelJob(e.ctx, s.vault, resource.MustParse(j).Name(), by)
			if err != nil {
				t.Fatalf("cancel a running backup: %v", err)
			}
			if got.Properties.Status != "InProgress" || got.Properties.ExtendedInfo.AdditionalDetails["CancelReason"] != "Cancelled by alice." ||
				slices.Contains(got.Properties.SupportedActions, "Cancellable") {
				t.Fatalf("job after the cancel request: %+v", got.Properties)
			}
			if _, err := e.svc.CancelJob(e.ctx, s.vault, got.Name, by); code(err) != dataprotection.CodeJobNotCancellable {
				t.Fatalf("cancel twice: %v", err)
			}
			if how == "context" {
				cancel(job.ErrCanceled)
			} else {
				close(release)
			}
			if err := <-done; err != nil {
				t.Fatalf("the cancelled backup's handler: %v", err)
			}
			if j := e.job(j); j.Properties.Status != "Cancelled" || j.Properties.ExtendedInfo.AdditionalDetails["CancelReason"] != "Cancelled by alice." {
				t.Fatalf("cancelled job: %+v", j.Properties)
			}
			if n, snaps := len(e.rps(s.bi)), e.disks.snapshotCount(); n != 0 || snaps != 0 {
				t.Fatalf("after the cancel: %d recovery points, %d snapshots; want none", n, snaps)
			}
			if bi, err := e.svc.GetInstance(e.ctx, s.bi); err != nil || bi.Properties.CurrentProtectionState != dataprotection.StateConfigured {
				st := bi.Properties.CurrentProtectionState
				t.Fatalf("instance after a cancelled backup: %s %v", st, err)
			}
		})
	}
}

// TestCancelRunningRestore: a restore cancelled while its worker makes
// the disk deletes the disk and ends Cancelled; no restored disk is left.
func TestCancelRunningRestore(t *testing.T) {
	e := newEnv(t, t0)
	s := e.standard(true)
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
	if _, err := e.backupNow(s.bi, "BackupHourly", "Default"); err != nil {
		t.Fatal(err)
	}
	e.drain()
	rp := e.rps(s.bi)[0].Name
	target := e.group(subA, "rg-restore", "local")
	e.assign(s.principal, rbac.RoleDiskRestoreOperator, target.String())
	disk := diskID(subA, "rg-restore", "restored")
	jobID, err := e.svc.Restore(e.ctx, s.bi, dataprotection.RestoreRequest{ObjectType: "AzureBackupRecoveryPointBasedRestoreRequest",
		RecoveryPointID: rp, SourceDataStoreType: "OperationalStore", Target: &dataprotection.RestoreTarget{ObjectType: "RestoreTargetInfo",
			RecoveryOption: "FailIfExists", RestoreLocation: "local", DiskID: disk.String(), DiskLocation: "local"}})
	if err != nil {
		t.Fatal(err)
	}
	made := make(chan struct{})
	e.disks.afterRestore = func(ctx context.Context) error {
		close(made)
		<-ctx.Done()
		return context.Cause(ctx)
	}
	cancel, done := e.runTask(e.svc.ExecRestore)
	<-made
	if _, err := e.svc.CancelJob(e.ctx, s.vault, resource.MustParse(jobID).Name(), dataprotection.Caller{Name: "bob"}); err != nil {
		t.Fatalf("cancel a running restore: %v", err)
	}
	cancel(job.ErrCanceled)
	if err := <-done; err != nil {
		t.Fatalf("the cancelled restore's handler: %v", err)
	}
	if j := e.job(jobID); j.Properties.Status != "Cancelled" {
		t.Fatalf("cancelled restore: %+v", j.Properties)
	}
	if h := e.disks.hash(disk); h != "missing" {
		t.Fatalf("the cancelled restore's disk is still there (%s)", h)
	}
}
