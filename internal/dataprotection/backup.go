package dataprotection

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"coffer/internal/clock"
	"coffer/internal/job"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// Limits of on-demand operations per backup instance per (UTC) day.
const (
	MaxAdhocBackupsPerDay = 10
	MaxRestoresPerDay     = 10
)

// BackupRequest is an on-demand backup: the policy's backup rule to run it
// as, and the retention rule (tag) that decides how long its recovery
// point is kept.
type BackupRequest struct {
	RuleName     string
	RetentionTag string
}

// AdhocBackup triggers an on-demand backup of a backup instance. It
// returns the job's resource ID.
func (s *Service) AdhocBackup(ctx context.Context, id resource.ID, in BackupRequest) (string, error) {
	if in.RuleName == "" {
		return "", userError(CodeInvalidBackupRule, "backupRuleOptions.ruleName is required: the name of the policy's backup rule.").WithTarget("backupRuleOptions.ruleName")
	}
	tag := in.RetentionTag
	if tag == "" {
		return "", userError(CodeInvalidRetentionTag, "backupRuleOptions.triggerOption.retentionTagOverride is required: the retention rule (for example Default) that decides how long the recovery point is kept.").WithTarget("backupRuleOptions.triggerOption.retentionTagOverride")
	}
	var jobID string
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		r, err := s.getInstance(ctx, tx, id)
		if err != nil {
			return err
		}
		if !r.protecting() {
			return withUserFacing(userError(CodeInvalidState, "The backup instance %s is in state %s; on-demand backups need protection to be configured and running.", id.Name(), r.state()))
		}
		v, err := s.getVault(ctx, tx, id.Parent())
		if err != nil {
			return err
		}
		pol, err := s.getPolicy(ctx, tx, parseOrZero(r.Resource.Properties.PolicyInfo.PolicyID))
		if err != nil {
			return err
		}
		br, _ := pol.Properties.BackupRule()
		if br == nil || !strings.EqualFold(br.Name, in.RuleName) {
			name := ""
			if br != nil {
				name = br.Name
			}
			return userError(CodeInvalidBackupRule, "The policy %s has no backup rule named %q; its backup rule is %q.", pol.Name, in.RuleName, name).WithTarget("backupRuleOptions.ruleName")
		}
		var tagName string
		for _, rr := range pol.Properties.RetentionRules() {
			if strings.EqualFold(rr.Name, tag) {
				tagName = rr.Name
			}
		}
		if tagName == "" {
			var names []string
			for _, rr := range pol.Properties.RetentionRules() {
				names = append(names, rr.Name)
			}
			return userError(CodeInvalidRetentionTag, "The policy %s has no retention rule %q; use one of %s.", pol.Name, tag, strings.Join(names, ", ")).WithTarget("backupRuleOptions.triggerOption.retentionTagOverride")
		}
		busy, err := s.Queue.ActiveTx(ctx, tx, strings.ToLower(r.DiskID), TaskBackup)
		if err != nil {
			return err
		}
		if busy {
			return withUserFacing(userError(CodeMaxConcurrentOperations,
				"Unable to start the operation as maximum number of allowed concurrent backups has reached."),
				"Wait until the previous running backup completes.")
		}
		now := s.Clock.Now().UTC()
		day := now.Truncate(24 * time.Hour)
		jobs, err := job.List(ctx, tx, v.ID, job.Filter{Operation: "OnDemandBackup", From: day, BackupInstanceID: r.Resource.ID})
		if err != nil {
			return err
		}
		if len(jobs) >= MaxAdhocBackupsPerDay {
			return withUserFacing(userError(CodeAdhocLimit, "At most %d on-demand backups per backup instance per day are allowed; %s already has %d today (UTC).", MaxAdhocBackupsPerDay, id.Name(), len(jobs)))
		}
		rec, err := s.enqueueBackup(ctx, tx, v, r, newID(), true, br.Name, tagName, time.Time{})
		jobID = rec.ResourceID()
		return err
	})
	if err == nil {
		s.Queue.Wake()
	}
	return jobID, err
}

