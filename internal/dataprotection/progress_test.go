package dataprotection_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/resource"
)

// TestBackupJobShowsSnapshotProgress: while a backup's snapshot is taken,
// the job records every 2 s (on the fake clock) how far the snapshot has
// got: the Take Snapshot subtask's share of the blocks read, and the job's
// progress from 10% to 89% with it. An unknown progress (an error, none
// running) changes nothing; once the snapshot is committed the job moves
// on to 90% and completes with the subtask at 100%.
func TestBackupJobShowsSnapshotProgress(t *testing.T) {
	e := newEnv(t, t0)
	s := e.standard(true)
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))

	type ask struct {
		snap   resource.ID
		answer chan progressAnswer
	}
	asks := make(chan ask)
	e.disks.progress = func(snap resource.ID) progressAnswer {
		a := ask{snap, make(chan progressAnswer)}
		asks <- a
		return <-a.answer
	}
	started, release := make(chan struct{}), make(chan struct{})
	e.disks.block = func(ctx context.Context) error {
		close(started)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	jobID, err := e.backupNow(s.bi, "BackupHourly", "Default")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.pool.RunOnce(e.ctx)
		done <- err
	}()
	<-started

	state := func() (progress, subtask string) {
		t.Helper()
		j := e.job(jobID)
		if j.Properties.Status != "InProgress" {
			t.Fatalf("job status %s while the snapshot is taken", j.Properties.Status)
		}
		ei := j.Properties.ExtendedInfo
		for _, st := range ei.SubTasks {
			if st.TaskID == 1 {
				subtask = st.TaskProgress
			}
		}
		return ei.AdditionalDetails["Progress"], subtask
	}
	// next moves the fake clock until the job's watcher asks for the
	// snapshot's progress, and answers it with a.
	next := func(a progressAnswer) {
		t.Helper()
		for waited := time.Duration(0); ; {
			select {
			case q := <-asks:
				if !q.snap.IsType("Microsoft.Compute/snapshots") || !q.snap.GroupScope().Equal(s.snapRG) {
					t.Errorf("progress asked of %s, not of a snapshot in %s", q.snap, s.snapRG)
				}
				q.answer <- a
				return
			case <-time.After(time.Millisecond):
				if waited > time.Minute {
					t.Fatalf("no progress asked in %v of the job's clock", waited)
				}
				e.clk.Advance(time.Second)
				waited += time.Second
			}
		}
	}
	check := func(wantJob, wantSub string) {
		t.Helper()
		// The record is written after the answer; the next ask comes
		// after it, so ask once more (answering "unknown") to be sure it
		// has landed.
		next(progressAnswer{Err: errors.New("not known")})
		if p, st := state(); p != wantJob || st != wantSub {
			t.Fatalf("job progress %q, Take Snapshot %q; want %q, %q", p, st, wantJob, wantSub)
		}
	}

	if p, st := state(); p != "10%" || st != "" {
		t.Fatalf("at the snapshot's start: job progress %q, Take Snapshot %q; want 10%%, none", p, st)
	}
	next(progressAnswer{SnapshotProgress: dataprotection.SnapshotProgress{Running: true, Done: 50, Total: 200}})
	check("29%", "25%")
	next(progressAnswer{SnapshotProgress: dataprotection.SnapshotProgress{Running: false}})
	check("29%", "25%")
	next(progressAnswer{SnapshotProgress: dataprotection.SnapshotProgress{Running: true, Done: 200, Total: 200}})
	check("89%", "100%")

	close(release)
	// The watcher may be asking right now: answer until the job runs on.
	for finished := false; !finished; {
		select {
		case q := <-asks:
			q.answer <- progressAnswer{Err: errors.New("not known")}
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished = true
		}
	}
	j := e.job(jobID)
	if j.Properties.Status != "Completed" {
		t.Fatalf("job after the snapshot: %+v", j.Properties)
	}
	for _, st := range j.Properties.ExtendedInfo.SubTasks {
		if st.TaskID == 1 && (st.TaskStatus != "Completed" || st.TaskProgress != "100%") {
			t.Fatalf("Take Snapshot at the end: %+v", st)
		}
	}
}
