package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"coffer/internal/capacity"
	"coffer/internal/identity"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// Kind is the store kind of job records. Keys are the lower-cased job
// resource IDs, so a vault's jobs list by prefix and leave with its group.
const Kind = "Microsoft.DataProtection/backupVaults/backupJobs"

// ResourceType is the ARM type of a job.
const ResourceType = "Microsoft.DataProtection/backupVaults/backupJobs"

// RetentionPeriod is how long finished jobs are kept (Azure keeps backup
// jobs for 30 days; Coffer keeps them a little longer).
const RetentionPeriod = 31 * 24 * time.Hour

// Status is a job's status as Azure Backup reports it.
type Status string

// Job statuses.
const (
	InProgress Status = "InProgress"
	Completed  Status = "Completed"
	Failed     Status = "Failed"
	Cancelled  Status = "Cancelled"
	// CompletedWithWarnings is a restore whose disk exists but cannot
	// hydrate for now (no space); it goes back to Completed when the
	// hydration moves again. Its errorDetails say why.
	CompletedWithWarnings Status = "CompletedWithWarnings"
)

// IsTerminal reports whether s is final.
func (s Status) IsTerminal() bool {
	return s == Completed || s == Failed || s == Cancelled || s == CompletedWithWarnings
}

// Operations (operation / operationCategory) of disk backup jobs.
const (
	OpBackup            = "Backup"
	OpRestore           = "Restore"
	OpRetention         = "Retention"
	OpValidateForBackup = "ValidateForBackup"
	OpValidateRestore   = "ValidateRestore"
	OpDeleteProtection  = "DeleteBackupInstance"
	CategoryBackup      = "Backup"
	CategoryRestore     = "Restore"
	CategoryRetention   = "Retention"
	CategoryValidation  = "Validation"
	CategoryManagement  = "Management"
)

// UserFacingError is Azure Backup's error detail (job errorDetails,
// protectionStatus.errorDetails).
type UserFacingError struct {
	Code              string   `json:"code"`
	Message           string   `json:"message"`
	RecommendedAction []string `json:"recommendedAction,omitempty"`
	IsRetryable       bool     `json:"isRetryable"`
	IsUserError       bool     `json:"isUserError"`
	Target            string   `json:"target,omitempty"`
}

// FromError converts an error to a UserFacingError (a *resource.Error
// keeps its code; anything else is an internal error). IsRetryable says
// whether the same request may succeed later without the user changing
// it: after an internal error, once the operator has freed space
// (InsufficientStorage), or once the node that holds the disk is back
// (Unavailable: NodeUnavailable). Those are not the user's errors; the
// others (bad input, missing permissions, conflicts) are, and retrying
// them unchanged does not help.
func FromError(err error) UserFacingError {
	if e := resource.AsError(err); e != nil {
		u := UserFacingError{Code: e.Code, Message: e.Message, Target: e.Target, IsUserError: true}
		switch e.Kind {
		case resource.KindInternal, resource.KindUnavailable:
			u.IsUserError, u.IsRetryable = false, true
		case resource.KindInsufficientStorage:
			u.IsUserError, u.IsRetryable = false, true
			u.RecommendedAction = []string{capacity.RecommendedAction}
		}
		return u
	}
	return UserFacingError{Code: "InternalError", Message: "The job failed: " + err.Error(), IsRetryable: true}
}

// SubTask is one step of a job.
type SubTask struct {
	TaskID       int    `json:"taskId"`
	TaskName     string `json:"taskName"`
	TaskStatus   string `json:"taskStatus"`
	TaskProgress string `json:"taskProgress,omitempty"`
}

// RecoveryPointRef names a recovery point in a job.
type RecoveryPointRef struct {
	ID   string    `json:"recoveryPointID"`
	Time time.Time `json:"recoveryPointTime"`
}

