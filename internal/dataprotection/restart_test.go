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
	"coffer/internal/rbac"
	"coffer/internal/store"
	"coffer/internal/store/sqlite"
)

// TestRestartDuringBackup stops the process in the middle of a backup job
// (on SQLite, as the server runs) at two moments: while the snapshot is
// being taken, and after the snapshot committed but before the recovery
// point was written. No recovery point is listed while the job runs; after
// the restart the job is resumed and completes with exactly one recovery
// point and one snapshot. A job interrupted more often than its delivery
// limit, and a validation job left InProgress, are failed cleanly.
func TestRestartDuringBackup(t *testing.T) {
	for _, moment := range []string{"during snapshot", "after snapshot"} {
		t.Run(moment, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "meta.db")
			open := func() store.Store {
				st, err := sqlite.Open(context.Background(), path)
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
			st := open()
			e := newEnvOn(t, st, clock.NewFake(t0), nil)
			s := e.standard(true)
			e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))

			started := make(chan struct{})
			hang := func(ctx context.Context) error {
				close(started)
				<-ctx.Done()
				return ctx.Err()
			}
			if moment == "during snapshot" {
				e.disks.block = hang
			} else {
				e.disks.after = hang
			}
			jobID, err := e.backupNow(s.bi, "BackupHourly", "Default")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := e.pool.RunOnce(ctx)
				done <- err
			}()
			<-started
			if j := e.job(jobID); j.Properties.Status != "InProgress" {
				t.Fatalf("job while running: %s", j.Properties.Status)
			}
			if rps := e.rps(s.bi); len(rps) != 0 {
				t.Fatalf("%d recovery points listed while the backup runs", len(rps))
			}
			cancel() // the process dies
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted worker: %v", err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}

			// A new process on the same store and disks.
			disks := e.disks
			disks.block, disks.after = nil, nil
			e2 := newEnvOn(t, open(), e.clk, disks)
			defer e2.st.Close()
			if err := e2.pool.Recover(e2.ctx); err != nil {
				t.Fatal(err)
			}
			if err := e2.svc.RecoverJobs(e2.ctx); err != nil {
				t.Fatal(err)
			}
			e2.drain()
			j := e2.job(jobID)
			if j.Properties.Status != "Completed" {
				t.Fatalf("job after restart: %+v", j.Properties)
			}
			if rps := e2.rps(s.bi); len(rps) != 1 || disks.snapshotCount() != 1 {
				t.Fatalf("%d recovery points, %d snapshots after restart", len(rps), disks.snapshotCount())
			}
		})
	}

	t.Run("delivery limit and orphans", func(t *testing.T) {
		e := newEnv(t, t0)
		s := e.standard(true)
		e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
		jobID, err := e.backupNow(s.bi, "BackupHourly", "Default")
		if err != nil {
			t.Fatal(err)
		}
		// Three deliveries, each cut short by a stop.
		for i := 0; i < 3; i++ {
			if _, ok, err := e.queue.Lease(e.ctx, "dead-process"); err != nil || !ok {
				t.Fatalf("lease %d: %v %v", i, ok, err)
			}
			if err := e.pool.Recover(e.ctx); err != nil {
				t.Fatal(err)
			}
		}
		// A validation job a stopped process left InProgress.
		vid := s.vault.String()
		e.update(func(tx store.Tx) error {
			return job.Put(e.ctx, tx, job.Record{ID: "11111111-2222-3333-4444-555555555555", VaultID: vid, Operation: job.OpValidateForBackup,
				OperationCategory: job.CategoryValidation, Status: job.InProgress, StartTime: t0}, store.PutOptions{})
		})
		if err := e.svc.RecoverJobs(e.ctx); err != nil {
			t.Fatal(err)
		}
		e.drain()
		if j := e.job(jobID); j.Properties.Status != "Failed" || j.Properties.ErrorDetails[0].Code != "InternalError" {
			t.Fatalf("job past its delivery limit: %+v", j.Properties)
		}
		if j := e.job(vid + "/backupJobs/11111111-2222-3333-4444-555555555555"); j.Properties.Status != "Failed" || j.Properties.ErrorDetails[0].Code != "JobInterrupted" {
			t.Fatalf("orphan validation job: %+v", j.Properties)
		}
		if ts, _ := e.queue.Tasks(e.ctx); len(ts) != 0 {
			t.Fatalf("%d tasks left", len(ts))
		}
		_ = time.Second
	})
}

