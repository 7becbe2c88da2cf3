package dataprotection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"coffer/internal/job"
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// instanceRecord is a stored backup instance: the resource plus the state
// the scheduler and workers keep.
type instanceRecord struct {
	Resource   InstanceResource `json:"resource"`
	VaultID    string           `json:"vaultId"`
	DiskID     string           `json:"diskId"`
	SnapshotRG string           `json:"snapshotResourceGroupId"`
	DiskSKU    string           `json:"diskSku,omitempty"`
	// ConfiguredAt is when protection was configured (or resumed, or the
	// policy changed): no scheduled backup is due before it.
	ConfiguredAt time.Time `json:"configuredAt,omitzero"`
	// LastScheduled is the last schedule slot fired (or skipped).
	LastScheduled time.Time `json:"lastScheduled,omitzero"`
	Deleting      bool      `json:"deleting,omitempty"`
	// LastChange is the latest stop, suspend, resume or deletion of its
	// protection, with the reason given.
	LastChange *ChangeNote `json:"lastChange,omitempty"`
}

// ChangeNote says who changed a backup instance's protection (stop,
// suspend, resume, delete), when and why. Azure's API carries no reason;
// the portal asks for one, and the API records the change with none.
type ChangeNote struct {
	Change   string    `json:"change"` // a ProtectionChange, or "delete"
	Reason   string    `json:"reason,omitempty"`
	Comments string    `json:"comments,omitempty"`
	By       string    `json:"by,omitempty"` // the caller's name
	Time     time.Time `json:"time"`
}

// ChangeDelete is the ChangeNote.Change of a deletion.
const ChangeDelete = "delete"

// The job details (extendedInfo.additionalDetails) of a deletion's job
// that carry its ChangeNote.
const (
	DetailReason      = "Reason"
	DetailComments    = "Comments"
	DetailRequestedBy = "RequestedBy"
)

// withInstance returns r's resource with what the record keeps beside the
// wire shape (LastChange).
func (r instanceRecord) withInstance() InstanceResource {
	out := r.Resource
	out.LastChange = r.LastChange
	return out
}

func (r instanceRecord) state() string { return r.Resource.Properties.CurrentProtectionState }

// protecting reports whether the instance takes scheduled backups.
func (r instanceRecord) protecting() bool {
	st := r.state()
	return !r.Deleting && (st == StateConfigured || st == StateProtectionError)
}

func (r instanceRecord) id() resource.ID { id, _ := resource.Parse(r.Resource.ID); return id }

func (r instanceRecord) diskID() resource.ID { id, _ := resource.Parse(r.DiskID); return id }

func (r instanceRecord) snapshotRG() resource.ID { id, _ := resource.Parse(r.SnapshotRG); return id }

// InstanceID returns the ID of a backup instance.
func InstanceID(vault resource.ID, name string) resource.ID {
	return vault.Child("backupInstances", name)
}

func (s *Service) getInstance(ctx context.Context, tx store.Tx, id resource.ID) (instanceRecord, error) {
	var r instanceRecord
	err := getJSON(ctx, tx, kindInstance, id.Key(), &r)
	if errors.Is(err, store.ErrNotFound) {
		if _, verr := s.vaultOf(ctx, tx, id); verr != nil {
			return r, verr
		}
		return r, resource.NotFound(id)
	}
	return r, err
}

func (s *Service) putInstance(ctx context.Context, tx store.Tx, r instanceRecord) error {
	return putJSON(ctx, tx, kindInstance, strings.ToLower(r.Resource.ID), r)
}

// checked is what validation found.
type checked struct {
	vault   VaultResource
	policy  BaseBackupPolicyResource
	disk    DiskInfo
	diskID  resource.ID
	snapRG  resource.ID
	missing []rbac.Requirement
}

// ErrMissingPermissions is wrapped by the validation failure for role
// assignments the vault's identity lacks (UserErrorMissingRequiredPermissions).
var ErrMissingPermissions = errors.New("the vault's identity lacks required role assignments")

