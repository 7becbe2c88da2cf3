package dataprotection_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/store"
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

// onNext is a store that runs fn once, right after its first View or
// right before its first Update: where another node's write can fall
// between the reads of a recovery.
type onNext struct {
	store.Store
	once sync.Once
	fn   func()
}

func (o *onNext) View(ctx context.Context, fn func(tx store.Tx) error) error {
	err := o.Store.View(ctx, fn)
	o.once.Do(o.fn)
	return err
}

func (o *onNext) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	o.once.Do(o.fn)
	return o.Store.Update(ctx, fn)
}

// TestRecoverJobsSparesOtherNodesJobs: a node that starts while another
// node queues a backup does not fail that backup's job as one without a
// task: RecoverJobs reads the jobs and the tasks in one transaction. (When
// it read the tasks first and the jobs in a later transaction, a backup
// queued in between was failed with JobInterrupted.)
func TestRecoverJobsSparesOtherNodesJobs(t *testing.T) {
	e := newEnv(t, time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC))
	s := e.standard(true)
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
	var queued string
	var qerr error
	st := &onNext{Store: e.st, fn: func() { queued, qerr = e.backupNow(s.bi, "BackupHourly", "Default") }}
	starting := *e.svc
	starting.Store, starting.Queue = st, job.NewQueue(st, e.clk)
	if err := starting.RecoverJobs(e.ctx); err != nil {
		t.Fatal(err)
	}
	if qerr != nil {
		t.Fatal(qerr)
	}
	if j := e.job(queued); j.Properties.Status != string(job.InProgress) {
		t.Fatalf("the other node's backup after this node's recovery: %s", j.Properties.Status)
	}
	e.drain()
	if j := e.job(queued); j.Properties.Status != string(job.Completed) {
		t.Fatalf("the other node's backup: %s", j.Properties.Status)
	}
}

// TestPausedBackupWorkerEndsNothing: a worker pauses in the middle of a
// backup, past its lease; another worker takes the task over and
// completes the backup; the paused one, going on, ends nothing — its end
// of the job fails with job.ErrLeaseLost — and the backup has one
// recovery point.
func TestPausedBackupWorkerEndsNothing(t *testing.T) {
	e := newEnv(t, time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC))
	s := e.standard(true)
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
	jobID, err := e.backupNow(s.bi, "BackupHourly", "Default")
	if err != nil {
		t.Fatal(err)
	}
	paused, ok, err := e.queue.Lease(e.ctx, "node-a/1")
	if err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	e.disks.after = func(ctx context.Context) error {
		e.disks.after = nil
		// node-a pauses with its snapshot taken; node-b takes over.
		e.clk.Advance(e.queue.LeaseDuration)
		e.drain()
		return nil
	}
	if err := e.svc.ExecBackup(e.ctx, paused); !errors.Is(err, job.ErrLeaseLost) {
		t.Fatalf("the paused worker's backup: %v, want job.ErrLeaseLost", err)
	}
	if j := e.job(jobID); j.Properties.Status != string(job.Completed) || len(e.rps(s.bi)) != 1 {
		t.Fatalf("after both: job %s, %d recovery points", j.Properties.Status, len(e.rps(s.bi)))
	}
}