// enqueueBackup writes a backup job and its task.
func (s *Service) enqueueBackup(ctx context.Context, tx store.Tx, v VaultResource, r instanceRecord, jobID string, user bool, rule, tag string, due time.Time) (job.Record, error) {
	rec := s.newJobID(v, job.OpBackup, job.CategoryBackup, user, jobID)
	s.fillInstance(&rec, r)
	rec.Details = map[string]string{"PolicyRuleName": rule}
	if tag != "" {
		rec.Details["RetentionTag"] = tag
	}
	rec.SubTasks = []job.SubTask{{TaskID: 1, TaskName: "Take Snapshot", TaskStatus: "NotStarted"}, {TaskID: 2, TaskName: "Create Recovery Point", TaskStatus: "NotStarted"}}
	if err := job.Put(ctx, tx, rec, store.PutOptions{CreateOnly: true}); err != nil {
		return rec, err
	}
	payload, _ := json.Marshal(taskPayload{InstanceID: r.Resource.ID, VaultID: v.ID, JobID: jobID, Rule: rule, Tag: tag, Due: due})
	var home string
	if s.Home != nil {
		var err error
		if home, err = s.Home(ctx, tx, r.DiskID); err != nil {
			return job.Record{}, err
		}
	}
	err := s.Queue.EnqueueTx(ctx, tx, job.Task{ID: jobID, Type: TaskBackup, Target: strings.ToLower(r.DiskID), Payload: payload, Node: home})
	return rec, err
}

// snapshotName is the name of a backup's snapshot: deterministic per job,
// so that a resumed backup finds the snapshot it may already have made.
func snapshotName(diskName, jobID string) string {
	if len(diskName) > 40 {
		diskName = diskName[:40]
	}
	return "AzureBackup_" + diskName + "_" + strings.ReplaceAll(jobID, "-", "")[:20]
}

func rpName(jobID string) string { return strings.ReplaceAll(jobID, "-", "") }

// jobRun is the context of a task's execution.
type jobRun struct {
	task  job.Task // the delivery running the job, acked with its end
	p     taskPayload
	inst  instanceRecord
	vault VaultResource
	rec   job.Record
}

func (s *Service) loadRun(ctx context.Context, t job.Task) (jobRun, error) {
	run := jobRun{task: t}
	if err := json.Unmarshal(t.Payload, &run.p); err != nil {
		return run, fmt.Errorf("decode task %s: %w", t.ID, err)
	}
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		run.rec, err = job.Get(ctx, tx, run.p.VaultID, run.p.JobID)
		if err != nil {
			return err
		}
		if err := getJSON(ctx, tx, kindVault, strings.ToLower(run.p.VaultID), &run.vault); err != nil {
			return err
		}
		return getJSON(ctx, tx, kindInstance, strings.ToLower(run.p.InstanceID), &run.inst)
	})
	return run, err
}

// progressEvery is how often a backup job records its snapshot's
// progress while the snapshot is taken.
const progressEvery = 2 * time.Second

// watchSnapshot runs take, which takes the snapshot snapID for run, and
// every progressEvery until take returns records in the job how far the
// snapshot has got: the share of its blocks read as the Take Snapshot
// subtask's progress, and the job's from 10% to 89% with it. It returns
// take's result once the last record is written, so none lands after
// the job moves on.
func (s *Service) watchSnapshot(ctx context.Context, run jobRun, snapID resource.ID, take func() (SnapshotInfo, error)) (SnapshotInfo, error) {
	last := -1
	stop := clock.Every(ctx, s.Clock, progressEvery, func() bool {
		p, err := s.Disks.SnapshotProgress(ctx, snapID)
		if err != nil || !p.Running || p.Total <= 0 {
			return true
		}
		pct := int(min(p.Done, p.Total) * 100 / p.Total)
		if pct == last {
			return true
		}
		last = pct
		s.recordProgress(ctx, run, 10+pct*79/100, func(r *job.Record) {
			for i := range r.SubTasks {
				if r.SubTasks[i].TaskID == 1 {
					r.SubTasks[i].TaskProgress = fmt.Sprintf("%d%%", pct)
				}
			}
		})
		return true
	})
	info, err := take()
	stop()
	return info, err
}

// progress records a job's progress and the status of one subtask.
func (s *Service) progress(ctx context.Context, run jobRun, pct int, subtask int, status string) {
	s.recordProgress(ctx, run, pct, func(r *job.Record) {
		for i := range r.SubTasks {
			st := &r.SubTasks[i]
			if st.TaskID == subtask {
				st.TaskStatus = status
			} else if st.TaskID < subtask && st.TaskStatus != string(job.Completed) {
				st.TaskStatus = string(job.Completed)
				if st.TaskProgress != "" {
					st.TaskProgress = "100%"
				}
			}
		}
	})
}

