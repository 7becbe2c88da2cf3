package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/clock"
	"coffer/internal/identity"
	"coffer/internal/notify"
	"coffer/internal/notify/notifytest"
	"coffer/internal/prom"
	"coffer/internal/rbac"
)

// webhookReceiver is a real HTTP receiver of webhook notifications.
type webhookReceiver struct {
	mu    sync.Mutex
	reqs  []http.Header
	bodys [][]byte
}

func (h *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.reqs, h.bodys = append(h.reqs, r.Header.Clone()), append(h.bodys, b)
	h.mu.Unlock()
}

// waitFor polls cond (real time) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// received returns the notifications of an event the receiver got, each
// checked against secret.
func (h *webhookReceiver) received(t *testing.T, secret string) []notify.CommonAlert {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []notify.CommonAlert
	for i, hdr := range h.reqs {
		if !notify.Verify(secret, hdr.Get(notify.HeaderTimestamp), h.bodys[i], hdr.Get(notify.HeaderSignature)) {
			t.Errorf("webhook request %d: the signature does not verify with the target's secret", i)
		}
		var a notify.CommonAlert
		if err := json.Unmarshal(h.bodys[i], &a); err != nil {
			t.Fatalf("webhook body %d: %v", i, err)
		}
		out = append(out, a)
	}
	return out
}

func countEvents(as []notify.CommonAlert, rule, condition string) int {
	n := 0
	for _, a := range as {
		if a.Data.Essentials.AlertRule == rule && a.Data.Essentials.MonitorCondition == condition {
			n++
		}
	}
	return n
}

// scrape reads /metrics (with token, when given) and parses it strictly.
func scrape(t *testing.T, env *Env, token string) *prom.Exposition {
	t.Helper()
	b := scrapeText(t, env, token)
	ex, err := prom.Parse(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("GET /metrics is not valid exposition format: %v\n%s", err, b)
	}
	return ex
}

