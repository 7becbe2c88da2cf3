package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dataprotection/armdataprotection/v3"

	"coffer/internal/rbac"
)

var runtimePollOptions = runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond}

// TestDataProtectionHowTo is the flow of Azure's two how-to pages (back up
// and restore managed disks with the REST API), driven by the official
// armdataprotection/v3, armcompute/v8 and armauthorization/v2 SDKs:
// create a vault and a policy, validate without roles (refused with the
// right codes), assign the roles, validate, protect, back up on demand,
// write to the disk, back up again, list the recovery points, validate a
// restore whose target name exists (refused), and restore both points to
// new disks, each byte-identical (by hash) to the source at its point.
func TestDataProtectionHowTo(t *testing.T) { dataProtectionHowTo(t, Options{}) }

// dataProtectionHowTo runs TestDataProtectionHowTo's flow on a server
// started with o (TestDataProtectionOnPostgres runs it with --db
// postgres://…).
func dataProtectionHowTo(t *testing.T, o Options) *dpEnv {
	e := startDP(t, o)
	const loc = "local"
	for _, g := range []string{"rg-disks", "rg-snaps", "rg-vault", "rg-restore"} {
		e.group(t, g, loc)
	}
	src := e.disk(t, "rg-disks", "data1", loc, "StandardSSD_LRS")
	e.write(t, "rg-disks", "data1", 0xA1, 0, 300<<20)
	hashAtRP1 := e.hash(t, "rg-disks", "data1")

	v := e.vault(t, "rg-vault", "vault1", loc)
	principal := *v.Identity.PrincipalID
	got, err := e.vaults.Get(e.ctx, "rg-vault", "vault1", nil)
	if err != nil || *got.Properties.ProvisioningState != armdataprotection.ProvisioningStateSucceeded ||
		*got.Properties.StorageSettings[0].Type != armdataprotection.StorageSettingTypesLocallyRedundant {
		t.Fatalf("get vault: %v %+v", err, got)
	}
	pol := e.policy(t, "rg-vault", "vault1", "DiskPolicy", defaultPolicy())
	if *pol.Name != "DiskPolicy" || *pol.Type != "Microsoft.DataProtection/backupVaults/backupPolicies" {
		t.Fatalf("policy: %+v", pol)
	}
	snapRG := "/subscriptions/" + e.sub + "/resourceGroups/rg-snaps"
	bi := biBody(*src.ID, loc, *pol.ID, snapRG)

	// Validate without roles: UserErrorMissingRequiredPermissions.
	if _, err := e.validateForBackup("rg-vault", "vault1", bi); err == nil {
		t.Fatal("validate without roles succeeded")
	} else if _, code := responseCode(t, err); code != "UserErrorMissingRequiredPermissions" {
		t.Fatalf("validate without roles: %v", err)
	}
	// The vault identity gets the roles (as `az dataprotection backup-instance
	// update-msi-permissions` does).
	e.grantRole(t, principal, rbac.RoleDiskBackupReader, *src.ID)
	if _, err := e.validateForBackup("rg-vault", "vault1", bi); err == nil {
		t.Fatal("validate with one role succeeded")
	} else if _, code := responseCode(t, err); code != "UserErrorMissingRequiredPermissions" {
		t.Fatalf("validate with one role: %v", err)
	}
	e.grantRole(t, principal, rbac.RoleDiskSnapshotContributor, snapRG)
	jobID, err := e.validateForBackup("rg-vault", "vault1", bi)
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	if j := e.waitJob(t, "rg-vault", "vault1", jobID); *j.Status != "Completed" {
		t.Fatalf("validation job: %+v", j)
	}

	// Protect.
	res, err := e.protect("rg-vault", "vault1", "data1-bi", bi)
	if err != nil {
		t.Fatalf("protect: %v", err)
	}
	if *res.Properties.CurrentProtectionState != armdataprotection.CurrentProtectionStateProtectionConfigured ||
		*res.Properties.ProtectionStatus.Status != armdataprotection.StatusProtectionConfigured || *res.Properties.ProvisioningState != "Succeeded" {
		t.Fatalf("protected instance: %+v", res.Properties)
	}
	// Protecting the same disk again (another instance) is refused.
	if _, err := e.validateForBackup("rg-vault", "vault1", bi); err == nil {
		t.Fatal("validate of a protected disk succeeded")
	} else if st, code := responseCode(t, err); st != http.StatusBadRequest || code != "UserErrorDppDatasourceAlreadyProtected" {
		t.Fatalf("validate protected disk: %d %s", st, code)
	}

	// First on-demand backup.
	j1 := e.backupNow(t, "rg-vault", "vault1", "data1-bi", "BackupHourly", "Default")
	if *j1.Status != "Completed" || *j1.Operation != "Backup" || !*j1.IsUserTriggered || *j1.DataSourceName != "data1" ||
		*j1.PolicyName != "DiskPolicy" || *j1.BackupInstanceFriendlyName != "data1" || j1.Duration == nil || j1.EndTime == nil {
		t.Fatalf("backup job 1: %+v", j1)
	}
	// The snapshot is a real Microsoft.Compute/snapshots resource.
	pg := e.snaps.NewListByResourceGroupPager("rg-snaps", nil)
	nsnap := 0
	for pg.More() {
		page, err := pg.NextPage(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page.Value {
			nsnap++
			if !*s.Properties.Incremental || *s.Properties.CreationData.SourceResourceID != *src.ID {
				t.Fatalf("snapshot: %+v", s.Properties)
			}
		}
	}
	if nsnap != 1 {
		t.Fatalf("%d snapshots in the snapshot group", nsnap)
	}

	// Write, second backup.
	e.write(t, "rg-disks", "data1", 0xB2, 100<<20, 300<<20)
	hashAtRP2 := e.hash(t, "rg-disks", "data1")
	if hashAtRP1 == hashAtRP2 {
		t.Fatal("the write did not change the disk")
	}
	if j := e.backupNow(t, "rg-vault", "vault1", "data1-bi", "BackupHourly", "Default"); *j.Status != "Completed" {
		t.Fatalf("backup job 2: %+v", j)
	}

	rps := e.recoveryPoints(t, "rg-vault", "vault1", "data1-bi", nil)
	if len(rps) != 2 {
		t.Fatalf("%d recovery points", len(rps))
	}
	rp1 := rps[0].Properties.(*armdataprotection.AzureBackupDiscreteRecoveryPoint)
	rp2 := rps[1].Properties.(*armdataprotection.AzureBackupDiscreteRecoveryPoint)
	if !rp1.RecoveryPointTime.Before(*rp2.RecoveryPointTime) || *rp1.RetentionTagName != "Default" || *rp1.PolicyName != "DiskPolicy" ||
		len(rp1.RecoveryPointDataStoresDetails) != 1 || *rp1.RecoveryPointDataStoresDetails[0].Type != "OperationalStore" ||
		rp1.RecoveryPointDataStoresDetails[0].ExpiryTime.Sub(*rp1.RecoveryPointTime) != 7*24*time.Hour {
		t.Fatalf("recovery point 1: %+v", rp1)
	}
	// $filter on the time window.
	filtered := e.recoveryPoints(t, "rg-vault", "vault1", "data1-bi", &armdataprotection.RecoveryPointsClientListOptions{
		Filter: to.Ptr("startDate eq '" + rp2.RecoveryPointTime.Add(-time.Millisecond).UTC().Format(time.RFC3339Nano) + "'")})
	if len(filtered) != 1 || *filtered[0].Name != *rps[1].Name {
		t.Fatalf("filtered recovery points: %d", len(filtered))
	}

	// Restore: the target name exists → refused; no role on the target
	// group → refused; then both points to new disks.
	e.disk(t, "rg-restore", "taken", loc, "StandardSSD_LRS")
	targetID := func(name string) string {
		return "/subscriptions/" + e.sub + "/resourceGroups/rg-restore/providers/Microsoft.Compute/disks/" + name
	}
	if err := e.validateRestore("rg-vault", "vault1", "data1-bi", e.restoreRequest(*rp1.RecoveryPointID, targetID("restored1"), loc)); err == nil {
		t.Fatal("restore without Disk Restore Operator validated")
	} else if _, code := responseCode(t, err); code != "UserErrorNotEnoughPermissionOnTargetRG" {
		t.Fatalf("restore without role: %v", err)
	}
	e.grantRole(t, principal, rbac.RoleDiskRestoreOperator, "/subscriptions/"+e.sub+"/resourceGroups/rg-restore")
	if err := e.validateRestore("rg-vault", "vault1", "data1-bi", e.restoreRequest(*rp1.RecoveryPointID, targetID("taken"), loc)); err == nil {
		t.Fatal("restore onto an existing disk name validated")
	} else if _, code := responseCode(t, err); code != "UserErrorSameNameDiskAlreadyExists" {
		t.Fatalf("restore onto existing name: %v", err)
	}
	for i, c := range []struct {
		rp, name, want string
	}{{*rp1.RecoveryPointID, "restored1", hashAtRP1}, {*rp2.RecoveryPointID, "restored2", hashAtRP2}} {
		req := e.restoreRequest(c.rp, targetID(c.name), loc)
		if err := e.validateRestore("rg-vault", "vault1", "data1-bi", req); err != nil {
			t.Fatalf("validate restore %d: %v", i, err)
		}
		jid, err := e.restore("rg-vault", "vault1", "data1-bi", req)
		if err != nil {
			t.Fatalf("restore %d: %v", i, err)
		}
		j := e.waitJob(t, "rg-vault", "vault1", jid)
		if *j.Status != "Completed" || *j.Operation != "Restore" || *j.ExtendedInfo.RecoveryDestination != targetID(c.name) ||
			*j.ExtendedInfo.SourceRecoverPoint.RecoveryPointID != c.rp {
			t.Fatalf("restore job %d: %+v %+v", i, j, j.ExtendedInfo)
		}
		if got := e.hash(t, "rg-restore", c.name); got != c.want {
			t.Fatalf("restored disk %s: hash %s, want %s (the source at its recovery point)", c.name, got, c.want)
		}
	}

	// Jobs are listed per vault.
	jp := e.jobs.NewListPager("rg-vault", "vault1", nil)
	ops := map[string]int{}
	for jp.More() {
		page, err := jp.NextPage(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range page.Value {
			ops[*j.Properties.Operation+"/"+*j.Properties.Status]++
		}
	}
	if ops["Backup/Completed"] != 2 || ops["Restore/Completed"] != 2 {
		t.Fatalf("jobs: %v", ops)
	}

	// Delete the instance (its points and snapshots go), then the vault.
	dp, err := e.bis.BeginDelete(e.ctx, "rg-vault", "vault1", "data1-bi", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(e.ctx, &runtimePollOptions); err != nil {
		t.Fatalf("delete instance: %v", err)
	}
	if _, err := e.bis.Get(e.ctx, "rg-vault", "vault1", "data1-bi", nil); err == nil {
		t.Fatal("deleted instance still there")
	}
	pg = e.snaps.NewListByResourceGroupPager("rg-snaps", nil)
	for pg.More() {
		page, err := pg.NextPage(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Value) != 0 {
			t.Fatalf("%d snapshots left after deleting the instance", len(page.Value))
		}
	}
	vp, err := e.vaults.BeginDelete(e.ctx, "rg-vault", "vault1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vp.PollUntilDone(e.ctx, &runtimePollOptions); err != nil {
		t.Fatalf("delete vault: %v", err)
	}
	return e
}