// recordProgress sets a running job's progress to pct and lets fn adjust
// its subtasks; a job that has ended is left as it is. A failure to
// record is logged: progress is information, not the job's outcome.
func (s *Service) recordProgress(ctx context.Context, run jobRun, pct int, fn func(r *job.Record)) {
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		_, err := job.Update(ctx, tx, run.p.VaultID, run.p.JobID, func(r *job.Record) {
			if r.Status.IsTerminal() {
				return
			}
			r.Progress = pct
			fn(r)
		})
		return err
	})
	if err != nil {
		s.logger().Warn("record job progress", "job", run.p.JobID, "err", err)
	}
}

// finish ends a job with err (nil: Completed), in tx; fn may adjust it.
func finishJob(ctx context.Context, tx store.Tx, now time.Time, vaultID, jobID string, err error, fn func(r *job.Record)) error {
	_, uerr := job.Update(ctx, tx, vaultID, jobID, func(r *job.Record) {
		if r.Status.IsTerminal() {
			return
		}
		r.Finish(now, err)
		if fn != nil {
			fn(r)
		}
	})
	if errors.Is(uerr, job.ErrNotFound) {
		return nil
	}
	return uerr
}

// endJob ends run's job with err (nil: Completed) in tx, and acks run's
// task in tx too: the job shows ended only once its task is gone, so that
// a backup requested the moment the previous one shows Completed is not
// refused as one already running; and a worker whose lease passed to
// another (it paused) ends nothing: the ack fails with job.ErrLeaseLost
// (job.Queue.CompleteTx).
func (s *Service) endJob(ctx context.Context, tx store.Tx, run jobRun, now time.Time, err error, fn func(r *job.Record)) error {
	if err := finishJob(ctx, tx, now, run.p.VaultID, run.p.JobID, err, fn); err != nil {
		return err
	}
	return s.Queue.CompleteTx(ctx, tx, run.task)
}

// cancelJob ends a job as Cancelled (and acks its task, as endJob); why,
// when not empty, replaces the reason its cancel request gave. It writes
// even when ctx, the task's, was cancelled.
func (s *Service) cancelJob(ctx context.Context, run jobRun, why string) error {
	ctx = context.WithoutCancel(ctx)
	return s.Store.Update(ctx, func(tx store.Tx) error {
		_, err := job.Update(ctx, tx, run.p.VaultID, run.p.JobID, func(r *job.Record) {
			if r.Status.IsTerminal() {
				return
			}
			endCancelled(r, s.Clock.Now())
			if why != "" || r.Details[job.DetailCancelReason] == "" {
				r.Details = withDetail(r.Details, job.DetailCancelReason, cmp.Or(why, "Cancelled."))
			}
		})
		if err != nil && !errors.Is(err, job.ErrNotFound) {
			return err
		}
		return s.Queue.CompleteTx(ctx, tx, run.task)
	})
}

// cancelRequested returns job.ErrCanceled when the run's job was asked to
// cancel (CancelJob): the transaction that would complete it checks, so
// that a cancel which was accepted always ends the job Cancelled.
func cancelRequested(ctx context.Context, tx store.Tx, run jobRun) error {
	r, err := job.Get(ctx, tx, run.p.VaultID, run.p.JobID)
	if err != nil {
		return err
	}
	if !r.Status.IsTerminal() && r.Details[job.DetailCancelReason] != "" {
		return job.ErrCanceled
	}
	return nil
}

// cancelAsked reports whether the job of p was asked to cancel.
func (s *Service) cancelAsked(ctx context.Context, p taskPayload) bool {
	err := s.Store.View(ctx, func(tx store.Tx) error { return cancelRequested(ctx, tx, jobRun{p: p}) })
	return errors.Is(err, job.ErrCanceled)
}

// cancelBackup ends a backup whose job was cancelled while it ran: the
// snapshot it may have made goes, as for a failure, and the job ends
// Cancelled; the instance's protection status is left as it was.
func (s *Service) cancelBackup(ctx context.Context, run jobRun) error {
	ctx = context.WithoutCancel(ctx)
	s.dropSnapshot(ctx, run)
	return s.cancelJob(ctx, run, "")
}

