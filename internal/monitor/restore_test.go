package monitor_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/job"
	"coffer/internal/monitor"
	"coffer/internal/store"
	"coffer/internal/store/memstore"
)

// putOp writes a job of operation op for the instance.
func putOp(t *testing.T, st store.Store, clk clock.Clock, id, op string, status job.Status, code string) {
	t.Helper()
	r := job.Record{ID: id, VaultID: vaultID, Operation: op, OperationCategory: op, Status: status,
		StartTime: clk.Now().UTC().Add(-time.Minute), EndTime: clk.Now().UTC(), BackupInstanceID: instID,
		BackupInstanceFriendlyName: "data-bi", DataSourceID: diskID, DataSourceName: "data", IsUserTriggered: true, InitiatedBy: "p-9"}
	if code != "" {
		r.ErrorDetails = []job.UserFacingError{{Code: code, Message: "The target disk exists."}}
	}
	err := st.Update(context.Background(), func(tx store.Tx) error {
		return job.Put(context.Background(), tx, r, store.PutOptions{CreateOnly: true})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRestoreFailureAlert: a failed restore raises Azure Backup's
// RestoreFailure alert; a later successful backup does not resolve it
// (only backup failures resolve by a backup), and failed jobs of other
// operations raise none.
func TestRestoreFailureAlert(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	clk := clock.NewFake(time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC))
	r := newRig(t, st, clk, key())
	putVault(t, st, alertSettings("Enabled"))
	r.tick()

	putOp(t, st, clk, "r1", job.OpRestore, job.Failed, "UserErrorDiskAlreadyExists")
	putOp(t, st, clk, "v1", job.OpValidateForBackup, job.Failed, "UserErrorMissingRequiredPermissions")
	putOp(t, st, clk, "d1", job.OpDeleteProtection, job.Failed, "InternalError")
	r.tick()
	as, err := r.mon.ListAlerts(ctx, vaultScope(), monitor.AlertFilter{})
	if err != nil || len(as) != 1 {
		t.Fatalf("alerts %+v %v, want the restore's only", as, err)
	}
	a := as[0]
	if a.Rule != monitor.RuleRestoreFailure || a.Condition != monitor.Fired || a.ErrorCode != "UserErrorDiskAlreadyExists" ||
		!strings.HasSuffix(a.JobID, "/backupJobs/r1") || !strings.Contains(a.Description, "restore job") {
		t.Fatalf("alert %+v", a)
	}
	if l := r.log.String(); !strings.Contains(l, `msg="alert fired"`) || !strings.Contains(l, "rule=RestoreFailure") {
		t.Fatalf("no alert line:\n%s", l)
	}

	putOp(t, st, clk, "b1", job.OpBackup, job.Completed, "")
	r.tick()
	if got, err := r.mon.GetAlert(ctx, vaultScope(), a.Name); err != nil || got.Condition != monitor.Fired {
		t.Fatalf("a backup resolved a restore failure: %+v %v", got, err)
	}
	if as, _ := r.mon.ListAlerts(ctx, vaultScope(), monitor.AlertFilter{Rule: monitor.RuleRestoreFailure, Condition: monitor.Fired}); len(as) != 1 {
		t.Fatalf("filtered list: %+v", as)
	}
}