// IsPermissionError reports whether err is a validation failure for
// missing role assignments (reported asynchronously, as Azure does).
func IsPermissionError(err error) bool { return errors.Is(err, ErrMissingPermissions) }

// MissingRolesError is the cause a validation failure for missing role
// assignments wraps (backup's UserErrorMissingRequiredPermissions and
// restore's UserErrorNotEnoughPermissionOnTargetRG): the vault identity
// that lacks them and each role at the scope it is needed, so that a caller
// can offer to assign exactly those (errors.As, or MissingRoles). It
// matches ErrMissingPermissions.
type MissingRolesError struct {
	PrincipalID string
	Missing     []rbac.Requirement
}

func (e *MissingRolesError) Error() string { return ErrMissingPermissions.Error() }

// Is makes a MissingRolesError match ErrMissingPermissions.
func (e *MissingRolesError) Is(target error) bool { return target == ErrMissingPermissions }

// MissingRoles returns the roles a validation failure says the vault's
// identity lacks, and whether err is such a failure.
func MissingRoles(err error) (*MissingRolesError, bool) {
	var m *MissingRolesError
	if errors.As(err, &m) {
		return m, true
	}
	return nil, false
}

func snapshotRGParam(in Instance) string {
	if in.PolicyInfo.PolicyParameters == nil {
		return ""
	}
	for _, p := range in.PolicyInfo.PolicyParameters.DataStoreParametersList {
		if strings.EqualFold(p.DataStoreType, DataStoreOperational) || p.DataStoreType == "" {
			return p.ResourceGroupID
		}
	}
	return ""
}