func withDetail(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

// failBackup ends a backup job with a user error and records it in the
// instance's protection status. The snapshot the job made, if any, goes
// first (see dropSnapshot).
func (s *Service) failBackup(ctx context.Context, run jobRun, cause error) error {
	s.dropSnapshot(ctx, run)
	now := s.Clock.Now().UTC()
	return s.Store.Update(ctx, func(tx store.Tx) error {
		if err := s.endJob(ctx, tx, run, now, cause, nil); err != nil {
			return err
		}
		var r instanceRecord
		if err := getJSON(ctx, tx, kindInstance, strings.ToLower(run.p.InstanceID), &r); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		u := job.FromError(cause)
		p := &r.Resource.Properties
		if p.CurrentProtectionState == StateConfigured {
			p.CurrentProtectionState = StateProtectionError
		}
		p.ProtectionStatus = &ProtectionStatus{Status: protectionStatusOf(p.CurrentProtectionState), ErrorDetails: &u}
		p.ProtectionErrorDetails = &u
		return s.putInstance(ctx, tx, r)
	})
}

// dropSnapshot deletes, as the vault's identity, the snapshot resource a
// failing backup job made, whatever its state, so that the job fails
// without leaving a snapshot behind in the snapshot resource group. No
// recovery point refers to it: the job's point is written only with its
// success, and then the job does not fail. It runs before the job is
// marked failed, so that a crash in between leaves a job to retry rather
// than an orphan. What cannot be deleted (the identity lost its role on
// the group) is logged and left.
func (s *Service) dropSnapshot(ctx context.Context, run jobRun) {
	p, ok := principalOf(run.vault)
	if !ok || run.inst.DiskID == "" {
		return
	}
	var committed bool
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		_, err := tx.Get(ctx, kindRecoveryPoint, rpKey(run.inst.Resource.ID, rpName(run.p.JobID)))
		committed = err == nil
		return nil
	}); err != nil || committed {
		return
	}
	snap := run.inst.snapshotRG().Child("Microsoft.Compute/snapshots", snapshotName(run.inst.diskID().Name(), run.p.JobID))
	err := actor{s: s, as: p}.deleteSnapshot(context.WithoutCancel(ctx), snap)
	_, denied := deniedAction(err)
	switch {
	case err == nil, isNotFound(err):
	case denied:
		// Usually the reason the backup failed: the identity lost its
		// role, and then it made no snapshot either.
		s.logger().Info("failed backup: may not delete its snapshot", "job", run.p.JobID, "snapshot", snap.String(), "err", err)
	default:
		s.logger().Error("failed backup: delete its snapshot", "job", run.p.JobID, "snapshot", snap.String(), "err", err)
	}
}

// diskError maps a failed Compute call on the disk to Azure's code; nil
// means a transient error that should be retried.
func diskError(err error, diskID, snapRG string) *resource.Error {
	if action, denied := deniedAction(err); denied {
		if strings.Contains(strings.ToLower(action), "snapshots/") {
			return errSnapshotRGPermissions(snapRG)
		}
		return errDiskPermissions(diskID)
	}
	switch {
	case isNotFound(err):
		return errDiskNotFound(diskID)
	}
	if e := resource.AsError(err); e != nil && e.Kind != resource.KindInternal {
		return e
	}
	return nil
}

// ExecBackup runs a backup task: as the vault's managed identity it takes
// an incremental snapshot of the disk into the snapshot resource group
// (reusing the snapshot a previous delivery made), then records the
// recovery point with its retention tag and expiry, and completes the job.
// A user error (roles lost, disk gone) fails the job and shows in the
// instance's protection status; other errors are retried.
//
// A backup whose job is cancelled while it runs (its context's cause is
// job.ErrCanceled, or its commit finds the cancel request) ends as a
// failure would, with no snapshot and no recovery point, and its job ends
// Cancelled.
func (s *Service) ExecBackup(ctx context.Context, t job.Task) error {
	err := s.execBackup(ctx, t)
	if !canceled(ctx) && !errors.Is(err, job.ErrCanceled) {
		return err
	}
	run, lerr := s.loadRun(context.WithoutCancel(ctx), t)
	if lerr != nil {
		return errors.Join(err, lerr)
	}
	return s.cancelBackup(ctx, run)
}

