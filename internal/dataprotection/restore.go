package dataprotection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"coffer/internal/authorization"
	"coffer/internal/job"
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// RestoreRequest is a restore of a recovery point to a new disk (Azure's
// AzureBackupRecoveryPointBasedRestoreRequest).
type RestoreRequest struct {
	// ObjectType is the kind of request as asked; disks support only
	// AzureBackupRecoveryPointBasedRestoreRequest (empty means it).
	ObjectType      string
	RecoveryPointID string
	// SourceDataStoreType is OperationalStore (or empty).
	SourceDataStoreType string
	// Target is where to restore to; nil when the request names none.
	Target *RestoreTarget
}

// RestoreTarget is a restore's target (Azure's RestoreTargetInfo).
type RestoreTarget struct {
	// ObjectType is the kind of target as asked; disks support only
	// RestoreTargetInfo (empty means it).
	ObjectType     string
	RecoveryOption string // FailIfExists
	// RestoreLocation, or else DiskLocation, must be the recovery point's
	// region when given.
	RestoreLocation string
	// DiskID is the ARM ID of the new disk; DiskLocation its region as
	// asked.
	DiskID       string
	DiskLocation string
}

// restorePlan is what restore validation found.
type restorePlan struct {
	vault  VaultResource
	inst   instanceRecord
	rp     rpRecord
	target resource.ID
	snap   resource.ID
}

func unsupportedRestore(format string, args ...any) *resource.Error {
	return withUserFacing(userError(CodeUnsupportedRestoreRequest, format, args...),
		"Disks are restored from a recovery point to a new disk: use objectType AzureBackupRecoveryPointBasedRestoreRequest with a RestoreTargetInfo, recoveryOption FailIfExists and sourceDataStoreType OperationalStore.")
}