// checkForBackup runs the checks of validateForBackup and of configuring
// protection, in Azure's order: the request's shape, the policy and the
// vault identity; then the disk exists and is supported (and the policy
// suits its SKU); the vault and the disk are in the same region; the
// snapshot resource group is given, exists, is in the disk's subscription
// and is not the disk's own group; the vault identity has Disk Backup
// Reader on the disk and Disk Snapshot Contributor on the snapshot group;
// the disk is not protected by another backup instance. self is the
// instance being configured (zero for validateForBackup).
func (s *Service) checkForBackup(ctx context.Context, tx store.Tx, vaultID resource.ID, in Instance, self resource.ID) (checked, error) {
	var c checked
	v, err := s.getVault(ctx, tx, vaultID)
	if err != nil {
		return c, err
	}
	c.vault = v
	if in.ObjectType != "" && !strings.EqualFold(in.ObjectType, ObjectTypeInstance) {
		return c, userError(CodeInvalidInput, "objectType %q is not supported; it must be %q.", in.ObjectType, ObjectTypeInstance).WithTarget("properties.objectType")
	}
	ds := in.DataSourceInfo
	if ds.ResourceID == "" {
		return c, userError(CodeInvalidInput, "dataSourceInfo.resourceID is required: the ARM ID of the disk to protect.").WithTarget("properties.dataSourceInfo.resourceID")
	}
	diskID, err := resource.Parse(ds.ResourceID)
	if err != nil || diskID.ResourceGroup == "" || len(diskID.Names) != 1 {
		return c, userError(CodeInvalidInput, "dataSourceInfo.resourceID %q is not a resource ID.", ds.ResourceID).WithTarget("properties.dataSourceInfo.resourceID")
	}
	if !diskID.IsType(DatasourceTypeDisk) || (ds.DatasourceType != "" && !strings.EqualFold(ds.DatasourceType, DatasourceTypeDisk)) {
		return c, withUserFacing(userError(CodeDiskTypeNotSupported, "Unsupported disk type: datasource %q of type %q; this service backs up only %s.", ds.ResourceID, diskID.Type(), DatasourceTypeDisk))
	}
	c.diskID = diskID
	pid, err := resource.Parse(in.PolicyInfo.PolicyID)
	if err != nil || !pid.IsType(PolicyResourceType) || !pid.Parent().Equal(vaultID) {
		return c, userError(CodePolicyNotFound, "policyInfo.policyId %q must be the ID of a backup policy of the vault %s.", in.PolicyInfo.PolicyID, vaultID).WithTarget("properties.policyInfo.policyId")
	}
	pol, err := s.getPolicy(ctx, tx, pid)
	if err != nil {
		if isNotFound(err) {
			return c, userError(CodePolicyNotFound, "The backup policy %s does not exist.", in.PolicyInfo.PolicyID).WithTarget("properties.policyInfo.policyId")
		}
		return c, err
	}
	c.policy = pol
	if _, ok := principalOf(v); !ok {
		return c, withUserFacing(userError(CodeVaultIdentityMissing, "The backup vault %s has no managed identity; disk backup acts as the vault's system-assigned identity.", v.Name),
			"Enable the system-assigned identity of the vault (identity.type SystemAssigned) and assign it the roles disk backup needs.")
	}

	// 1. The disk exists and is supported.
	disk, err := s.Disks.GetDisk(ctx, diskID)
	if isNotFound(err) {
		return c, errDiskNotFound(diskID.String())
	}
	if err != nil {
		return c, fmt.Errorf("read disk %s: %w", diskID, err)
	}
	if disk.Unsupported != "" {
		return c, withUserFacing(userError(CodeDiskTypeNotSupported, "Unsupported disk type: %s.", disk.Unsupported))
	}
	c.disk = disk
	if err := ValidatePolicyForDiskSKU(pol.Properties, disk.SKU); err != nil {
		return c, err
	}
	// 2. Same region.
	if !strings.EqualFold(strings.ReplaceAll(disk.Location, " ", ""), strings.ReplaceAll(v.Location, " ", "")) {
		return c, withUserFacing(userError(CodeLocationMismatch,
			"Location of data source needs to be the same as backup vault: the disk %s is in '%s' and the vault %s in '%s'. Cross-region backup is not supported.",
			diskID.Name(), disk.Location, v.Name, v.Location))
	}
	// 3. The snapshot resource group.
	rgParam := snapshotRGParam(in)
	if rgParam == "" {
		return c, withUserFacing(userError(CodeOperationalStoreParamsMissing,
			"Could not perform the operation as Snapshot Data store Resource Group parameter is not provided."),
			"Give policyInfo.policyParameters.dataStoreParametersList[0] with objectType AzureOperationalStoreParameters, dataStoreType OperationalStore and the resourceGroupId of the snapshot resource group.")
	}
	rg, err := resource.Parse(rgParam)
	if err != nil || rg.ResourceGroup == "" || rg.Provider != "" {
		return c, withUserFacing(userError(CodeInvalidOperationalStoreRG, "Snapshot Data store Resource Group provided is invalid: %q is not a resource group ID.", rgParam))
	}
	if _, err := s.Groups.GetGroup(ctx, tx, rg); err != nil {
		if isNotFound(err) {
			return c, withUserFacing(userError(CodeSnapshotRGNotFound, "Could not perform the operation as Snapshot Data store Resource Group does not exist: %s.", rg))
		}
		return c, err
	}
	if !strings.EqualFold(rg.Subscription, diskID.Subscription) {
		return c, withUserFacing(userError(CodeSnapshotRGSubscriptionMismatch,
			"Invalid subscription selected for Snapshot Data store: the resource group %s must be in the disk's subscription %s.", rg, diskID.Subscription))
	}
	if rg.Equal(diskID.GroupScope()) {
		return c, withUserFacing(userError(CodeInvalidOperationalStoreRG,
			"Snapshot Data store Resource Group provided is invalid: it is the source disk's own resource group %s; choose a different resource group for the snapshots.", rg))
	}
	c.snapRG = resource.GroupID(rg.Subscription, rg.ResourceGroup)
	// 4. The vault identity's roles.
	p, _ := principalOf(v)
	pol2, err := s.Authz.Policy(ctx)
	if err != nil {
		return c, err
	}
	c.missing = pol2.MissingRoles(p.ID, rbac.BackupRequirements(diskID.String(), c.snapRG.String()))
	if len(c.missing) > 0 {
		return c, s.missingRolesError(p.ID, c.missing, diskID)
	}
	// 5. Not protected already.
	others, err := listJSON[instanceRecord](ctx, tx, kindInstance, "")
	if err != nil {
		return c, err
	}
	for _, o := range others {
		if strings.EqualFold(o.DiskID, diskID.String()) && !strings.EqualFold(o.Resource.ID, self.String()) {
			vid, _ := resource.Parse(o.VaultID)
			return c, withUserFacing(userError(CodeDatasourceAlreadyProtected,
				"Datasource is already protected under the Backup vault %s.", vid),
				fmt.Sprintf("Delete the backup instance %s from the Backup vault %s to re-protect the datasource in any other vault.", o.Resource.Name, vid))
		}
	}
	return c, nil
}

