package dataprotection_test

import (
	"context"
	"testing"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/job"
)

// TestBackupRightAfterCompleted: an on-demand backup requested the moment
// the previous one's job shows Completed — between the worker's handler
// and anything the worker does after it — is accepted, not refused as a
// backup already running: the job's end and its task's ack are one
// transaction, so no moment shows the job ended with its task still
// queued. (With the ack in a transaction of its own, the request met the
// previous task and got 409.)
func TestBackupRightAfterCompleted(t *testing.T) {
	e := newEnv(t, time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC))
	s := e.standard(true)
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
	first, err := e.backupNow(s.bi, "BackupHourly", "Default")
	if err != nil {
		t.Fatal(err)
	}
	var second string
	var secondErr error
	e.pool.Handle(dataprotection.TaskBackup, func(ctx context.Context, tk job.Task) error {
		if err := e.svc.ExecBackup(ctx, tk); err != nil || second != "" {
			return err
		}
		if j := e.job(first); j.Properties.Status != string(job.Completed) {
			t.Fatalf("after the backup ran, its job is %s", j.Properties.Status)
		}
		second, secondErr = e.backupNow(s.bi, "BackupHourly", "Default")
		if secondErr != nil {
			second = "refused"
		}
		return nil
	})
	e.drain()
	if secondErr != nil {
		t.Fatalf("a backup requested once the previous one showed Completed: %v", secondErr)
	}
	if j := e.job(second); j.Properties.Status != string(job.Completed) {
		t.Fatalf("the second backup's job: %s", j.Properties.Status)
	}
}