// checkRestore runs the restore checks, in this order: the request's shape
// (recovery-point-based, alternate location only, FailIfExists,
// OperationalStore); the recovery point exists; the restore location is the
// recovery point's region; the vault identity exists; the target resource
// group exists; the identity has Disk Restore Operator on it; no disk of
// the target name exists there; the identity can still read the snapshot
// (its roles on the snapshot resource group); the snapshot still exists.
func (s *Service) checkRestore(ctx context.Context, tx store.Tx, id resource.ID, req RestoreRequest) (restorePlan, error) {
	var pl restorePlan
	if req.ObjectType != "" && !strings.EqualFold(req.ObjectType, ObjectTypeRPRestore) {
		return pl, unsupportedRestore("Restore request objectType %q is not supported for disks; only %q is.", req.ObjectType, ObjectTypeRPRestore)
	}
	if req.SourceDataStoreType != "" && !strings.EqualFold(req.SourceDataStoreType, DataStoreOperational) {
		return pl, unsupportedRestore("sourceDataStoreType %q is not supported for disks; only %q is.", req.SourceDataStoreType, DataStoreOperational)
	}
	if req.RecoveryPointID == "" {
		return pl, userError(CodeInvalidInput, "recoveryPointId is required.").WithTarget("recoveryPointId")
	}
	t := req.Target
	if t == nil {
		return pl, userError(CodeInvalidInput, "restoreTargetInfo is required.").WithTarget("restoreTargetInfo")
	}
	if t.ObjectType != "" && !strings.EqualFold(t.ObjectType, ObjectTypeRestoreTarget) {
		return pl, unsupportedRestore("restoreTargetInfo objectType %q is not supported for disks (item-level and file restores are not); only %q is.", t.ObjectType, ObjectTypeRestoreTarget)
	}
	if !strings.EqualFold(t.RecoveryOption, RecoveryOptionFailIfExists) {
		return pl, userError(CodeInvalidInput, "recoveryOption %q is not supported; only %q is.", t.RecoveryOption, RecoveryOptionFailIfExists).WithTarget("restoreTargetInfo.recoveryOption")
	}
	if t.DiskID == "" {
		return pl, userError(CodeInvalidInput, "restoreTargetInfo.datasourceInfo.resourceID is required: the ARM ID of the new disk.").WithTarget("restoreTargetInfo.datasourceInfo.resourceID")
	}
	target, err := resource.Parse(t.DiskID)
	if err != nil || !target.IsType(DatasourceTypeDisk) || target.ResourceGroup == "" {
		return pl, userError(CodeInvalidInput, "restoreTargetInfo.datasourceInfo.resourceID %q is not the ID of a disk.", t.DiskID).WithTarget("restoreTargetInfo.datasourceInfo.resourceID")
	}
	if err := resource.DiskNameRule.Check("InvalidResourceName", target.Name()); err != nil {
		return pl, err
	}
	pl.target = target
	inst, err := s.getInstance(ctx, tx, id)
	if err != nil {
		return pl, err
	}
	pl.inst = inst
	if target.Equal(inst.diskID()) {
		return pl, withUserFacing(userError(CodeOriginalLocationRestore,
			"Original Location Recovery (replacing the source disk) is not supported for Azure Disks. Restore creates a new disk: give the ID of a disk that does not exist yet."),
			"Choose a new disk name, or another resource group, for the restored disk.")
	}
	rp, err := s.getRP(ctx, tx, id, req.RecoveryPointID)
	if err != nil {
		return pl, err
	}
	pl.rp = rp
	loc := t.RestoreLocation
	if loc == "" {
		loc = t.DiskLocation
	}
	if loc != "" && !strings.EqualFold(strings.ReplaceAll(loc, " ", ""), strings.ReplaceAll(rp.Location, " ", "")) {
		return pl, withUserFacing(userError(CodeRestoreLocationMismatch,
			"The restored disk is created in the region of the recovery point's snapshot, '%s'; restoreLocation '%s' is another region (cross-region restore is not supported).", rp.Location, loc))
	}
	v, err := s.getVault(ctx, tx, id.Parent())
	if err != nil {
		return pl, err
	}
	pl.vault = v
	p, ok := principalOf(v)
	if !ok {
		return pl, withUserFacing(userError(CodeVaultIdentityMissing, "The backup vault %s has no managed identity; restores act as the vault's system-assigned identity.", v.Name))
	}
	targetRG := target.GroupScope()
	if _, err := s.Groups.GetGroup(ctx, tx, targetRG); err != nil {
		if isNotFound(err) {
			return pl, withUserFacing(userError(CodeRestoreTargetRGNotFound, "Operation failed as the Target Resource Group does not exist: %s.", targetRG),
				"Create the target resource group or choose an existing one.")
		}
		return pl, err
	}
	pol, err := s.Authz.Policy(ctx)
	if err != nil {
		return pl, err
	}
	if missing := pol.MissingRoles(p.ID, rbac.RestoreRequirements(targetRG.String())); len(missing) > 0 {
		e := withUserFacing(userError(CodeNotEnoughPermissionOnTargetRG,
			"Azure Backup Service requires additional permissions on the Target Resource Group to do this operation: the vault's identity %s needs the role %s on %s.",
			p.ID, missing[0].RoleName(), targetRG),
			fmt.Sprintf("Assign the Disk Restore Operator role to the Backup vault's managed identity on %s; revoke it after the restore.", targetRG))
		e.Err = &MissingRolesError{PrincipalID: p.ID, Missing: missing}
		return pl, e
	}
	if _, err := s.Disks.GetDisk(ctx, target); err == nil {
		return pl, withUserFacing(userError(CodeSameNameDiskExists,
			"Could not restore as a Disk with same name already exists in the selected target resource group: %s.", target),
			"Choose another name for the restored disk (recoveryOption is FailIfExists).")
	} else if !isNotFound(err) {
		return pl, fmt.Errorf("read target disk: %w", err)
	}
	snap := parseOrZero(rp.SnapshotID)
	pl.snap = snap
	for _, action := range []string{ActionSnapshotRead, ActionSnapshotBeginGetAccess} {
		d, err := s.Authz.Decide(ctx, p, action, snap.String())
		if err != nil {
			return pl, err
		}
		if !d.Allowed {
			return pl, errSnapshotRGPermissions(snap.GroupScope().String())
		}
	}
	if _, err := s.Groups.GetGroup(ctx, tx, snap.GroupScope()); isNotFound(err) {
		return pl, errSnapshotRGPermissions(snap.GroupScope().String())
	}
	if _, err := s.Disks.GetSnapshot(ctx, snap); err != nil {
		if isNotFound(err) {
			return pl, withUserFacing(userError(CodeDiskSnapshotNotFound,
				"The disk snapshot for this Restore point has been deleted: %s.", snap),
				"Choose another recovery point.")
		}
		return pl, fmt.Errorf("read snapshot: %w", err)
	}
	return pl, nil
}

