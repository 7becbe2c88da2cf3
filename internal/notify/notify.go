// Package notify delivers alert notifications for package monitor: a
// webhook (an HTTPS or HTTP POST of the alert in Azure Monitor's common
// alert schema, signed with HMAC-SHA256 under the target's secret) and
// email over SMTP with STARTTLS (net/smtp; Coffer never sends mail, nor a
// password, in clear). It owns the wire formats of notifications; what to
// send, to whom and when to try again is the monitor's.
package notify

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"coffer/internal/monitor"
)

// Timeout bounds one delivery attempt.
const Timeout = 30 * time.Second

// tlsConfig trusts the system's roots plus the target's CA bundle.
func tlsConfig(t monitor.Target, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if t.CACertificate == "" {
		return cfg, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM([]byte(t.CACertificate)) {
		return nil, errors.New("the target's caCertificate holds no PEM certificate")
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// CommonAlert is Azure Monitor's common alert schema, the body of a
// webhook notification.
type CommonAlert struct {
	SchemaID string          `json:"schemaId"` // azureMonitorCommonAlertSchema
	Data     CommonAlertData `json:"data"`
}

// CommonAlertData is the schema's data.
type CommonAlertData struct {
	Essentials   Essentials   `json:"essentials"`
	AlertContext AlertContext `json:"alertContext"`
}

// Essentials are the schema's essentials.
type Essentials struct {
	AlertID             string   `json:"alertId"`
	AlertRule           string   `json:"alertRule"`
	Severity            string   `json:"severity"`
	SignalType          string   `json:"signalType"`
	MonitorCondition    string   `json:"monitorCondition"`
	MonitoringService   string   `json:"monitoringService"`
	AlertTargetIDs      []string `json:"alertTargetIDs"`
	ConfigurationItems  []string `json:"configurationItems"`
	OriginAlertID       string   `json:"originAlertId"`
	FiredDateTime       string   `json:"firedDateTime"`
	ResolvedDateTime    string   `json:"resolvedDateTime,omitempty"`
	Description         string   `json:"description"`
	EssentialsVersion   string   `json:"essentialsVersion"`
	AlertContextVersion string   `json:"alertContextVersion"`
}

// AlertContext is the Azure Backup part of the alert.
type AlertContext struct {
	DeliveryID        string   `json:"deliveryId"`
	AlertState        string   `json:"alertState"`
	AlertName         string   `json:"alertName"`
	Vault             string   `json:"vault"`
	BackupInstance    string   `json:"backupInstance,omitempty"`
	BackupInstanceID  string   `json:"backupInstanceId,omitempty"`
	DataSourceID      string   `json:"dataSourceId,omitempty"`
	JobID             string   `json:"jobId,omitempty"`
	LatestJobID       string   `json:"latestJobId,omitempty"`
	ErrorCode         string   `json:"errorCode,omitempty"`
	ErrorMessage      string   `json:"errorMessage,omitempty"`
	RecommendedAction []string `json:"recommendedAction,omitempty"`
	Occurrences       int      `json:"occurrences"`
	LastRecoveryPoint string   `json:"lastRecoveryPoint,omitempty"`
	BackupDue         string   `json:"backupDue,omitempty"`
	Deadline          string   `json:"deadline,omitempty"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// Common returns n in the common alert schema.
func Common(n monitor.Notification) CommonAlert {
	a := n.Alert
	items := []string{}
	if a.InstanceName != "" {
		items = append(items, a.InstanceName)
	}
	targets := []string{}
	if a.VaultID != "" {
		targets = append(targets, a.VaultID)
	}
	origin := a.JobID
	if origin == "" {
		origin = a.Name
	}
	return CommonAlert{SchemaID: "azureMonitorCommonAlertSchema", Data: CommonAlertData{
		Essentials: Essentials{AlertID: a.ID, AlertRule: string(a.Rule), Severity: a.Severity, SignalType: "Log",
			MonitorCondition: string(n.Event), MonitoringService: monitor.MonitorService, AlertTargetIDs: targets,
			ConfigurationItems: items, OriginAlertID: origin, FiredDateTime: rfc3339(a.StartTime),
			ResolvedDateTime: rfc3339(a.ResolvedTime), Description: a.Description, EssentialsVersion: "1.0", AlertContextVersion: "1.0"},
		AlertContext: AlertContext{DeliveryID: n.ID, AlertState: string(a.State), AlertName: a.Rule.Title(), Vault: a.VaultID,
			BackupInstance: a.InstanceName, BackupInstanceID: a.InstanceID, DataSourceID: a.DataSourceID, JobID: a.JobID,
			LatestJobID: a.LastJobID, ErrorCode: a.ErrorCode, ErrorMessage: a.ErrorMessage, RecommendedAction: a.RecommendedAction,
			Occurrences: a.Occurrences, LastRecoveryPoint: rfc3339(a.LastRecoveryPoint), BackupDue: rfc3339(a.BackupDue),
			Deadline: rfc3339(a.Deadline)},
	}}
}

// Subject is the one-line summary of a notification (email subject).
func Subject(n monitor.Notification) string {
	a := n.Alert
	what := a.InstanceName
	if what == "" {
		what = a.VaultID
	}
	return fmt.Sprintf("[Coffer] %s %s: %s – %s", a.Severity, n.Event, a.Rule.Title(), what)
}
