package dataprotection

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"coffer/internal/resource"
	"coffer/internal/schedule"
	"coffer/internal/store"
)

// MonitoredKinds are the store kinds ListProtection reads: a reader that
// caches its result keys the cache on their KindIndex.
var MonitoredKinds = []string{kindVault, kindPolicy, kindInstance, kindRecoveryPoint}

// Protection is what monitoring needs to know about one backup instance:
// whether it takes scheduled backups, on what schedule, and when its
// latest recovery point was made. It is read from the metadata store, so
// that monitoring follows Microsoft.DataProtection without hooking into
// its code paths.
type Protection struct {
	VaultID      string
	InstanceID   string
	InstanceName string
	DiskID       string
	PolicyID     string
	State        string // currentProtectionState
	// Protecting reports whether the instance takes scheduled backups
	// (ProtectionConfigured or ProtectionError, not being deleted).
	Protecting bool
	// ConfiguredAt is when protection was configured, resumed or its
	// policy changed: no scheduled backup was due before it.
	ConfiguredAt time.Time
	// LastRecoveryPoint is the time of the latest recovery point (zero:
	// none); RecoveryPoints counts them.
	LastRecoveryPoint time.Time
	RecoveryPoints    int
	// Schedule is the policy's backup schedule (nil when the policy
	// cannot be read); Interval its period.
	Schedule *schedule.Schedule
	Interval time.Duration
}

// ListProtection returns every backup instance's protection, in key order.
func ListProtection(ctx context.Context, tx store.Tx) ([]Protection, error) {
	insts, err := listJSON[instanceRecord](ctx, tx, kindInstance, "")
	if err != nil {
		return nil, err
	}
	rps, err := listJSON[rpRecord](ctx, tx, kindRecoveryPoint, "")
	if err != nil {
		return nil, err
	}
	type latest struct {
		t time.Time
		n int
	}
	last := map[string]latest{}
	for _, rp := range rps {
		if rp.Deleting {
			continue
		}
		k := strings.ToLower(rp.InstanceID)
		l := last[k]
		l.n++
		if rp.Time.After(l.t) {
			l.t = rp.Time
		}
		last[k] = l
	}
	policies := map[string]*BaseBackupPolicyResource{}
	out := make([]Protection, 0, len(insts))
	for _, r := range insts {
		p := Protection{VaultID: r.VaultID, InstanceID: r.Resource.ID, InstanceName: r.Resource.Name, DiskID: r.DiskID,
			PolicyID: r.Resource.Properties.PolicyInfo.PolicyID, State: r.state(), Protecting: r.protecting(),
			ConfiguredAt: r.ConfiguredAt}
		l := last[strings.ToLower(r.Resource.ID)]
		p.LastRecoveryPoint, p.RecoveryPoints = l.t, l.n
		pk := strings.ToLower(p.PolicyID)
		pol, seen := policies[pk]
		if !seen {
			var v BaseBackupPolicyResource
			if err := getJSON(ctx, tx, kindPolicy, pk, &v); err == nil {
				pol = &v
			} else if !isNotFound(err) {
				return nil, err
			}
			policies[pk] = pol
		}
		if pol != nil {
			if sc, err := pol.Properties.Schedule(); err == nil {
				p.Schedule, p.Interval = sc, sc.Interval().Every
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// Azure Monitor alert settings of a vault
// (properties.monitoringSettings.azureMonitorAlertSettings).
const (
	AlertsEnabled  = "Enabled"
	AlertsDisabled = "Disabled"
)

// JobFailureAlerts reports whether a vault raises Azure Monitor alerts for
// failed jobs: its monitoringSettings.azureMonitorAlertSettings.
// alertsForAllJobFailures. As in Azure, built-in job failure alerts are on
// unless the vault says Disabled. A vault that does not exist (any more)
// raises none.
func JobFailureAlerts(ctx context.Context, tx store.Tx, vaultID string) (bool, error) {
	var v VaultResource
	if err := getJSON(ctx, tx, kindVault, strings.ToLower(vaultID), &v); err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return alertsForAllJobFailures(v.Properties.MonitoringSettings) != AlertsDisabled, nil
}

// alertsForAllJobFailures reads the setting from a vault's stored
// monitoringSettings ("" when absent). Property names match
// case-insensitively, as the vault's other properties do.
func alertsForAllJobFailures(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var ms struct {
		AzureMonitorAlertSettings *struct {
			AlertsForAllJobFailures string `json:"alertsForAllJobFailures"`
		} `json:"azureMonitorAlertSettings"`
	}
	if json.Unmarshal(raw, &ms) != nil || ms.AzureMonitorAlertSettings == nil {
		return ""
	}
	if v, ok := oneOf(ms.AzureMonitorAlertSettings.AlertsForAllJobFailures, []string{AlertsEnabled, AlertsDisabled}); ok {
		return v
	}
	return ""
}

// VaultOfInstance returns the vault ID of a backup instance ID.
func VaultOfInstance(instanceID string) string {
	id, err := resource.Parse(instanceID)
	if err != nil || !id.IsType(InstanceType) {
		return ""
	}
	return id.Parent().String()
}