func (s *Service) restoreJob(pl restorePlan, op, category string) job.Record {
	rec := s.newJob(pl.vault, op, category, true)
	s.fillInstance(&rec, pl.inst)
	rec.SourceRP = &job.RecoveryPointRef{ID: pl.rp.Name, Time: pl.rp.Time}
	rec.Destination = pl.target.String()
	return rec
}

// ValidateRestore checks a restore and records a validation job; it
// returns the job ID and the validation error.
func (s *Service) ValidateRestore(ctx context.Context, id resource.ID, req RestoreRequest) (string, error) {
	var jobID string
	var verr error
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		pl, err := s.checkRestore(ctx, tx, id, req)
		if err != nil && resource.AsError(err) == nil {
			return err
		}
		verr = err
		if pl.vault.ID == "" {
			return nil
		}
		rec := s.restoreJob(pl, job.OpValidateRestore, job.CategoryValidation)
		rec.Finish(s.Clock.Now(), verr)
		jobID = rec.ResourceID()
		return job.Put(ctx, tx, rec, store.PutOptions{CreateOnly: true})
	})
	if err != nil {
		return "", err
	}
	return jobID, verr
}

// Restore validates a restore request and queues the restore job; it
// returns the job's resource ID.
func (s *Service) Restore(ctx context.Context, id resource.ID, req RestoreRequest) (string, error) {
	var jobID, node string
	if s.Place != nil {
		var err error
		if node, err = s.Place(ctx); err != nil {
			return "", err
		}
	}
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		pl, err := s.checkRestore(ctx, tx, id, req)
		if err != nil {
			return err
		}
		now := s.Clock.Now().UTC()
		jobs, err := job.List(ctx, tx, pl.vault.ID, job.Filter{Operation: job.OpRestore, From: now.Truncate(24 * time.Hour), BackupInstanceID: pl.inst.Resource.ID})
		if err != nil {
			return err
		}
		if len(jobs) >= MaxRestoresPerDay {
			return withUserFacing(userError(CodeRestoreLimit, "At most %d restores per backup instance per day are allowed.", MaxRestoresPerDay))
		}
		busy, err := s.Queue.ActiveTx(ctx, tx, strings.ToLower(pl.target.String()))
		if err != nil {
			return err
		}
		if busy {
			return withUserFacing(userError(CodeSameNameDiskExists, "A restore to %s is already running.", pl.target))
		}
		rec := s.restoreJob(pl, job.OpRestore, job.CategoryRestore)
		rec.SubTasks = []job.SubTask{{TaskID: 1, TaskName: "Trigger Restore", TaskStatus: "NotStarted"}}
		if err := job.Put(ctx, tx, rec, store.PutOptions{CreateOnly: true}); err != nil {
			return err
		}
		jobID = rec.ResourceID()
		payload, _ := json.Marshal(taskPayload{InstanceID: pl.inst.Resource.ID, VaultID: pl.vault.ID, JobID: rec.ID,
			RecoveryPoint: pl.rp.Name, TargetDiskID: pl.target.String(), Location: pl.rp.Location})
		return s.Queue.EnqueueTx(ctx, tx, job.Task{ID: rec.ID, Type: TaskRestore, Target: strings.ToLower(pl.target.String()), Payload: payload, Node: node})
	})
	if err == nil {
		s.Queue.Wake()
	}
	return jobID, err
}