// TestDeadBackupLeavesNoSnapshot: a backup whose snapshot committed but
// whose deliveries were then used up by server stops fails, and takes its
// snapshot with it: no snapshot resource is left that no recovery point
// lists.
func TestDeadBackupLeavesNoSnapshot(t *testing.T) {
	e := newEnv(t, t0)
	s := e.standard(true)
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
	started := make(chan struct{})
	e.disks.after = func(ctx context.Context) error { // the snapshot is committed; then the process dies
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}
	jobID, err := e.backupNow(s.bi, "BackupHourly", "Default")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.pool.RunOnce(ctx)
		done <- err
	}()
	<-started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted worker: %v", err)
	}
	e.disks.after = nil
	if err := e.pool.Recover(e.ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // two more deliveries, each cut short by a stop
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
	if j := e.job(jobID); j.Properties.Status != "Failed" {
		t.Fatalf("job past its delivery limit: %+v", j.Properties)
	}
	if n, m := len(e.rps(s.bi)), e.disks.snapshotCount(); n != 0 || m != 0 {
		t.Fatalf("%d recovery points and %d snapshots after the backup failed, want none", n, m)
	}
}

// TestRestartAfterInstancePut: the process stops after a backup instance's
// PUT stored it (ConfiguringProtection, Provisioning) and before the
// operation that configures it was recorded. After the restart the
// instance is configured all the same, not left Provisioning forever.
func TestRestartAfterInstancePut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, st, clock.NewFake(t0), nil)
	s := e.standard(true)
	if _, _, err := e.svc.PutInstance(e.ctx, dataprotection.Caller{Name: "test"}, s.bi,
		dataprotection.InstanceInput{Properties: instance(biJSON(s.disk, "local", s.policy, s.snapRG.String()))}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil { // the process dies
		t.Fatal(err)
	}
	st2, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	e2 := newEnvOn(t, st2, e.clk, e.disks)
	if err := e2.svc.Recover(e2.ctx); err != nil {
		t.Fatal(err)
	}
	bi, err := e2.svc.GetInstance(e2.ctx, s.bi)
	if err != nil {
		t.Fatal(err)
	}
	if p := bi.Properties; p.ProvisioningState != "Succeeded" || p.CurrentProtectionState != dataprotection.StateConfigured {
		t.Fatalf("instance after the restart: %s, %s; want Succeeded, %s", p.ProvisioningState, p.CurrentProtectionState, dataprotection.StateConfigured)
	}
}