func (s *Service) missingRolesError(principalID string, missing []rbac.Requirement, diskID resource.ID) *resource.Error {
	e := withUserFacing(userError(CodeMissingRequiredPermissions, "Appropriate permissions to perform the operation is missing."),
		"Assign the missing roles to the Backup vault's managed identity and retry; see the details.")
	e.Err = &MissingRolesError{PrincipalID: principalID, Missing: missing}
	for _, m := range missing {
		var d *resource.Error
		if strings.EqualFold(m.Scope, diskID.String()) {
			d = errDiskPermissions(m.Scope)
		} else {
			d = errSnapshotRGPermissions(m.Scope)
		}
		d.Message += fmt.Sprintf(" Missing role: %s (%s) for principal %s at scope %s.", m.RoleName(), m.RoleID, principalID, m.Scope)
		d.Target = m.Scope
		e.Details = append(e.Details, d)
	}
	return e
}

// ValidateForBackup runs the backup checks for a backup instance's
// properties (validateForBackup) and records a validation job. It returns
// the job's ID and the validation error.
func (s *Service) ValidateForBackup(ctx context.Context, vaultID resource.ID, in Instance) (string, error) {
	var verr error
	jobID := ""
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		c, err := s.checkForBackup(ctx, tx, vaultID, in, resource.ID{})
		if e := resource.AsError(err); err != nil && e == nil {
			return err
		}
		verr = err
		if c.vault.ID == "" {
			return nil
		}
		rec := s.newJob(c.vault, job.OpValidateForBackup, job.CategoryValidation, true)
		s.fillDatasource(&rec, in.DataSourceInfo)
		rec.PolicyID, rec.PolicyName = c.policy.ID, c.policy.Name
		rec.Finish(s.Clock.Now(), verr)
		jobID = rec.ResourceID()
		return job.Put(ctx, tx, rec, store.PutOptions{CreateOnly: true})
	})
	if err != nil {
		return "", err
	}
	return jobID, verr
}

func (s *Service) newJob(v VaultResource, op, category string, user bool) job.Record {
	return s.newJobID(v, op, category, user, newID())
}

func (s *Service) newJobID(v VaultResource, op, category string, user bool, id string) job.Record {
	return job.Record{ID: id, VaultID: v.ID, Operation: op, OperationCategory: category, Status: job.InProgress,
		StartTime: s.Clock.Now().UTC(), IsUserTriggered: user, ActivityID: id + "-job", DataSourceType: DatasourceTypeDisk}
}

func (s *Service) fillDatasource(rec *job.Record, ds Datasource) {
	rec.DataSourceID = ds.ResourceID
	id, _ := resource.Parse(ds.ResourceID)
	rec.DataSourceName = id.Name()
	if ds.ResourceName != "" {
		rec.DataSourceName = ds.ResourceName
	}
	rec.DataSourceLocation = ds.ResourceLocation
}

func (s *Service) fillInstance(rec *job.Record, r instanceRecord) {
	s.fillDatasource(rec, r.Resource.Properties.DataSourceInfo)
	rec.BackupInstanceID = r.Resource.ID
	rec.BackupInstanceFriendlyName = r.Resource.Properties.FriendlyName
	rec.PolicyID = r.Resource.Properties.PolicyInfo.PolicyID
	pid, _ := resource.Parse(rec.PolicyID)
	rec.PolicyName = pid.Name()
}