// ExecRestore creates the new disk from the recovery point's snapshot as
// the vault's identity. A restore whose job is cancelled while it runs
// deletes the disk it made and ends Cancelled (see cancelTask).
func (s *Service) ExecRestore(ctx context.Context, t job.Task) error {
	err := s.execRestore(ctx, t)
	if !canceled(ctx) && !errors.Is(err, job.ErrCanceled) {
		return err
	}
	if cerr := s.cancelTask(ctx, t); cerr != nil {
		return errors.Join(err, cerr)
	}
	return nil
}

// cancelTask ends the job of a backup or restore task that was cancelled
// while it ran, cleaning up as a failure does: a backup's snapshot, a
// restore's new disk. A job that completed first is left as it is.
func (s *Service) cancelTask(ctx context.Context, t job.Task) error {
	ctx = context.WithoutCancel(ctx)
	run, err := s.loadRun(ctx, t)
	if errors.Is(err, job.ErrNotFound) {
		return nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if run.rec.Status.IsTerminal() {
		return nil
	}
	if t.Type == TaskBackup {
		return s.cancelBackup(ctx, run)
	}
	if target := parseOrZero(run.p.TargetDiskID); target.Name() != "" {
		if err := s.Disks.DeleteDisk(ctx, target); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete the disk of a cancelled restore: %w", err)
		}
	}
	return s.cancelJob(ctx, run, "")
}

func (s *Service) execRestore(ctx context.Context, t job.Task) error {
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
	fail := func(e error) error {
		return s.Store.Update(ctx, func(tx store.Tx) error {
			return s.endJob(ctx, tx, run, s.Clock.Now(), e, nil)
		})
	}
	var rp rpRecord
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		rp, err = s.getRP(ctx, tx, parseOrZero(run.p.InstanceID), run.p.RecoveryPoint)
		return err
	}); err != nil {
		if errors.Is(err, errRecoveryPointNotFound) {
			return fail(withUserFacing(userError(CodeSnapshotMetadataNotFound, "The disk snapshot metadata for this Restore point has been deleted.")))
		}
		return err
	}
	p, ok := principalOf(run.vault)
	if !ok {
		return fail(userError(CodeVaultIdentityMissing, "The backup vault %s has no managed identity.", run.vault.Name))
	}
	s.progress(ctx, run, 10, 1, string(job.InProgress))
	target := parseOrZero(run.p.TargetDiskID)
	snap := parseOrZero(rp.SnapshotID)
	if t.Attempts > 1 {
		// Made by the interrupted delivery; one whose making failed (its
		// node stopped meanwhile) is made again below, and one still being
		// made waits for its node to end it.
		d, err := s.Disks.GetDisk(ctx, target)
		if err == nil && d.Provisioning {
			return stillProvisioning(target)
		}
		if err == nil && !d.Failed {
			return s.Store.Update(ctx, func(tx store.Tx) error {
				if err := cancelRequested(ctx, tx, run); err != nil {
					return err
				}
				return s.endJob(ctx, tx, run, s.Clock.Now(), nil, nil)
			})
		}
	}
	d, err := actor{s: s, as: p}.restoreDisk(ctx, target, snap, run.p.Location, rp.DiskSKU)
	if err != nil {
		den, denied := authorization.Denial(err)
		switch {
		case denied && strings.Contains(strings.ToLower(den.MissingAction), "snapshots/"):
			return fail(errSnapshotRGPermissions(snap.GroupScope().String()))
		case denied:
			return fail(withUserFacing(userError(CodeNotEnoughPermissionOnTargetRG,
				"Azure Backup Service requires additional permissions on the Target Resource Group to do this operation (%s on %s).", den.MissingAction, den.Scope)))
		case isNotFound(err):
			return fail(withUserFacing(userError(CodeDiskSnapshotNotFound, "The disk snapshot for this Restore point has been deleted: %s.", snap)))
		}
		if e := resource.AsError(err); e != nil && e.Kind != resource.KindInternal {
			return fail(e)
		}
		return err
	}
	if d.Provisioning {
		return stillProvisioning(target)
	}
	return s.Store.Update(ctx, func(tx store.Tx) error {
		if err := cancelRequested(ctx, tx, run); err != nil {
			return err
		}
		return s.endJob(ctx, tx, run, s.Clock.Now(), nil, func(r *job.Record) {
			r.BytesTransferred = d.SizeBytes
			r.Destination = target.String()
		})
	})
}