// Record is a job.
type Record struct {
	ID      string `json:"id"`      // GUID, the job's name
	VaultID string `json:"vaultId"` // ARM ID of the vault
	// Operation and OperationCategory: Backup/Backup, Restore/Restore, …
	Operation         string    `json:"operation"`
	OperationCategory string    `json:"operationCategory"`
	Status            Status    `json:"status"`
	StartTime         time.Time `json:"startTime"`
	EndTime           time.Time `json:"endTime,omitzero"`
	IsUserTriggered   bool      `json:"isUserTriggered"`
	ActivityID        string    `json:"activityId"`
	// InitiatedBy is the principal whose request created the job (empty
	// for the scheduler's): Put stamps it from the request's context.
	InitiatedBy string `json:"initiatedBy,omitempty"`

	DataSourceID       string `json:"dataSourceId"`
	DataSourceName     string `json:"dataSourceName"`
	DataSourceType     string `json:"dataSourceType"`
	DataSourceLocation string `json:"dataSourceLocation"`

	BackupInstanceID           string `json:"backupInstanceId,omitempty"`
	BackupInstanceFriendlyName string `json:"backupInstanceFriendlyName"`
	PolicyID                   string `json:"policyId,omitempty"`
	PolicyName                 string `json:"policyName,omitempty"`

	ErrorDetails []UserFacingError `json:"errorDetails,omitempty"`
	// Progress is 0-100.
	Progress         int               `json:"progress"`
	BytesTransferred int64             `json:"bytesTransferred,omitempty"`
	SubTasks         []SubTask         `json:"subTasks,omitempty"`
	Details          map[string]string `json:"details,omitempty"`
	SourceRP         *RecoveryPointRef `json:"sourceRecoveryPoint,omitempty"`
	TargetRP         *RecoveryPointRef `json:"targetRecoveryPoint,omitempty"`
	Destination      string            `json:"recoveryDestination,omitempty"`
}

// DetailCancelReason is the Details key (extendedInfo.additionalDetails)
// that says who cancelled a job; set by the cancel request, it stays while
// a running job's worker stops.
const DetailCancelReason = "CancelReason"

// Cancellable reports whether the job can be cancelled: a backup or a
// restore in progress that no one has asked to cancel yet (see
// dataprotection's CancelJob).
func (r Record) Cancellable() bool {
	return r.Status == InProgress && (r.Operation == OpBackup || r.Operation == OpRestore) && r.Details[DetailCancelReason] == ""
}

// ResourceID is the job's ARM ID.
func (r Record) ResourceID() string {
	return r.VaultID + "/backupJobs/" + r.ID
}

// Key is the store key of a job.
func Key(vaultID, id string) string {
	return strings.ToLower(vaultID + "/backupJobs/" + id)
}

// Finish sets the terminal status and end time (and the error, if any).
func (r *Record) Finish(now time.Time, err error) {
	r.EndTime = now.UTC()
	if err != nil {
		r.Status = Failed
		r.ErrorDetails = []UserFacingError{FromError(err)}
	} else {
		r.Status = Completed
		r.Progress = 100
	}
	for i := range r.SubTasks {
		if r.SubTasks[i].TaskStatus == string(InProgress) {
			r.SubTasks[i].TaskStatus = string(r.Status)
		}
	}
}

// Put writes a job record. A new record (CreateOnly) made while serving a
// request records the request's principal in InitiatedBy.
func Put(ctx context.Context, tx store.Tx, r Record, opts store.PutOptions) error {
	if p, ok := identity.PrincipalFrom(ctx); ok && opts.CreateOnly && r.InitiatedBy == "" {
		r.InitiatedBy = p.ID
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", r.ID, err)
	}
	if err := tx.Put(ctx, &store.Object{Kind: Kind, Key: Key(r.VaultID, r.ID), Data: b}, opts); err != nil {
		return fmt.Errorf("put job %s: %w", r.ID, err)
	}
	return nil
}

// ErrNotFound is wrapped when a job does not exist.
var ErrNotFound = errors.New("job not found")