// InstanceInput is what a backup instance PUT says: its tags and its
// properties (the disk, the policy and the snapshot resource group).
type InstanceInput struct {
	Tags       map[string]string
	Properties Instance
}

// PutInstance creates or updates a backup instance. Checks that fail for
// other reasons than missing roles fail the request at once (400); the
// instance is then stored as ConfiguringProtection and ConfigureInstance
// finishes the configuration (the API runs it as the long-running
// operation). It reports whether the instance is new.
func (s *Service) PutInstance(ctx context.Context, c Caller, id resource.ID, in InstanceInput) (InstanceResource, bool, error) {
	if err := CheckChildName(id.Name()); err != nil {
		return InstanceResource{}, false, err
	}
	if err := resource.CheckTags(in.Tags); err != nil {
		return InstanceResource{}, false, err
	}
	if err := resource.CheckLine("properties.friendlyName", in.Properties.FriendlyName); err != nil {
		return InstanceResource{}, false, err
	}
	var out InstanceResource
	created := false
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		created = false // a re-run (store contract) decides afresh
		vaultID := id.Parent()
		old, gerr := s.getInstance(ctx, tx, id)
		switch {
		case gerr == nil:
		case resource.IsNotFound(gerr):
			created = true
		default:
			return gerr
		}
		if !created {
			if old.Deleting {
				return userError(CodeInvalidState, "The backup instance %s is being deleted.", id.Name())
			}
			if !parseOrZero(old.DiskID).Equal(parseOrZero(in.Properties.DataSourceInfo.ResourceID)) {
				return userError(CodeDatasourceImmutable, "The datasource of the backup instance %s cannot be changed (it protects %s).", id.Name(), old.DiskID)
			}
			if rg := snapshotRGParam(in.Properties); rg != "" && !parseOrZero(rg).Equal(old.snapshotRG()) {
				return withUserFacing(userError(CodeSnapshotRGImmutable,
					"The snapshot resource group of a protected disk cannot be changed: the backup instance %s uses %s.", id.Name(), old.SnapshotRG),
					"Keep the snapshot resource group, or delete the backup instance and protect the disk again.")
			}
		} else {
			n, err := tx.List(ctx, store.Query{Kind: kindInstance, Prefix: vaultID.Key() + "/backupinstances/"})
			if err != nil {
				return err
			}
			if len(n) >= MaxInstancesPerVault {
				return userError(CodeVaultLimit, "The backup vault already has the maximum of %d backup instances.", MaxInstancesPerVault)
			}
		}
		ck, err := s.checkForBackup(ctx, tx, vaultID, in.Properties, id)
		if err != nil && !IsPermissionError(err) {
			return err
		}
		r := old
		r.VaultID = ck.vault.ID
		r.DiskID = ck.diskID.String()
		r.SnapshotRG = ck.snapRG.String()
		if ck.snapRG.IsZero() {
			r.SnapshotRG = snapshotRGParam(in.Properties)
		}
		r.DiskSKU = ck.disk.SKU
		p := in.Properties
		p.ObjectType = ObjectTypeInstance
		ds := &p.DataSourceInfo
		ds.ObjectType = ObjectTypeDatasource
		ds.DatasourceType = DatasourceTypeDisk
		ds.ResourceType = DatasourceTypeDisk
		ds.ResourceName = ck.diskID.Name()
		if ds.ResourceLocation == "" {
			ds.ResourceLocation = ck.disk.Location
		}
		ds.ResourceURI = ds.ResourceID
		if p.FriendlyName == "" {
			p.FriendlyName = ck.diskID.Name()
		}
		if p.PolicyInfo.PolicyParameters != nil {
			for i := range p.PolicyInfo.PolicyParameters.DataStoreParametersList {
				dp := &p.PolicyInfo.PolicyParameters.DataStoreParametersList[i]
				dp.ObjectType = ObjectTypeOpStoreParams
				dp.DataStoreType = DataStoreOperational
			}
		}
		state := StateConfiguring
		if !created && (old.state() == StateStopped || old.state() == StateSuspended) {
			state = old.state()
		}
		p.CurrentProtectionState = state
		p.ProtectionStatus = &ProtectionStatus{Status: state}
		p.ProtectionErrorDetails = nil
		p.ProvisioningState = "Provisioning"
		p.ValidationType = ""
		r.Resource = InstanceResource{ID: id.String(), Name: id.Name(), Type: InstanceType, Tags: in.Tags, Properties: p,
			SystemData: s.stamp(old.Resource.SystemData, c)}
		out = r.Resource
		return s.putInstance(ctx, tx, r)
	})
	return out, created, err
}

