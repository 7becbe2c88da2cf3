package dataprotection

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"coffer/internal/job"
	"coffer/internal/store"
)

// expiredPoints returns the recovery points of an instance that retention
// deletes at now (rps oldest first): none while protection is stopped
// (kept forever) or the instance is being deleted; while backups are
// suspended, every expired point but the latest, which is kept forever;
// otherwise every point whose expiry has passed. Each point keeps the
// expiry it was given when it was taken, whatever the policy says now.
func expiredPoints(inst instanceRecord, rps []rpRecord, now time.Time) []rpRecord {
	if inst.Deleting || inst.state() == StateStopped {
		return nil
	}
	keep := -1
	if inst.state() == StateSuspended && len(rps) > 0 {
		keep = len(rps) - 1
	}
	var out []rpRecord
	for i, rp := range rps {
		if i != keep && !rp.Expiry.After(now) {
			out = append(out, rp)
		}
	}
	return out
}

// nextExpiry returns when the next point of an instance expires (zero:
// never), with the same rules as expiredPoints.
func nextExpiry(inst instanceRecord, rps []rpRecord, now time.Time) time.Time {
	if inst.Deleting || inst.state() == StateStopped {
		return time.Time{}
	}
	var next time.Time
	for i, rp := range rps {
		if inst.state() == StateSuspended && i == len(rps)-1 {
			continue
		}
		if rp.Expiry.After(now) && (next.IsZero() || rp.Expiry.Before(next)) {
			next = rp.Expiry
		}
	}
	return next
}

// retentionRetry is how long after a retention run that ended with its
// points still there (it failed, or server stops interrupted it past its
// delivery limit) the next run starts.
const retentionRetry = time.Hour

// retentionJobID is the ID of run n of the retention that deletes an
// instance's expired points from first on: derived from them, so that
// re-planning is idempotent.
func retentionJobID(instanceID, first string, n int) string {
	if n == 0 {
		return derivedGUID(strings.ToLower(instanceID), "retention", first)
	}
	return derivedGUID(strings.ToLower(instanceID), "retention", first, strconv.Itoa(n))
}

// enqueueRetention queues a retention job for an instance with expired
// points, unless one is queued or running, or the last run for the same
// first point ended less than retentionRetry ago; it then returns when the
// next run is due.
func (s *Service) enqueueRetention(ctx context.Context, tx store.Tx, v VaultResource, r instanceRecord, expired []rpRecord, now time.Time) (retry time.Time, err error) {
	busy, err := s.Queue.ActiveTx(ctx, tx, strings.ToLower(r.DiskID), TaskRetention)
	if err != nil || busy {
		return time.Time{}, err
	}
	var id string
	for n := 0; ; n++ {
		id = retentionJobID(r.Resource.ID, expired[0].Name, n)
		prev, err := job.Get(ctx, tx, v.ID, id)
		if errors.Is(err, job.ErrNotFound) {
			break
		}
		if err != nil {
			return time.Time{}, err
		}
		if !prev.Status.IsTerminal() {
			return time.Time{}, nil
		}
		if at := prev.EndTime.Add(retentionRetry); now.Before(at) {
			return at, nil
		}
	}
	rec := s.newJobID(v, job.OpRetention, job.CategoryRetention, false, id)
	s.fillInstance(&rec, r)
	rec.SubTasks = []job.SubTask{{TaskID: 1, TaskName: "Delete expired recovery points", TaskStatus: "NotStarted"}}
	if err := job.Put(ctx, tx, rec, store.PutOptions{CreateOnly: true}); err != nil {
		return time.Time{}, err
	}
	payload, _ := json.Marshal(taskPayload{InstanceID: r.Resource.ID, VaultID: v.ID, JobID: id})
	err = s.Queue.EnqueueTx(ctx, tx, job.Task{ID: id, Type: TaskRetention, Target: strings.ToLower(r.DiskID), Payload: payload})
	if errors.Is(err, job.ErrDuplicate) {
		return time.Time{}, nil
	}
	return time.Time{}, err
}

