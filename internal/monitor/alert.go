package monitor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"coffer/internal/resource"
	"coffer/internal/store"
)

// KindAlert is the store kind of alerts. Keys are the lower-cased alert
// IDs, which live under their vault's ID, so a vault's alerts list by
// prefix and leave with the vault.
const KindAlert = "Microsoft.AlertsManagement/alerts"

// AlertsProvider is the provider segment of alert IDs:
// {vault}/providers/Microsoft.AlertsManagement/alerts/{name}.
const AlertsProvider = "/providers/Microsoft.AlertsManagement/alerts/"

// Rule is what raised an alert.
type Rule string

// Alert rules. BackupFailure and RestoreFailure are Azure Backup's
// built-in job failure alerts (switched by the vault's
// alertsForAllJobFailures); RecoveryPointObjectiveMissed is Coffer's.
const (
	RuleBackupFailure  Rule = "BackupFailure"
	RuleRestoreFailure Rule = "RestoreFailure"
	RuleRPOMissed      Rule = "RecoveryPointObjectiveMissed"
	// RuleTest is the notification a target's test sends; it is never
	// stored.
	RuleTest Rule = "TestNotification"
)

// Title is the rule's display name (the alert's name on the wire).
func (r Rule) Title() string {
	switch r {
	case RuleBackupFailure:
		return "Backup Failure"
	case RuleRestoreFailure:
		return "Restore Failure"
	case RuleRPOMissed:
		return "Recovery Point Objective Missed"
	case RuleTest:
		return "Test Notification"
	}
	return string(r)
}

// State is an alert's user-set state.
type State string

// Alert states (Azure Monitor's).
const (
	StateNew          State = "New"
	StateAcknowledged State = "Acknowledged"
	StateClosed       State = "Closed"
)

// ParseState returns the state named s (case-insensitively).
func ParseState(s string) (State, bool) {
	for _, st := range []State{StateNew, StateAcknowledged, StateClosed} {
		if strings.EqualFold(s, string(st)) {
			return st, true
		}
	}
	return "", false
}

// Condition is whether an alert's condition still holds.
type Condition string

// Monitor conditions (Azure Monitor's).
const (
	Fired    Condition = "Fired"
	Resolved Condition = "Resolved"
)

// Severities (Azure Monitor's, Sev0 highest).
const (
	Sev1 = "Sev1"
	Sev4 = "Sev4"
)

// MonitorService is the alerts' monitorService.
const MonitorService = "Azure Backup"

// Alert is one alert.
type Alert struct {
	ID        string    `json:"id"`   // {vault}/providers/Microsoft.AlertsManagement/alerts/{name}
	Name      string    `json:"name"` // a GUID
	Rule      Rule      `json:"rule"`
	Severity  string    `json:"severity"`
	State     State     `json:"state"`
	Condition Condition `json:"condition"`
	// Description says what happened, in a sentence.
	Description string `json:"description"`

	VaultID      string `json:"vaultId"`
	InstanceID   string `json:"instanceId,omitempty"`
	InstanceName string `json:"instanceName,omitempty"`
	DataSourceID string `json:"dataSourceId,omitempty"`

	// Job failures: the first and latest failed job (ARM IDs), the
	// error, and how many failures with this error the alert stands for
	// (Azure Backup raises one alert per item and error code while it is
	// open, and counts the repeats).
	JobID             string   `json:"jobId,omitempty"`
	LastJobID         string   `json:"lastJobId,omitempty"`
	ErrorCode         string   `json:"errorCode,omitempty"`
	ErrorMessage      string   `json:"errorMessage,omitempty"`
	RecommendedAction []string `json:"recommendedAction,omitempty"`
	Occurrences       int      `json:"occurrences"`
	Jobs              []string `json:"jobs,omitempty"` // the latest jobs counted (bounded)

	// Missed recovery point objective: the latest recovery point (zero:
	// none), when a backup was due and when the grace period ended.
	LastRecoveryPoint time.Time     `json:"lastRecoveryPoint,omitzero"`
	BackupDue         time.Time     `json:"backupDue,omitzero"`
	Deadline          time.Time     `json:"deadline,omitzero"`
	Interval          time.Duration `json:"interval,omitempty"`

	StartTime      time.Time `json:"startTime"`
	LastModified   time.Time `json:"lastModified"`
	LastModifiedBy string    `json:"lastModifiedBy"`
	ResolvedTime   time.Time `json:"resolvedTime,omitzero"`
	Comment        string    `json:"comment,omitempty"`
	ETag           uint64    `json:"-"`
}

// maxJobs bounds Alert.Jobs.
const maxJobs = 20

// active reports whether the alert's condition holds and nobody closed it:
// a repeat of the same failure counts in it rather than raising another.
func (a Alert) active() bool { return a.Condition == Fired && a.State != StateClosed }

// AlertID returns the ID of alert name of a vault.
func AlertID(vaultID, name string) string { return vaultID + AlertsProvider + name }

// derivedGUID makes a GUID-shaped name from parts, so that evaluating the
// same event twice makes the same alert.
func derivedGUID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.ToLower(strings.Join(parts, "\x00"))))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func alertKey(id string) string { return strings.ToLower(id) }