// ConfigureInstance finishes configuring protection: it re-runs the checks
// and sets the instance to ProtectionConfigured, or to
// ConfiguringProtectionFailed with the error.
func (s *Service) ConfigureInstance(ctx context.Context, id resource.ID) (InstanceResource, error) {
	var out InstanceResource
	var cerr error
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		r, err := s.getInstance(ctx, tx, id)
		if err != nil {
			return err
		}
		_, cerr = s.checkForBackup(ctx, tx, id.Parent(), r.Resource.Properties, id)
		if cerr != nil && resource.AsError(cerr) == nil {
			return cerr
		}
		p := &r.Resource.Properties
		now := s.Clock.Now().UTC()
		switch {
		case cerr != nil:
			u := job.FromError(cerr)
			u.IsUserError = true
			p.CurrentProtectionState = StateConfiguringFailed
			p.ProtectionStatus = &ProtectionStatus{Status: StateConfiguringFailed, ErrorDetails: &u}
			p.ProtectionErrorDetails = &u
			p.ProvisioningState = "Failed"
		default:
			if p.CurrentProtectionState == StateConfiguring || p.CurrentProtectionState == StateConfiguringFailed {
				p.CurrentProtectionState = StateConfigured
			}
			p.ProtectionStatus = &ProtectionStatus{Status: protectionStatusOf(p.CurrentProtectionState)}
			p.ProtectionErrorDetails = nil
			p.ProvisioningState = "Succeeded"
			r.ConfiguredAt = now
			r.LastScheduled = time.Time{}
		}
		out = r.Resource
		return s.putInstance(ctx, tx, r)
	})
	if err != nil {
		return out, err
	}
	s.refresh()
	return out, cerr
}

// protectionStatusOf maps currentProtectionState to protectionStatus.status.
func protectionStatusOf(state string) string {
	switch state {
	case StateSuspended, StateProtectionError:
		return StateConfigured
	}
	return state
}

// GetInstance returns a backup instance.
func (s *Service) GetInstance(ctx context.Context, id resource.ID) (InstanceResource, error) {
	var r instanceRecord
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		r, err = s.getInstance(ctx, tx, id)
		return err
	})
	return r.withInstance(), err
}

// ListInstances lists a vault's backup instances.
func (s *Service) ListInstances(ctx context.Context, vaultID resource.ID) ([]InstanceResource, error) {
	var out []InstanceResource
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := s.getVault(ctx, tx, vaultID); err != nil {
			return err
		}
		rs, err := listJSON[instanceRecord](ctx, tx, kindInstance, vaultID.Key()+"/backupinstances/")
		for _, r := range rs {
			out = append(out, r.withInstance())
		}
		return err
	})
	return out, err
}