// deletePoints deletes recovery points and their snapshots as the vault's
// identity. Each point is marked Deleting (no longer listed) before its
// snapshot goes, and its record goes once the snapshot is gone, so a stop
// in between never leaves a listed point without its snapshot; the next
// run finishes it. It returns how many it deleted and the first error.
func (s *Service) deletePoints(ctx context.Context, run jobRun, rps []rpRecord) (int, error) {
	p, ok := principalOf(run.vault)
	if !ok {
		return 0, userError(CodeVaultIdentityMissing, "The backup vault %s has no managed identity.", run.vault.Name)
	}
	a := actor{s: s, as: p}
	n := 0
	for _, rp := range rps {
		snap := parseOrZero(rp.SnapshotID)
		var rgMissing bool
		if err := s.Store.View(ctx, func(tx store.Tx) error {
			_, err := s.Groups.GetGroup(ctx, tx, snap.GroupScope())
			rgMissing = isNotFound(err)
			if rgMissing {
				return nil
			}
			return err
		}); err != nil {
			return n, err
		}
		if rgMissing {
			return n, errSnapshotRGPermissions(snap.GroupScope().String())
		}
		if err := s.markDeleting(ctx, rp, true); err != nil {
			return n, err
		}
		if err := a.deleteSnapshot(ctx, snap); err != nil && !isNotFound(err) {
			if ctx.Err() != nil {
				return n, err // stopping: the task is delivered again and finishes it
			}
			// The snapshot is still there: list the point again.
			if merr := s.markDeleting(ctx, rp, false); merr != nil {
				s.logger().Warn("list again a recovery point whose deletion failed", "recoveryPoint", rp.Name, "err", merr)
			}
			if e := diskError(err, run.inst.DiskID, snap.GroupScope().String()); e != nil {
				return n, e
			}
			return n, err
		}
		if err := s.Store.Update(ctx, func(tx store.Tx) error {
			err := tx.Delete(ctx, kindRecoveryPoint, rp.key())
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// markDeleting sets or clears a recovery point's Deleting mark.
func (s *Service) markDeleting(ctx context.Context, rp rpRecord, deleting bool) error {
	return s.Store.Update(ctx, func(tx store.Tx) error {
		var cur rpRecord
		err := getJSON(ctx, tx, kindRecoveryPoint, rp.key(), &cur)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil || cur.Deleting == deleting {
			return err
		}
		cur.Deleting = deleting
		return putJSON(ctx, tx, kindRecoveryPoint, cur.key(), cur)
	})
}

// ExecRetention deletes an instance's expired recovery points and their
// snapshots.
func (s *Service) ExecRetention(ctx context.Context, t job.Task) error {
	run, err := s.loadRun(ctx, t)
	if errors.Is(err, job.ErrNotFound) {
		return nil
	}
	if errors.Is(err, store.ErrNotFound) {
		return s.cancelJob(ctx, run, "The backup instance no longer exists.")
	}
	if err != nil {
		return err
	}
	if run.rec.Status.IsTerminal() {
		return nil
	}
	s.progress(ctx, run, 10, 1, string(job.InProgress))
	var expired []rpRecord
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		rps, err := listRPs(ctx, tx, run.inst.Resource.ID)
		expired = expiredPoints(run.inst, rps, s.Clock.Now())
		return err
	}); err != nil {
		return err
	}
	n, derr := s.deletePoints(ctx, run, expired)
	if derr != nil && !isUserError(derr) {
		return derr
	}
	return s.Store.Update(ctx, func(tx store.Tx) error {
		return s.endJob(ctx, tx, run, s.Clock.Now(), derr, func(r *job.Record) {
			r.Details = withDetail(r.Details, "DeletedRecoveryPoints", itoa(n))
		})
	})
}

func isUserError(err error) bool {
	if _, denied := deniedAction(err); denied {
		return true
	}
	e := asResourceError(err)
	return e != nil
}

// ExecDeleteInstance deletes a backup instance's recovery points and their
// snapshots, then the instance. If a snapshot cannot be deleted (roles
// revoked, snapshot group deleted) the job fails and the instance is usable
// again.
func (s *Service) ExecDeleteInstance(ctx context.Context, t job.Task) error {
	run, err := s.loadRun(ctx, t)
	if errors.Is(err, job.ErrNotFound) {
		return nil
	}
	if errors.Is(err, store.ErrNotFound) {
		return s.Store.Update(ctx, func(tx store.Tx) error {
			return s.endJob(ctx, tx, run, s.Clock.Now(), nil, nil)
		})
	}
	if err != nil {
		return err
	}
	if run.rec.Status.IsTerminal() {
		return nil
	}
	var rps []rpRecord
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		rps, err = listRPs(ctx, tx, run.inst.Resource.ID)
		return err
	}); err != nil {
		return err
	}
	n, derr := s.deletePoints(ctx, run, rps)
	if derr != nil && !isUserError(derr) {
		return derr
	}
	err = s.Store.Update(ctx, func(tx store.Tx) error {
		if derr != nil {
			if err := s.undoDeleting(ctx, tx, run.inst.Resource.ID); err != nil {
				return err
			}
		} else if err := tx.Delete(ctx, kindInstance, strings.ToLower(run.inst.Resource.ID)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return s.endJob(ctx, tx, run, s.Clock.Now(), derr, func(r *job.Record) {
			r.Details = withDetail(r.Details, "DeletedRecoveryPoints", itoa(n))
		})
	})
	if err == nil {
		s.refresh()
	}
	return err
}

// undoDeleting makes an instance whose deletion failed usable again.
func (s *Service) undoDeleting(ctx context.Context, tx store.Tx, instanceID string) error {
	var r instanceRecord
	if err := getJSON(ctx, tx, kindInstance, strings.ToLower(instanceID), &r); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}
	r.Deleting = false
	r.Resource.Properties.ProvisioningState = "Failed"
	return s.putInstance(ctx, tx, r)
}