// TestAlertsAndNotifications runs the monitoring of a real server on a
// fake clock: notification targets made with the CLI (a webhook with the
// server's secret, email with a password from standard input), a
// protected disk, per-instance metrics for a scrape that may read them
// only; then the vault identity loses its role, the next scheduled backup
// fails (a BackupFailure alert, delivered signed to a real HTTP receiver
// and by STARTTLS to a real SMTP server on loopback), the grace period
// passes without a recovery point (a RecoveryPointObjectiveMissed alert),
// an operator acknowledges it with the CLI, the role comes back, a backup
// succeeds and both alerts resolve (and that is delivered too).
func TestAlertsAndNotifications(t *testing.T) {
	ctx := context.Background()
	start := time.Now().UTC().Truncate(4 * time.Hour).Add(10 * time.Minute)
	clk := clock.NewFake(start)
	env := Start(t, Options{Clock: clk})
	cliAgainst(t, env)
	c := env.Client("")
	mon := env.Server.Monitor()

	hook := &webhookReceiver{}
	hs := httptest.NewServer(hook)
	defer hs.Close()
	smtp := notifytest.StartSMTP(t)
	smtp.User, smtp.Password = "coffer-alerts", "smtp-pw-987"
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, []byte(smtp.CAPEM), 0o600)

	code, out, errOut := runCLI("", false, "notify", "target", "create", "-n", "ops-hook", "--webhook", hs.URL+"/coffer", "-o", "json")
	if code != 0 {
		t.Fatalf("notify target create: %d %s", code, errOut)
	}
	var tg client.NotificationTarget
	if err := json.Unmarshal([]byte(out), &tg); err != nil || tg.Properties.Secret == "" || !tg.Properties.HasSecret {
		t.Fatalf("webhook target: %v %s", err, out)
	}
	secret := tg.Properties.Secret
	code, _, errOut = runCLI(smtp.Password+"\n", false, "notify", "target", "create", "-n", "ops-mail", "--smtp-server", smtp.Addr,
		"--from", "Coffer <coffer@example.com>", "--to", "ops@example.com", "--smtp-user", smtp.User, "--password-stdin", "--ca-file", caFile)
	if code != 0 {
		t.Fatalf("email target: %s", errOut)
	}
	if code, out, errOut := runCLI("", false, "notify", "target", "test", "-n", "ops-hook"); code != 0 || !strings.Contains(out, "Delivered") {
		t.Fatalf("notify target test: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCLI("", false, "notify", "target", "test", "-n", "ops-mail"); code != 0 {
		t.Fatalf("notify target test (mail): %s", errOut)
	}
	if n := len(smtp.Messages()); n != 1 {
		t.Fatalf("%d test mails", n)
	}
	code, out, _ = runCLI("", false, "notify", "target", "list", "-o", "json")
	if code != 0 || strings.Contains(out, smtp.Password) || strings.Contains(out, secret) || !strings.Contains(out, `"status": "Delivered"`) {
		t.Fatalf("target list (it must hold no secret): %s", out)
	}
	// Not the tenant administrator: refused.
	reader := newPrincipal(t, env, "reader-bot")
	if _, err := reader.c.ListNotificationTargets(ctx); client.AsError(err) == nil || client.AsError(err).StatusCode != http.StatusForbidden {
		t.Fatalf("a non-administrator listed targets: %v", err)
	}

	createGroups(t, ctx, c, "rg-disks", "rg-snaps", "rg-vault", "rg-restore")
	disk, err := c.CreateDisk(ctx, "rg-disks", "data", client.DiskSpec{Location: "local", SizeGB: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	bi := protectDisk(t, ctx, c, disk.ID, "rg-vault", "vault", "rg-snaps", "rg-restore", 4)
	vaultID := "/subscriptions/" + c.Subscription + "/resourceGroups/rg-vault/providers/Microsoft.DataProtection/backupVaults/vault"

	// The vault keeps monitoringSettings through PATCH (and says Enabled).
	patch := map[string]any{"properties": map[string]any{"monitoringSettings": map[string]any{
		"azureMonitorAlertSettings": map[string]any{"alertsForAllJobFailures": "Enabled"}}}}
	if _, err := c.Do(ctx, http.MethodPatch, vaultID, client.DataProtectionVersion, nil, patch, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(ctx, http.MethodPatch, vaultID, client.DataProtectionVersion, nil, map[string]any{"tags": map[string]string{"team": "ops"}}, nil); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	c.Do(ctx, http.MethodGet, vaultID, client.DataProtectionVersion, nil, nil, &raw)
	if b, _ := json.Marshal(raw); !strings.Contains(string(b), `"alertsForAllJobFailures":"Enabled"`) {
		t.Fatalf("the vault lost monitoringSettings: %s", b)
	}

	id, err := c.BackupNow(ctx, bi.rg, bi.vault, bi.name, "BackupIntervals", "Default")
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJobDone(t, ctx, c, bi.rg, bi.vault, id); j.Properties.Status != "Completed" {
		t.Fatalf("backup: %+v", j.Properties)
	}
	if err := mon.Tick(ctx); err != nil {
		t.Fatal(err)
	}

	// Metrics: an anonymous scrape names no resource; the admin's has the
	// instance; a principal without a role on the vault gets none.
	inst := []string{"resource_group", "rg-vault", "vault", "vault", "backup_instance", bi.name}
	ex := scrape(t, env, "")
	if pts := ex.All("coffer_backup_instance_last_recovery_point_age_seconds"); len(pts) != 0 {
		t.Fatalf("an anonymous scrape got instance series: %+v", pts)
	}
	for _, name := range []string{"coffer_jobs_ended_total", "coffer_repository_stored_bytes", "coffer_repository_deduplication_ratio",
		"coffer_nbd_open_connections", "coffer_hydrating_disks", "coffer_backup_instances_rpo_missed", "coffer_data_free_bytes"} {
		if _, ok := ex.Types[name]; !ok {
			t.Errorf("metric %s is missing", name)
		}
	}
	if v, ok := ex.Get("coffer_jobs_ended_total", "operation", "Backup", "status", "Completed"); !ok || v < 1 {
		t.Errorf("coffer_jobs_ended_total{Backup,Completed} = %v %v", v, ok)
	}
	if v, ok := ex.Get("coffer_repository_stored_bytes"); !ok || v <= 0 {
		t.Errorf("coffer_repository_stored_bytes = %v", v)
	}
	if v, ok := ex.Get("coffer_repository_added_bytes_total"); !ok || v <= 0 {
		t.Errorf("coffer_repository_added_bytes_total = %v", v)
	}
	ex = scrape(t, env, env.Admin.Token)
	if age, ok := ex.Get("coffer_backup_instance_last_recovery_point_age_seconds", inst...); !ok || age != 0 {
		t.Fatalf("age of the fresh recovery point = %v %v", age, ok)
	}
	if v, _ := ex.Get("coffer_backup_instance_backup_interval_seconds", inst...); v != 4*3600 {
		t.Errorf("interval %v", v)
	}
	if pts := scrape(t, env, reader.token).All("coffer_backup_instance_rpo_missed"); len(pts) != 0 {
		t.Fatalf("a principal without a role got instance series: %+v", pts)
	}

	// The vault identity loses Disk Backup Reader: the next scheduled
	// backup fails.
	v, _ := c.GetVault(ctx, "rg-vault", "vault")
	ras, err := c.ListRoleAssignments(ctx, disk.ID, "principalId eq '"+v.PrincipalID()+"'")
	if err != nil || len(ras) == 0 {
		t.Fatalf("role assignments: %v %v", ras, err)
	}
	for _, ra := range ras {
		if strings.HasSuffix(ra.Properties.RoleDefinitionID, rbac.RoleDiskBackupReader) {
			if err := c.DeleteRoleAssignment(ctx, ra.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	slot := start.Truncate(4 * time.Hour).Add(4 * time.Hour)
	clk.Set(slot)
	var failed client.Job
	waitFor(t, "the scheduled backup to fail", func() bool {
		js, _ := c.ListJobs(ctx, bi.rg, bi.vault, client.JobsFilter("Failed", "ScheduledBackup"))
		if len(js) > 0 {
			failed = js[0]
		}
		return len(js) > 0
	})
	if err := mon.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failure's notifications", func() bool {
		return countEvents(hook.received(t, secret), "BackupFailure", "Fired") == 1 && len(smtp.Messages()) == 2
	})
	got := hook.received(t, secret)
	fa := got[len(got)-1]
	if fa.Data.AlertContext.ErrorCode != failed.Properties.ErrorDetails[0].Code || !strings.HasSuffix(fa.Data.AlertContext.JobID, failed.Name) {
		t.Fatalf("failure notification %+v, job %+v", fa.Data, failed.Properties)
	}
	mail := smtp.Messages()[1]
	if !mail.TLS || mail.AuthUser != smtp.User || !strings.Contains(mail.Data, "Backup Failure") || !strings.Contains(mail.Data, fa.Data.Essentials.AlertID) {
		t.Fatalf("failure mail: %+v", mail)
	}

	// The grace period (an hour) passes with no recovery point: the
	// recovery point objective is missed.
	clk.Set(slot.Add(time.Hour + time.Minute))
	if err := mon.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the missed-RPO notification", func() bool {
		return countEvents(hook.received(t, secret), "RecoveryPointObjectiveMissed", "Fired") == 1 && len(smtp.Messages()) == 3
	})
	ex = scrape(t, env, env.Admin.Token)
	if v, _ := ex.Get("coffer_backup_instance_rpo_missed", inst...); v != 1 {
		t.Errorf("coffer_backup_instance_rpo_missed = %v, want 1", v)
	}
	if v, _ := ex.Get("coffer_backup_instances_rpo_missed"); v != 1 {
		t.Errorf("coffer_backup_instances_rpo_missed = %v, want 1", v)
	}

	code, out, errOut = runCLI("", false, "alert", "list", "-g", "rg-vault", "-v", "vault", "-o", "json")
	var alerts []client.Alert
	if code != 0 || json.Unmarshal([]byte(out), &alerts) != nil || len(alerts) != 2 {
		t.Fatalf("alert list: %d %s %s", code, out, errOut)
	}
	var rpoID string
	for _, a := range alerts {
		if a.Properties.Essentials.AlertRule == "RecoveryPointObjectiveMissed" {
			rpoID = a.ID
		}
		if a.Properties.Essentials.AlertState != "New" || a.Properties.Essentials.MonitorCondition != "Fired" || a.Type != "Microsoft.AlertsManagement/alerts" {
			t.Errorf("alert %+v", a)
		}
	}
	if code, out, errOut := runCLI("", false, "alert", "ack", "--id", rpoID, "--comment", "looking", "-o", "tsv"); code != 0 || !strings.Contains(out, "Acknowledged") {
		t.Fatalf("alert ack: %d %s %s", code, out, errOut)
	}
	// A reader of nothing may not acknowledge; the alert stays as it was.
	if _, err := reader.c.ChangeAlertState(ctx, rpoID, "Closed", ""); client.AsError(err) == nil || client.AsError(err).StatusCode != http.StatusForbidden {
		t.Fatalf("a principal without a role changed an alert: %v", err)
	}
	if a, _ := c.GetAlert(ctx, rpoID); a.Properties.Essentials.AlertState != "Acknowledged" {
		t.Fatalf("after a refused change: %+v", a.Properties.Essentials)
	}

	// The role comes back and a backup succeeds: both alerts resolve.
	sub := "/subscriptions/" + c.Subscription
	if _, err := c.CreateRoleAssignment(ctx, disk.ID, newGUID(), sub+"/providers/Microsoft.Authorization/roleDefinitions/"+rbac.RoleDiskBackupReader,
		v.PrincipalID(), "ServicePrincipal"); err != nil {
		t.Fatal(err)
	}
	id, err = c.BackupNow(ctx, bi.rg, bi.vault, bi.name, "BackupIntervals", "Default")
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJobDone(t, ctx, c, bi.rg, bi.vault, id); j.Properties.Status != "Completed" {
		t.Fatalf("backup after the role came back: %+v", j.Properties)
	}
	if err := mon.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the resolutions", func() bool {
		got := hook.received(t, secret)
		return countEvents(got, "BackupFailure", "Resolved") == 1 && countEvents(got, "RecoveryPointObjectiveMissed", "Resolved") == 1
	})
	resolved, err := c.ListAlerts(ctx, "", client.AlertFilter{Condition: "Resolved"})
	if err != nil || len(resolved) != 2 {
		t.Fatalf("resolved alerts: %v %v", resolved, err)
	}
	if code, out, _ := runCLI("", false, "alert", "close", "--id", rpoID, "-o", "tsv"); code != 0 || !strings.Contains(out, "Closed") {
		t.Fatalf("alert close: %s", out)
	}
	if as, _ := c.ListAlerts(ctx, "", client.AlertFilter{State: "Closed"}); len(as) != 1 {
		t.Fatalf("closed alerts: %+v", as)
	}
	if code, _, _ := runCLI("", false, "notify", "target", "delete", "-n", "ops-mail"); code != 0 {
		t.Fatal("delete target")
	}
}

// botPrincipal is a service principal with no role, holding an API token
// (valid across the fake clock's hours, unlike an access token).
type botPrincipal struct {
	id, clientID, secret, token string
	c                           *client.Client
}

func newPrincipal(t *testing.T, env *Env, name string) botPrincipal {
	t.Helper()
	ctx := context.Background()
	p, err := env.Client("").CreateServicePrincipal(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	access, err := env.Client("").ClientCredentials(ctx, env.Admin.TenantID, p.ClientID, p.ClientSecret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := env.Client(access).CreateToken(ctx, 30, name)
	if err != nil {
		t.Fatal(err)
	}
	return botPrincipal{id: p.PrincipalID, clientID: p.ClientID, secret: p.ClientSecret, token: tok.Token, c: env.Client(tok.Token)}
}

func newGUID() string { return identity.NewGUID() }