// SetProtection stops, suspends or resumes protection:
//
//   - stopProtection: no more backups; every recovery point is kept forever
//     (ProtectionStopped);
//   - suspendBackups: no more backups; recovery points expire as their
//     policy said, except the latest, which is kept forever
//     (BackupSchedulesSuspended);
//   - resumeProtection / resumeBackups: backups start again from the next
//     slot of the current policy; points already past their expiry are
//     deleted by the next retention run, and new points follow the current
//     policy.
func (s *Service) SetProtection(ctx context.Context, id resource.ID, action ProtectionChange, note ChangeNote) (InstanceResource, error) {
	var out InstanceResource
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		r, err := s.getInstance(ctx, tx, id)
		if err != nil {
			return err
		}
		st := r.state()
		if r.Deleting || st == StateConfiguring || st == StateConfiguringFailed {
			return withUserFacing(userError(CodeInvalidState, "The backup instance %s is in state %s; %s is not allowed until protection is configured.", id.Name(), st, action))
		}
		p := &r.Resource.Properties
		now := s.Clock.Now().UTC()
		switch action {
		case StopProtection:
			p.CurrentProtectionState = StateStopped
		case SuspendBackups:
			if st == StateStopped {
				return withUserFacing(userError(CodeInvalidState, "The backup instance %s is stopped; resume protection before suspending backups.", id.Name()))
			}
			p.CurrentProtectionState = StateSuspended
		case ResumeProtection, ResumeBackups:
			if st == StateStopped || st == StateSuspended {
				p.CurrentProtectionState = StateConfigured
				r.ConfiguredAt = now
				r.LastScheduled = time.Time{}
			}
		default:
			return fmt.Errorf("unknown protection action %q", action)
		}
		p.ProtectionStatus = &ProtectionStatus{Status: protectionStatusOf(p.CurrentProtectionState)}
		p.ProtectionErrorDetails = nil
		note.Change, note.Time = string(action), now
		r.LastChange = &note
		out = r.withInstance()
		return s.putInstance(ctx, tx, r)
	})
	if err == nil {
		s.refresh()
	}
	return out, err
}

// StartDeleteInstance marks a backup instance as being deleted (no more
// backups), cancels its queued backups and queues the job that deletes its
// recovery points, their snapshots and then the instance. It returns the
// job's ID ("" if the instance did not exist).
func (s *Service) StartDeleteInstance(ctx context.Context, id resource.ID, note ChangeNote) (string, error) {
	jobID := ""
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		r, err := s.getInstance(ctx, tx, id)
		if resource.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := s.getVault(ctx, tx, id.Parent())
		if err != nil {
			return err
		}
		r.Deleting = true
		r.Resource.Properties.ProvisioningState = "Deleting"
		note.Change, note.Time = ChangeDelete, s.Clock.Now().UTC()
		r.LastChange = &note
		if err := s.putInstance(ctx, tx, r); err != nil {
			return err
		}
		rec := s.newJobID(v, job.OpDeleteProtection, job.CategoryManagement, true, derivedGUID(r.Resource.ID, "delete", r.Resource.SystemData.LastModifiedAt.String()))
		s.fillInstance(&rec, r)
		for k, v := range map[string]string{DetailReason: note.Reason, DetailComments: note.Comments, DetailRequestedBy: note.By} {
			if v != "" {
				rec.Details = withDetail(rec.Details, k, v)
			}
		}
		rec.SubTasks = []job.SubTask{{TaskID: 1, TaskName: "Delete recovery points", TaskStatus: string(job.InProgress)}}
		if old, err := job.Get(ctx, tx, v.ID, rec.ID); err == nil && !old.Status.IsTerminal() {
			jobID = old.ResourceID()
			return nil
		}
		if err := job.Put(ctx, tx, rec, store.PutOptions{}); err != nil {
			return err
		}
		jobID = rec.ResourceID()
		payload, _ := json.Marshal(taskPayload{InstanceID: r.Resource.ID, VaultID: v.ID, JobID: rec.ID})
		err = s.Queue.EnqueueTx(ctx, tx, job.Task{ID: "delete-" + rec.ID + "-" + newID()[:8], Type: TaskDeleteInstance, Target: strings.ToLower(r.DiskID), Payload: payload})
		return err
	})
	if err == nil {
		s.Queue.Wake()
		s.refresh()
	}
	return jobID, err
}

// taskPayload is the payload of every dataprotection task.
type taskPayload struct {
	InstanceID string    `json:"instanceId"`
	VaultID    string    `json:"vaultId"`
	JobID      string    `json:"jobId"`
	Rule       string    `json:"rule,omitempty"`
	Tag        string    `json:"tag,omitempty"`
	Due        time.Time `json:"due,omitzero"`
	// Restore.
	RecoveryPoint string `json:"recoveryPoint,omitempty"`
	TargetDiskID  string `json:"targetDiskId,omitempty"`
	Location      string `json:"location,omitempty"`
}