// stillProvisioning is the error of a restore delivered again while its
// disk, begun by an earlier delivery, is still being made (its node
// stopped and has not yet recovered it): the task is retried, so that its
// job ends only once the disk has — Completed over a disk that reads, or
// the disk made again if its making failed — never Completed over a disk
// that then fails.
func stillProvisioning(disk resource.ID) error {
	return fmt.Errorf("restore: the disk %s is still being made by an earlier delivery; retry once its creation has ended", disk)
}

// getJob reads a job of a vault: the vault's 404, or the job's.
func (s *Service) getJob(ctx context.Context, tx store.Tx, vaultID resource.ID, id string) (job.Record, error) {
	if _, err := s.getVault(ctx, tx, vaultID); err != nil {
		return job.Record{}, err
	}
	r, err := job.Get(ctx, tx, vaultID.String(), id)
	if errors.Is(err, job.ErrNotFound) {
		return r, resource.NotFound(vaultID.Child("backupJobs", id))
	}
	return r, err
}

// GetJob returns a job of a vault.
func (s *Service) GetJob(ctx context.Context, vaultID resource.ID, id string) (job.Resource, error) {
	var out job.Resource
	err := s.Store.View(ctx, func(tx store.Tx) error {
		r, err := s.getJob(ctx, tx, vaultID, id)
		if err != nil {
			return err
		}
		out = r.ToResource(s.Clock.Now())
		out.ID = vaultID.String() + "/backupJobs/" + r.ID
		return nil
	})
	return out, err
}

// CancelJob cancels a backup or a restore in progress, naming who
// cancelled it. A job waiting for a worker leaves the queue and ends
// Cancelled at once, in one transaction. A running one is marked, in the
// store, with its task: the worker running it, on whichever node, sees the
// mark (worker.Pool watches its tasks), stops, cleans up as a failure
// would (no recovery point, no restored disk is left) and ends the job
// Cancelled; until then the job stays InProgress with its CancelReason. A
// job that has ended, is being cancelled or is of another kind is refused
// (409 UserErrorJobNotCancellable). The caller needs CancelAction of the
// job's operation on its backup instance.
func (s *Service) CancelJob(ctx context.Context, vaultID resource.ID, id string, by Caller) (job.Resource, error) {
	var out job.Resource
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		r, err := s.getJob(ctx, tx, vaultID, id)
		if err != nil {
			return err
		}
		notCancellable := func(why string) error {
			return resource.Errorf(resource.KindConflict, CodeJobNotCancellable, "The job %s cannot be cancelled: %s.", id, why)
		}
		if r.Status == job.InProgress && r.Details[job.DetailCancelReason] != "" {
			return notCancellable("it is being cancelled")
		}
		if !r.Cancellable() {
			return notCancellable("only a backup or a restore in progress can be cancelled")
		}
		removed, err := s.Queue.CancelTx(ctx, tx, r.ID)
		if errors.Is(err, job.ErrNoTask) {
			return notCancellable("it is ending")
		}
		if err != nil {
			return err
		}
		r, err = job.Update(ctx, tx, vaultID.String(), id, func(r *job.Record) {
			r.Details = withDetail(r.Details, job.DetailCancelReason, "Cancelled by "+by.Name+".")
			if removed {
				endCancelled(r, s.Clock.Now())
			}
		})
		if err != nil {
			return err
		}
		out = r.ToResource(s.Clock.Now())
		return nil
	})
	return out, err
}