// Get reads a job record.
func Get(ctx context.Context, tx store.Tx, vaultID, id string) (Record, error) {
	var r Record
	o, err := tx.Get(ctx, Kind, Key(vaultID, id))
	if errors.Is(err, store.ErrNotFound) {
		return r, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(o.Data, &r); err != nil {
		return r, fmt.Errorf("decode job %s: %w", id, err)
	}
	return r, nil
}

// Update reads a job, applies fn and writes it back.
func Update(ctx context.Context, tx store.Tx, vaultID, id string, fn func(r *Record)) (Record, error) {
	r, err := Get(ctx, tx, vaultID, id)
	if err != nil {
		return r, err
	}
	fn(&r)
	return r, Put(ctx, tx, r, store.PutOptions{})
}

// Filter selects jobs in List. Zero fields select everything.
type Filter struct {
	Status    Status
	Operation string // an operation, or OnDemandBackup / ScheduledBackup as the Azure CLI names them
	From, To  time.Time
	// BackupInstanceID restricts to one backup instance.
	BackupInstanceID string

	where predicate // a parsed $filter (ParseFilter)
}

// Match reports whether r passes the filter.
func (f Filter) Match(r Record) bool {
	if f.Status != "" && !strings.EqualFold(string(f.Status), string(r.Status)) {
		return false
	}
	switch {
	case f.Operation == "":
	case strings.EqualFold(f.Operation, "OnDemandBackup"):
		if r.Operation != OpBackup || !r.IsUserTriggered {
			return false
		}
	case strings.EqualFold(f.Operation, "ScheduledBackup"):
		if r.Operation != OpBackup || r.IsUserTriggered {
			return false
		}
	case !strings.EqualFold(f.Operation, r.Operation):
		return false
	}
	if !f.From.IsZero() && r.StartTime.Before(f.From) {
		return false
	}
	if !f.To.IsZero() && r.StartTime.After(f.To) {
		return false
	}
	if f.BackupInstanceID != "" && !strings.EqualFold(f.BackupInstanceID, r.BackupInstanceID) {
		return false
	}
	return f.where == nil || f.where(r)
}

// ListPrefix returns the jobs whose keys start with prefix (a vault's
// lower-cased ID + "/backupjobs/", or "" for all), filtered, newest first.
func ListPrefix(ctx context.Context, tx store.Tx, prefix string, f Filter) ([]Record, error) {
	objs, err := tx.List(ctx, store.Query{Kind: Kind, Prefix: prefix})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	var out []Record
	for _, o := range objs {
		var r Record
		if err := json.Unmarshal(o.Data, &r); err != nil {
			return nil, fmt.Errorf("decode job %s: %w", o.Key, err)
		}
		if f.Match(r) {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].StartTime.Equal(out[j].StartTime) {
			return out[i].StartTime.After(out[j].StartTime)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// List returns a vault's jobs, filtered, newest first.
func List(ctx context.Context, tx store.Tx, vaultID string, f Filter) ([]Record, error) {
	return ListPrefix(ctx, tx, strings.ToLower(vaultID)+"/backupjobs/", f)
}

// Cleanup deletes finished jobs that ended before now - RetentionPeriod.
func Cleanup(ctx context.Context, st store.Store, now time.Time) (int, error) {
	n := 0
	cutoff := now.Add(-RetentionPeriod)
	err := st.Update(ctx, func(tx store.Tx) error {
		n = 0 // a re-run counts afresh
		objs, err := tx.List(ctx, store.Query{Kind: Kind})
		if err != nil {
			return err
		}
		for _, o := range objs {
			var r Record
			if err := json.Unmarshal(o.Data, &r); err != nil {
				return fmt.Errorf("decode job %s: %w", o.Key, err)
			}
			if r.Status.IsTerminal() && r.EndTime.Before(cutoff) {
				if err := tx.Delete(ctx, Kind, o.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("clean up jobs: %w", err)
	}
	return n, nil
}

// Resource is the AzureBackupJobResource wire shape.
type Resource struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties Wire   `json:"properties"`
}

// Wire is the AzureBackupJob wire shape (armdataprotection AzureBackupJob).
type Wire struct {
	ActivityID                 string            `json:"activityID"`
	BackupInstanceFriendlyName string            `json:"backupInstanceFriendlyName"`
	BackupInstanceID           string            `json:"backupInstanceId,omitempty"`
	DataSourceID               string            `json:"dataSourceId"`
	DataSourceLocation         string            `json:"dataSourceLocation"`
	DataSourceName             string            `json:"dataSourceName"`
	DataSourceType             string            `json:"dataSourceType"`
	Duration                   string            `json:"duration,omitempty"`
	EndTime                    string            `json:"endTime,omitempty"`
	ErrorDetails               []UserFacingError `json:"errorDetails,omitempty"`
	ExtendedInfo               *ExtendedInfo     `json:"extendedInfo,omitempty"`
	IsUserTriggered            bool              `json:"isUserTriggered"`
	Operation                  string            `json:"operation"`
	OperationCategory          string            `json:"operationCategory"`
	PolicyID                   string            `json:"policyId,omitempty"`
	PolicyName                 string            `json:"policyName,omitempty"`
	ProgressEnabled            bool              `json:"progressEnabled"`
	SourceResourceGroup        string            `json:"sourceResourceGroup"`
	SourceSubscriptionID       string            `json:"sourceSubscriptionID"`
	StartTime                  string            `json:"startTime"`
	Status                     string            `json:"status"`
	SubscriptionID             string            `json:"subscriptionId"`
	SupportedActions           []string          `json:"supportedActions"`
	VaultName                  string            `json:"vaultName"`
}

// ExtendedInfo is AzureBackupJob.extendedInfo.
type ExtendedInfo struct {
	AdditionalDetails      map[string]string `json:"additionalDetails,omitempty"`
	DataTransferredInBytes *float64          `json:"dataTransferredInBytes,omitempty"`
	RecoveryDestination    string            `json:"recoveryDestination,omitempty"`
	SourceRecoverPoint     *RecoveryPointRef `json:"sourceRecoverPoint,omitempty"`
	TargetRecoverPoint     *RecoveryPointRef `json:"targetRecoverPoint,omitempty"`
	SubTasks               []SubTask         `json:"subTasks,omitempty"`
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.0000000Z")
}

// Duration formats a job's duration as ISO 8601 (PT6M5.7409896S).
func Duration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	var b strings.Builder
	b.WriteString("PT")
	if h := d / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%dH", h)
	}
	if m := d / time.Minute % 60; m > 0 {
		fmt.Fprintf(&b, "%dM", m)
	}
	if secs := d % time.Minute; secs > 0 || b.Len() == 2 {
		b.WriteString(strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.7f", secs.Seconds()), "0"), "."))
		b.WriteString("S")
	}
	return b.String()
}

// ToResource returns the job's wire shape; now is used for the duration of
// a running job.
func (r Record) ToResource(now time.Time) Resource {
	vid, _ := resource.Parse(r.VaultID)
	dsID, _ := resource.Parse(r.DataSourceID)
	end := r.EndTime
	if end.IsZero() {
		end = now
	}
	ei := &ExtendedInfo{AdditionalDetails: r.Details, RecoveryDestination: r.Destination,
		SourceRecoverPoint: r.SourceRP, TargetRecoverPoint: r.TargetRP, SubTasks: r.SubTasks}
	if r.BytesTransferred > 0 {
		b := float64(r.BytesTransferred)
		ei.DataTransferredInBytes = &b
	}
	if r.Status == InProgress {
		if ei.AdditionalDetails == nil {
			ei.AdditionalDetails = map[string]string{}
		} else {
			cp := make(map[string]string, len(r.Details)+1)
			for k, v := range r.Details {
				cp[k] = v
			}
			ei.AdditionalDetails = cp
		}
		ei.AdditionalDetails["Progress"] = fmt.Sprintf("%d%%", r.Progress)
	}
	actions := []string{""}
	if r.Cancellable() {
		actions = []string{"Cancellable"}
	}
	return Resource{
		ID: r.ResourceID(), Name: r.ID, Type: ResourceType,
		Properties: Wire{
			ActivityID: r.ActivityID, BackupInstanceFriendlyName: r.BackupInstanceFriendlyName,
			BackupInstanceID: r.BackupInstanceID, DataSourceID: r.DataSourceID,
			DataSourceLocation: r.DataSourceLocation, DataSourceName: r.DataSourceName, DataSourceType: r.DataSourceType,
			Duration: Duration(end.Sub(r.StartTime)), EndTime: formatTime(r.EndTime), ErrorDetails: r.ErrorDetails,
			ExtendedInfo: ei, IsUserTriggered: r.IsUserTriggered, Operation: r.Operation, OperationCategory: r.OperationCategory,
			PolicyID: r.PolicyID, PolicyName: r.PolicyName, ProgressEnabled: r.Status == InProgress,
			SourceResourceGroup: dsID.ResourceGroup, SourceSubscriptionID: dsID.Subscription,
			StartTime: formatTime(r.StartTime), Status: string(r.Status), SubscriptionID: vid.Subscription,
			SupportedActions: actions, VaultName: vid.Name(),
		},
	}
}