func putAlert(ctx context.Context, tx store.Tx, a *Alert, opts store.PutOptions) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode alert %s: %w", a.ID, err)
	}
	o := &store.Object{Kind: KindAlert, Key: alertKey(a.ID), Data: b}
	if err := tx.Put(ctx, o, opts); err != nil {
		return fmt.Errorf("put alert %s: %w", a.ID, err)
	}
	a.ETag = o.ModifyIndex
	return nil
}

func decodeAlert(o store.Object) (Alert, error) {
	var a Alert
	if err := json.Unmarshal(o.Data, &a); err != nil {
		return a, fmt.Errorf("decode alert %s: %w", o.Key, err)
	}
	a.ETag = o.ModifyIndex
	return a, nil
}

// listAlerts returns the alerts whose IDs start with prefix (lower-case),
// oldest first.
func listAlerts(ctx context.Context, tx store.Tx, prefix string) ([]Alert, error) {
	objs, err := tx.List(ctx, store.Query{Kind: KindAlert, Prefix: prefix})
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	out := make([]Alert, 0, len(objs))
	for _, o := range objs {
		a, err := decodeAlert(o)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].StartTime.Equal(out[j].StartTime) {
			return out[i].StartTime.Before(out[j].StartTime)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// AlertFilter selects alerts in ListAlerts; zero fields select all.
type AlertFilter struct {
	State     State
	Condition Condition
	Severity  string
	Rule      Rule
}

func (f AlertFilter) match(a Alert) bool {
	return (f.State == "" || f.State == a.State) && (f.Condition == "" || f.Condition == a.Condition) &&
		(f.Severity == "" || strings.EqualFold(f.Severity, a.Severity)) && (f.Rule == "" || strings.EqualFold(string(f.Rule), string(a.Rule)))
}

// ErrAlertNotFound is wrapped by the not-found error of an alert.
var ErrAlertNotFound = errors.New("alert not found")

func alertNotFound(name string) error {
	e := resource.Errorf(resource.KindNotFound, "ResourceNotFound", "The alert '%s' was not found.", name)
	e.Err = ErrAlertNotFound
	return e
}

// scopePrefix is the key prefix of everything under scope ("" for the
// tenant root).
func scopePrefix(scope resource.ID) string {
	if scope.Subscription == "" {
		return ""
	}
	return scope.Key() + "/"
}

// ListAlerts lists the alerts under scope (a subscription, a resource
// group or a vault) that f selects, oldest first. Callers authorize the
// list at scope.
func (s *Service) ListAlerts(ctx context.Context, scope resource.ID, f AlertFilter) ([]Alert, error) {
	var out []Alert
	err := s.Store.View(ctx, func(tx store.Tx) error {
		all, err := listAlerts(ctx, tx, scopePrefix(scope))
		if err != nil {
			return err
		}
		out = out[:0]
		for _, a := range all {
			if f.match(a) {
				out = append(out, a)
			}
		}
		return nil
	})
	return out, err
}

// findAlert finds alert name under scope.
func findAlert(ctx context.Context, tx store.Tx, scope resource.ID, name string) (Alert, error) {
	all, err := listAlerts(ctx, tx, scopePrefix(scope))
	if err != nil {
		return Alert{}, err
	}
	for _, a := range all {
		if strings.EqualFold(a.Name, name) {
			return a, nil
		}
	}
	return Alert{}, alertNotFound(name)
}

// GetAlert returns alert name, found under scope.
func (s *Service) GetAlert(ctx context.Context, scope resource.ID, name string) (Alert, error) {
	var out Alert
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = findAlert(ctx, tx, scope, name)
		return err
	})
	return out, err
}

// ChangeState sets an alert's state (New, Acknowledged or Closed) for the
// user by, with an optional comment, and returns it.
func (s *Service) ChangeState(ctx context.Context, scope resource.ID, name string, st State, comment, by string) (Alert, error) {
	if len(comment) > 4096 {
		return Alert{}, resource.Errorf(resource.KindBadRequest, "InvalidParameter", "The comment is longer than 4096 characters.").WithTarget("comment")
	}
	var out Alert
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		a, err := findAlert(ctx, tx, scope, name)
		if err != nil {
			return err
		}
		a.State, a.LastModified, a.LastModifiedBy = st, s.Clock.Now().UTC(), by
		if comment != "" {
			a.Comment = comment
		}
		if err := putAlert(ctx, tx, &a, store.PutOptions{MatchIndex: a.ETag}); err != nil {
			return err
		}
		out = a
		return nil
	})
	if err == nil {
		s.logger().Info("alert state changed", "alert", out.ID, "rule", out.Rule, "state", out.State, "principal", by)
	}
	return out, err
}

// activeAlert returns the open alert of rule for an instance (and error
// code, for failures), if any.
func activeAlert(all []Alert, rule Rule, instanceID, code string) (Alert, bool) {
	for _, a := range all {
		if a.active() && a.Rule == rule && strings.EqualFold(a.InstanceID, instanceID) && (code == "" || a.ErrorCode == code) {
			return a, true
		}
	}
	return Alert{}, false
}

func addJob(jobs []string, id string) []string {
	if slices.Contains(jobs, id) {
		return jobs
	}
	jobs = append(jobs, id)
	if len(jobs) > maxJobs {
		jobs = jobs[len(jobs)-maxJobs:]
	}
	return jobs
}