// TestDeadRestoreWithItsDisk: a restore whose disk was made, but whose
// deliveries were then used up by server stops before the job recorded
// it, completes: its job does not say Failed while the restored disk is
// there.
func TestDeadRestoreWithItsDisk(t *testing.T) {
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
	e.disks.afterRestore = func(ctx context.Context) error { // the disk is made; then the process dies
		close(made)
		<-ctx.Done()
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.pool.RunOnce(ctx)
		done <- err
	}()
	<-made
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted worker: %v", err)
	}
	e.disks.afterRestore = nil
	if err := e.pool.Recover(e.ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // two more deliveries, each cut short by a stop
		if _, ok, err := e.queue.Lease(e.ctx, "dead-process"); err != nil || !ok {
			t.Fatalf("lease %d: %v %v", i, ok, err)
		}
		if err := e.pool.Recover(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.drain()
	if e.disks.hash(disk) == "missing" {
		t.Fatal("the restored disk is gone")
	}
	if j := e.job(jobID); j.Properties.Status != "Completed" {
		t.Fatalf("restore job whose disk was made: %s %+v, want Completed", j.Properties.Status, j.Properties.ErrorDetails)
	}
}

// TestRestoreRunsAgainOverItsFailedDisk: a restore whose first delivery
// made the disk but was stopped while filling it, leaving the disk Failed
// (compute marks a disk whose making was cut short so), makes the disk
// again on its next delivery: the job does not say Completed over a
// Failed, empty disk. (Before, any disk at the target ended the job
// Completed: the rolling-restart test read "provisioning state Failed"
// from a restored disk whose job had completed.)
func TestRestoreRunsAgainOverItsFailedDisk(t *testing.T) {
	e := newEnv(t, t0)
	s := e.standard(true)
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
	if _, err := e.backupNow(s.bi, "BackupHourly", "Default"); err != nil {
		t.Fatal(err)
	}
	e.drain()
	want := e.disks.hash(s.disk)
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
	e.disks.afterRestore = func(ctx context.Context) error { // the disk is made, its filling cut short: Failed
		e.disks.mu.Lock()
		d := e.disks.disks[disk.Key()]
		d.info.Failed = true
		clear(d.data)
		e.disks.mu.Unlock()
		close(made)
		<-ctx.Done()
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.pool.RunOnce(ctx)
		done <- err
	}()
	<-made
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted worker: %v", err)
	}
	e.disks.afterRestore = nil
	if err := e.pool.Recover(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.drain()
	if j := e.job(jobID); j.Properties.Status != "Completed" {
		t.Fatalf("restore job: %s %+v, want Completed", j.Properties.Status, j.Properties.ErrorDetails)
	}
	if d, err := e.disks.GetDisk(e.ctx, disk); err != nil || d.Failed {
		t.Fatalf("the restored disk after its job completed: %+v %v, want it made again (not Failed)", d, err)
	}
	if got := e.disks.hash(disk); got != want {
		t.Fatalf("the restored disk reads %s, want the recovery point's %s", got, want)
	}
}

// TestRestoreWaitsForItsDiskStillBeingMade: a restore whose first delivery
// began the disk and whose node then stopped leaves the disk Updating
// until that node starts again and ends it (Failed: its volume was not
// made). The next delivery, on another node, must not complete the job
// over that disk: it waits (the task is retried), and once the disk has
// failed it makes it again, so that the job completes over a disk that
// reads as the recovery point. (Before, any disk at the target that was
// not Failed ended the job Completed, and the disk turned Failed after:
// the rolling-restart test read "provisioning state Failed" from a
// restored disk whose job had completed.)
func TestRestoreWaitsForItsDiskStillBeingMade(t *testing.T) {
	e := newEnv(t, t0)
	s := e.standard(true)
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
	if _, err := e.backupNow(s.bi, "BackupHourly", "Default"); err != nil {
		t.Fatal(err)
	}
	e.drain()
	want := e.disks.hash(s.disk)
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
	setDisk := func(fn func(*fakeDisk)) {
		e.disks.mu.Lock()
		defer e.disks.mu.Unlock()
		fn(e.disks.disks[disk.Key()])
	}
	made := make(chan struct{})
	e.disks.afterRestore = func(ctx context.Context) error { // the record is written; the node stops before the volume is made
		setDisk(func(d *fakeDisk) { d.info.Provisioning = true; clear(d.data) })
		close(made)
		<-ctx.Done()
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.pool.RunOnce(ctx)
		done <- err
	}()
	<-made
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted worker: %v", err)
	}
	e.disks.afterRestore = nil
	if err := e.pool.Recover(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.drain() // the next delivery, while the disk's node is still down
	if j := e.job(jobID); j.Properties.Status == "Completed" {
		t.Fatal("the restore job completed while its disk was still being made (and would then fail)")
	}

	// The disk's node starts again and ends the creation it left: Failed.
	setDisk(func(d *fakeDisk) { d.info.Provisioning, d.info.Failed = false, true })
	e.clk.Advance(time.Hour) // past the retry's backoff
	e.drain()
	if j := e.job(jobID); j.Properties.Status != "Completed" {
		t.Fatalf("restore job: %s %+v, want Completed", j.Properties.Status, j.Properties.ErrorDetails)
	}
	if d, err := e.disks.GetDisk(e.ctx, disk); err != nil || d.Failed || d.Provisioning {
		t.Fatalf("the restored disk after its job completed: %+v %v, want it made again", d, err)
	}
	if got := e.disks.hash(disk); got != want {
		t.Fatalf("the restored disk reads %s, want the recovery point's %s", got, want)
	}
}
