package e2e

import (
	"context"
	"path/filepath"
	"testing"

	"coffer/internal/clock"
	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/rbac"
	"coffer/internal/store/sqlite"
	"coffer/internal/tenant"
)

// TestDataProtectionServerRestart: the server stops while an on-demand
// backup's task is leased and its job InProgress (the state a killed
// process leaves). After a restart on the same data directory the job is
// delivered again and completes, with one recovery point and one snapshot.
func TestDataProtectionServerRestart(t *testing.T) {
	dir := t.TempDir()
	e := startDP(t, Options{DataDir: dir})
	for _, g := range []string{"rg-disks", "rg-snaps", "rg-vault"} {
		e.group(t, g, "local")
	}
	src := e.disk(t, "rg-disks", "data1", "local", "Standard_LRS")
	v := e.vault(t, "rg-vault", "vault1", "local")
	pol := e.policy(t, "rg-vault", "vault1", "DiskPolicy", defaultPolicy())
	snapRG := "/subscriptions/" + e.sub + "/resourceGroups/rg-snaps"
	e.grantRole(t, *v.Identity.PrincipalID, rbac.RoleDiskBackupReader, *src.ID)
	e.grantRole(t, *v.Identity.PrincipalID, rbac.RoleDiskSnapshotContributor, snapRG)
	if _, err := e.protect("rg-vault", "vault1", "bi", biBody(*src.ID, "local", *pol.ID, snapRG)); err != nil {
		t.Fatal(err)
	}
	e.Stop()

	// What a process killed in the middle of the backup leaves behind.
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.Real{}
	q := job.NewQueue(st, clk)
	svc := &dataprotection.Service{Store: st, Clock: clk, Queue: q, Groups: &tenant.Service{Store: st, Clock: clk, Regions: []string{"local"}}}
	vaultID := dataprotection.VaultID(e.sub, "rg-vault", "vault1")
	jobID, err := svc.AdhocBackup(ctx, dataprotection.InstanceID(vaultID, "bi"),
		[]byte(`{"backupRuleOptions": {"ruleName": "BackupHourly", "triggerOption": {"retentionTagOverride": "Default"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := q.Lease(ctx, "killed-process"); err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	st.Close()

	e2 := startDP(t, Options{DataDir: dir})
	if j := e2.waitJob(t, "rg-vault", "vault1", jobID); *j.Status != "Completed" {
		t.Fatalf("job after restart: %+v", j)
	}
	if rps := e2.recoveryPoints(t, "rg-vault", "vault1", "bi", nil); len(rps) != 1 {
		t.Fatalf("%d recovery points", len(rps))
	}
	n := 0
	pg := e2.snaps.NewListByResourceGroupPager("rg-snaps", nil)
	for pg.More() {
		page, err := pg.NextPage(e2.ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Value)
	}
	if n != 1 {
		t.Fatalf("%d snapshots", n)
	}
}
