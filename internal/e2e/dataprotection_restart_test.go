package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/clock"
	"coffer/internal/dataprotection"
	"coffer/internal/identity"
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
		dataprotection.BackupRequest{RuleName: "BackupHourly", RetentionTag: "Default"})
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

// TestCatchUpPlannedBeforeServing: a server that was down while a
// scheduled backup came due has queued the backup (after downtime, the
// latest missed slot runs) by the time it answers its first request, so a
// client that looks right after a restart sees the job, and a client that
// waits for jobs to end does not miss it.
func TestCatchUpPlannedBeforeServing(t *testing.T) {
	dir := t.TempDir()
	start := time.Now().UTC().Truncate(time.Hour).Add(5 * time.Minute) // minutes past an hour
	e := Start(t, Options{DataDir: dir, Clock: clock.Shifted{D: time.Until(start)}})
	c := e.Client("")
	ctx := context.Background()
	for _, g := range []string{"rg", "rg-snaps"} {
		if _, err := c.CreateGroup(ctx, g, "local", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreateDisk(ctx, "rg", "d", client.DiskSpec{Location: "local", SizeGB: 1}, true); err != nil {
		t.Fatal(err)
	}
	v, err := c.CreateVault(ctx, "rg", "vault", "local", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct{ role, scope string }{{rbac.RoleDiskBackupReader, "/subscriptions/" + c.Subscription + "/resourceGroups/rg"},
		{rbac.RoleDiskSnapshotContributor, "/subscriptions/" + c.Subscription + "/resourceGroups/rg-snaps"}} {
		def := "/subscriptions/" + c.Subscription + "/providers/Microsoft.Authorization/roleDefinitions/" + a.role
		if _, err := c.CreateRoleAssignment(ctx, a.scope, identity.NewGUID(), def, v.PrincipalID(), "ServicePrincipal"); err != nil {
			t.Fatal(err)
		}
	}
	props, err := client.BuildDiskPolicy(client.DiskPolicyOptions{Hours: 1, Retention: "1d"})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := c.PutPolicy(ctx, "rg", "vault", "hourly", props)
	if err != nil {
		t.Fatal(err)
	}
	sub := "/subscriptions/" + c.Subscription
	if _, err := c.PutInstance(ctx, "rg", "vault", "bi", client.InstanceBody(DiskID(c.Subscription, "rg", "d"), "local", pol.ID, sub+"/resourceGroups/rg-snaps")); err != nil {
		t.Fatal(err)
	}
	e.Stop()

	// Down for three hours: the server comes back 3 h later.
	e2 := Start(t, Options{DataDir: dir, Clock: clock.Shifted{D: time.Until(start.Add(3 * time.Hour))}})
	jobs, err := e2.Client("").ListJobs(ctx, "rg", "vault", "")
	if err != nil {
		t.Fatal(err)
	}
	scheduled := 0
	for _, j := range jobs {
		if j.Properties.Operation == "Backup" && !j.Properties.IsUserTriggered {
			scheduled++
		}
	}
	if scheduled != 1 {
		t.Fatalf("right after the restart, %d scheduled backups are listed, want 1 (the latest missed slot)", scheduled)
	}
}