// endCancelled ends a job as Cancelled.
func endCancelled(r *job.Record, now time.Time) {
	r.EndTime = now.UTC()
	r.Status = job.Cancelled
	for i := range r.SubTasks {
		if r.SubTasks[i].TaskStatus != string(job.Completed) {
			r.SubTasks[i].TaskStatus = string(job.Cancelled)
		}
	}
}

// canceled reports whether ctx, a task's, was cancelled because its job
// was (see CancelJob).
func canceled(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), job.ErrCanceled)
}

// ListJobs lists a vault's jobs, newest first.
func (s *Service) ListJobs(ctx context.Context, vaultID resource.ID, f job.Filter) ([]job.Resource, error) {
	var out []job.Resource
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := s.getVault(ctx, tx, vaultID); err != nil {
			return err
		}
		rs, err := job.List(ctx, tx, vaultID.String(), f)
		for _, r := range rs {
			res := r.ToResource(s.Clock.Now())
			out = append(out, res)
		}
		return err
	})
	return out, err
}

// JobOutcome reports whether the job (its resource ID) has ended, and how:
// nil when it completed, its first error (a 400, as Azure reports a job's
// user error) when it failed or was cancelled. Long-running operations that
// end with a job (deleting a backup instance) look at it.
func (s *Service) JobOutcome(ctx context.Context, jobID string) (ended bool, err error) {
	rec, err := s.JobStatus(ctx, jobID)
	if err != nil {
		return false, err
	}
	switch rec.Status {
	case job.Completed:
		return true, nil
	case job.Failed, job.Cancelled:
		if len(rec.ErrorDetails) > 0 {
			e := rec.ErrorDetails[0]
			return true, resource.Errorf(resource.KindBadRequest, e.Code, "%s", e.Message)
		}
		return true, resource.Errorf(resource.KindInternal, "JobFailed", "The job %s ended with status %s.", jobID, rec.Status)
	}
	return false, nil
}

// JobStatus returns a job's status (for operations that wait for a job).
func (s *Service) JobStatus(ctx context.Context, jobResourceID string) (job.Record, error) {
	id := parseOrZero(jobResourceID)
	if len(id.Names) < 2 {
		return job.Record{}, fmt.Errorf("job ID %q: %w", jobResourceID, job.ErrNotFound)
	}
	vid := VaultID(id.Subscription, id.ResourceGroup, id.Names[0])
	var r job.Record
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		r, err = job.Get(ctx, tx, vid.String(), id.Name())
		return err
	})
	return r, err
}

// RestoredDiskHydration is told (compute.Service.HydrationObserver) when
// the hydration of a disk stalls for lack of space (stall is the error) or
// moves again (stall nil). The latest restore job whose destination is
// that disk (and that has not failed) shows it: CompletedWithWarnings with
// the error and the recommended action while stalled, Completed after.
func (s *Service) RestoredDiskHydration(ctx context.Context, diskID string, stall *resource.Error) {
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		objs, err := tx.List(ctx, store.Query{Kind: job.Kind})
		if err != nil {
			return err
		}
		var latest *job.Record
		for _, o := range objs {
			var r job.Record
			if err := json.Unmarshal(o.Data, &r); err != nil {
				return fmt.Errorf("decode job %s: %w", o.Key, err)
			}
			if r.Operation != job.OpRestore || !strings.EqualFold(r.Destination, diskID) || r.Status == job.Failed || r.Status == job.Cancelled {
				continue
			}
			if latest == nil || r.StartTime.After(latest.StartTime) {
				latest = &r
			}
		}
		if latest == nil {
			return nil
		}
		if stall != nil {
			u := job.FromError(stall)
			latest.Status, latest.ErrorDetails = job.CompletedWithWarnings, []job.UserFacingError{u}
		} else if latest.Status == job.CompletedWithWarnings {
			latest.Status, latest.ErrorDetails, latest.Progress = job.Completed, nil, 100
		} else {
			return nil
		}
		return job.Put(ctx, tx, *latest, store.PutOptions{})
	})
	if err != nil {
		s.logger().Warn("record the hydration of a restored disk on its restore job", "disk", diskID, "err", err)
	}
}