func (s *Service) execBackup(ctx context.Context, t job.Task) error {
	run, err := s.loadRun(ctx, t)
	if errors.Is(err, job.ErrNotFound) {
		return nil // the vault and its jobs are gone
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
	if !run.inst.protecting() {
		return s.cancelJob(ctx, run, "Protection of the backup instance was stopped, suspended or deleted.")
	}
	name := rpName(run.p.JobID)
	var exists bool
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		_, err := tx.Get(ctx, kindRecoveryPoint, rpKey(run.inst.Resource.ID, name))
		exists = err == nil
		return nil
	}); err != nil {
		return err
	}
	if exists { // committed by a previous delivery
		return s.Store.Update(ctx, func(tx store.Tx) error {
			return s.endJob(ctx, tx, run, s.Clock.Now(), nil, nil)
		})
	}
	p, ok := principalOf(run.vault)
	if !ok {
		return s.failBackup(ctx, run, userError(CodeVaultIdentityMissing, "The backup vault %s has no managed identity.", run.vault.Name))
	}
	a := actor{s: s, as: p}
	diskID, snapRG := run.inst.diskID(), run.inst.snapshotRG()
	if err := s.Space.Check(); err != nil {
		// Below the free-space reserve: fail clearly now rather than
		// fill the reserve with packs (a scheduled backup has no API
		// request to refuse).
		return s.failBackup(ctx, run, err)
	}
	s.progress(ctx, run, 10, 1, string(job.InProgress))

	disk, err := a.getDisk(ctx, diskID)
	if err != nil {
		if e := diskError(err, diskID.String(), snapRG.String()); e != nil {
			return s.failBackup(ctx, run, e)
		}
		return err
	}
	var rgMissing bool
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		_, err := s.Groups.GetGroup(ctx, tx, snapRG)
		rgMissing = isNotFound(err)
		if rgMissing {
			return nil
		}
		return err
	}); err != nil {
		return err
	}
	if rgMissing {
		return s.failBackup(ctx, run, errSnapshotRGPermissions(snapRG.String()))
	}
	snapID := snapRG.Child("Microsoft.Compute/snapshots", snapshotName(diskID.Name(), run.p.JobID))
	snap, err := a.getSnapshot(ctx, snapID)
	if isNotFound(err) {
		snap, err = s.watchSnapshot(ctx, run, snapID, func() (SnapshotInfo, error) {
			return a.createSnapshot(ctx, snapID, diskID)
		})
	}
	if err != nil {
		if e := diskError(err, diskID.String(), snapRG.String()); e != nil {
			return s.failBackup(ctx, run, e)
		}
		return err
	}
	s.progress(ctx, run, 90, 2, string(job.InProgress))
	return s.commitRecoveryPoint(ctx, run, name, disk, snap)
}

// commitRecoveryPoint records the recovery point of a backup whose snapshot
// is committed, tags it and completes the job, in one transaction.
func (s *Service) commitRecoveryPoint(ctx context.Context, run jobRun, name string, disk DiskInfo, snap SnapshotInfo) error {
	now := s.Clock.Now().UTC()
	return s.Store.Update(ctx, func(tx store.Tx) error {
		var r instanceRecord
		if err := getJSON(ctx, tx, kindInstance, strings.ToLower(run.p.InstanceID), &r); err != nil {
			return err
		}
		if _, err := tx.Get(ctx, kindRecoveryPoint, rpKey(r.Resource.ID, name)); err == nil {
			return s.endJob(ctx, tx, run, now, nil, nil)
		}
		if err := cancelRequested(ctx, tx, run); err != nil {
			return err
		}
		pol, err := s.getPolicy(ctx, tx, parseOrZero(r.Resource.Properties.PolicyInfo.PolicyID))
		if err != nil {
			return err
		}
		rps, err := listRPs(ctx, tx, r.Resource.ID)
		if err != nil {
			return err
		}
		tag, expiry, err := decideRetention(pol.Properties, run.p.Tag, run.rec.IsUserTriggered, now, rps)
		if err != nil {
			return err
		}
		rp := rpRecord{Name: name, InstanceID: r.Resource.ID, Time: now, Expiry: expiry, Tag: tag, PolicyID: pol.ID, PolicyName: pol.Name,
			SnapshotID: snap.ID, DiskID: r.DiskID, DiskSKU: disk.SKU, SizeBytes: max(snap.SizeBytes, disk.SizeBytes),
			Location: r.Resource.Properties.DataSourceInfo.ResourceLocation, JobID: run.p.JobID, Scheduled: !run.rec.IsUserTriggered}
		if rp.Location == "" {
			rp.Location = disk.Location
		}
		if err := putJSON(ctx, tx, kindRecoveryPoint, rp.key(), rp); err != nil {
			return err
		}
		p := &r.Resource.Properties
		if p.CurrentProtectionState == StateProtectionError {
			p.CurrentProtectionState = StateConfigured
		}
		p.ProtectionStatus = &ProtectionStatus{Status: protectionStatusOf(p.CurrentProtectionState)}
		p.ProtectionErrorDetails = nil
		if err := s.putInstance(ctx, tx, r); err != nil {
			return err
		}
		return s.endJob(ctx, tx, run, now, nil, func(j *job.Record) {
			j.BytesTransferred = snap.SizeBytes
			j.TargetRP = &job.RecoveryPointRef{ID: name, Time: now}
			j.Details = withDetail(j.Details, "RetentionTag", tag)
			j.Details = withDetail(j.Details, "SnapshotId", snap.ID)
		})
	})
}

// decideRetention tags a new recovery point: an on-demand backup takes its
// retentionTagOverride; a scheduled one the policy's tagging (first
// successful backup of the day or week, by priority, in the policy's time
// zone). The expiry is the tag's retention after at.
func decideRetention(pol BackupPolicy, override string, user bool, at time.Time, earlier []rpRecord) (string, time.Time, error) {
	ret, err := pol.Retention()
	if err != nil {
		return "", time.Time{}, err
	}
	if user && override != "" {
		d, ok := pol.RetentionDuration(override)
		if !ok {
			return "", time.Time{}, userError(CodeInvalidRetentionTag, "The policy has no retention rule %q.", override)
		}
		for _, rr := range pol.RetentionRules() {
			if strings.EqualFold(rr.Name, override) {
				override = rr.Name
			}
		}
		return override, d.AddTo(at, ret.Location), nil
	}
	times := make([]time.Time, 0, len(earlier))
	for _, e := range earlier {
		times = append(times, e.Time)
	}
	dec, err := ret.Decide(at, times)
	if err != nil {
		return "", time.Time{}, err
	}
	return dec.Rule.Name, dec.Expiry, nil
}

// FailTask is the worker pool's dead-letter hook: a task that will not be
// retried fails its job cleanly (a failed backup takes the snapshot it may
// have made with it, and a failed deletion makes the instance usable
// again) — except a restore whose disk was made, which completes.
func (s *Service) FailTask(ctx context.Context, t job.Task, cause error) {
	var p taskPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		s.logger().Error("dead task with bad payload", "task", t.ID, "err", err)
		return
	}
	if (t.Type == TaskBackup || t.Type == TaskRestore) && (errors.Is(cause, job.ErrCanceled) || s.cancelAsked(ctx, p)) {
		if err := s.cancelTask(ctx, t); err != nil {
			s.logger().Error("end a cancelled task's job", "task", t.ID, "err", err)
		}
		return
	}
	var jerr error = resource.Errorf(resource.KindInternal, "InternalError", "The job failed after %d attempts: %v", t.Attempts, cause)
	if e := resource.AsError(cause); e != nil {
		jerr = e
	}
	var fill func(r *job.Record)
	if t.Type == TaskRestore {
		target := parseOrZero(p.TargetDiskID)
		if d, err := s.Disks.GetDisk(ctx, target); err == nil {
			// The disk was made; only the job's end was lost.
			jerr, fill = nil, func(r *job.Record) {
				r.BytesTransferred = d.SizeBytes
				r.Destination = target.String()
			}
		}
	}
	if t.Type == TaskBackup {
		if run, err := s.loadRun(ctx, t); err == nil {
			s.dropSnapshot(ctx, run)
		}
	}
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		if err := finishJob(ctx, tx, s.Clock.Now(), p.VaultID, p.JobID, jerr, fill); err != nil {
			return err
		}
		if t.Type == TaskDeleteInstance {
			return s.undoDeleting(ctx, tx, p.InstanceID)
		}
		return nil
	})
	if err != nil {
		s.logger().Error("fail dead task's job", "task", t.ID, "err", err)
	}
	if t.Type == TaskBackup {
		if err := s.dropBackupSnapshot(ctx, p); err != nil {
			s.logger().Error("delete the snapshot of a failed backup", "task", t.ID, "err", err)
		}
	}
}

// dropBackupSnapshot deletes, as the vault's identity, the snapshot that a
// backup which will not be retried may have committed, unless its recovery
// point exists (the backup completed after all): no snapshot resource is
// left that no recovery point lists.
func (s *Service) dropBackupSnapshot(ctx context.Context, p taskPayload) error {
	var inst instanceRecord
	var v VaultResource
	committed := false
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if err := getJSON(ctx, tx, kindInstance, strings.ToLower(p.InstanceID), &inst); err != nil {
			return err
		}
		if err := getJSON(ctx, tx, kindVault, strings.ToLower(p.VaultID), &v); err != nil {
			return err
		}
		_, err := tx.Get(ctx, kindRecoveryPoint, rpKey(inst.Resource.ID, rpName(p.JobID)))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		committed = err == nil
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil // the instance or vault is gone, and its snapshots with it
	}
	if err != nil || committed {
		return err
	}
	as, ok := principalOf(v)
	if !ok {
		return nil
	}
	snap := inst.snapshotRG().Child("Microsoft.Compute/snapshots", snapshotName(inst.diskID().Name(), p.JobID))
	if err := (actor{s: s, as: as}).deleteSnapshot(ctx, snap); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete snapshot %s: %w", snap, err)
	}
	return nil
}

// Recover is called once at start, after the worker pool's Recover: it
// fails the jobs that cannot be resumed (RecoverJobs) and configures the
// backup instances a stop left Provisioning.
func (s *Service) Recover(ctx context.Context) error {
	if err := s.RecoverJobs(ctx); err != nil {
		return err
	}
	return s.recoverInstances(ctx)
}

// recoverInstances configures the instances whose PUT was stored but whose
// configuration did not finish: the process stopped before the operation
// that configures them ended (which the operation's resumer also retries)
// or before it was even recorded (which nothing else would).
func (s *Service) recoverInstances(ctx context.Context) error {
	var insts []instanceRecord
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		insts, err = listJSON[instanceRecord](ctx, tx, kindInstance, "")
		return err
	}); err != nil {
		return fmt.Errorf("recover backup instances: %w", err)
	}
	for _, r := range insts {
		if r.Deleting || r.Resource.Properties.ProvisioningState != "Provisioning" {
			continue
		}
		_, err := s.ConfigureInstance(ctx, r.id())
		if err != nil && resource.AsError(err) == nil { // a user error is recorded in the instance
			return fmt.Errorf("recover backup instance %s: %w", r.Resource.ID, err)
		}
	}
	return nil
}

// RecoverJobs is called at start, after the queue's Recover: a job left
// InProgress without a task to finish it (one an earlier version left
// behind, whose task was lost) is failed cleanly, so that no job stays
// InProgress forever. Jobs with a task are resumed by the workers. It reads
// the jobs and the tasks in one transaction: a job is created with its
// task and ended with its task's ack (endJob), so on any node at any time
// a job it fails truly has no task — never one another node is running.
func (s *Service) RecoverJobs(ctx context.Context) error {
	now := s.Clock.Now()
	return s.Store.Update(ctx, func(tx store.Tx) error {
		tasks, err := s.Queue.Backend.List(ctx, tx, "")
		if err != nil {
			return err
		}
		pending := map[string]bool{}
		for _, t := range tasks {
			var p taskPayload
			if json.Unmarshal(t.Payload, &p) == nil {
				pending[strings.ToLower(p.JobID)] = true
			}
		}
		recs, err := job.ListPrefix(ctx, tx, "", job.Filter{Status: job.InProgress})
		if err != nil {
			return err
		}
		for _, r := range recs {
			if pending[strings.ToLower(r.ID)] {
				continue
			}
			r.Finish(now, resource.Errorf(resource.KindInternal, "JobInterrupted",
				"The job was interrupted because the server stopped, and it could not be resumed. Retry the operation."))
			if err := job.Put(ctx, tx, r, store.PutOptions{}); err != nil {
				return err
			}
			if r.Operation == job.OpDeleteProtection {
				if err := s.undoDeleting(ctx, tx, r.BackupInstanceID); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
