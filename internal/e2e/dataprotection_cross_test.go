package e2e

import (
	"net/http"
	"testing"

	"coffer/internal/rbac"
)

// TestDataProtectionCrossSubscriptionAndRegion, with the SDKs: a vault in
// one subscription protects a disk in another (snapshots in the disk's
// subscription) and restores it into that other subscription,
// byte-identical; a disk in another region is refused, and so is a snapshot
// group outside the disk's subscription.
func TestDataProtectionCrossSubscriptionAndRegion(t *testing.T) {
	a := startDP(t, Options{Regions: []string{"local", "east"}})
	alias, err := a.c.CreateSubscription(a.ctx, "team-b", "Team B", "")
	if err != nil {
		t.Fatal(err)
	}
	subB := alias.Properties.SubscriptionID
	b := *a
	b.sub = subB
	b.clients(t, subB)

	a.group(t, "rg-vault", "local")
	a.group(t, "rg-east", "east")
	a.group(t, "rg-snaps-a", "local")
	for _, g := range []string{"rg-disks", "rg-snaps", "rg-restore"} {
		b.group(t, g, "local")
	}
	disk := b.disk(t, "rg-disks", "data-b", "local", "Premium_LRS")
	b.write(t, "rg-disks", "data-b", 0x5C, 0, 7<<20)
	want := b.hash(t, "rg-disks", "data-b")

	v := a.vault(t, "rg-vault", "vault-a", "local")
	principal := *v.Identity.PrincipalID
	pol := a.policy(t, "rg-vault", "vault-a", "DiskPolicy", defaultPolicy())
	snapRG := "/subscriptions/" + subB + "/resourceGroups/rg-snaps"
	a.grantRole(t, principal, rbac.RoleDiskBackupReader, *disk.ID)
	b.grantRole(t, principal, rbac.RoleDiskSnapshotContributor, snapRG)

	// The snapshot group must be in the disk's subscription.
	wrongRG := "/subscriptions/" + a.sub + "/resourceGroups/rg-snaps-a"
	if _, err := a.validateForBackup("rg-vault", "vault-a", biBody(*disk.ID, "local", *pol.ID, wrongRG)); err == nil {
		t.Fatal("snapshot group in another subscription accepted")
	} else if st, code := responseCode(t, err); st != http.StatusBadRequest || code != "UserErrorSnapshotRGSubscriptionMismatch" {
		t.Fatalf("snapshot group subscription: %d %s", st, code)
	}
	// Same region only.
	east := a.disk(t, "rg-east", "data-east", "east", "Premium_LRS")
	a.grantRole(t, principal, rbac.RoleDiskBackupReader, *east.ID)
	if _, err := a.validateForBackup("rg-vault", "vault-a", biBody(*east.ID, "east", *pol.ID, "/subscriptions/"+a.sub+"/resourceGroups/rg-snaps-a")); err == nil {
		t.Fatal("disk in another region accepted")
	} else if st, code := responseCode(t, err); st != http.StatusBadRequest || code != "UserErrorDatasourceAndBackupVaultLocationMismatch" {
		t.Fatalf("other region: %d %s", st, code)
	}

	if _, err := a.protect("rg-vault", "vault-a", "data-b", biBody(*disk.ID, "local", *pol.ID, snapRG)); err != nil {
		t.Fatalf("protect across subscriptions: %v", err)
	}
	if j := a.backupNow(t, "rg-vault", "vault-a", "data-b", "BackupHourly", "Default"); *j.Status != "Completed" {
		t.Fatalf("backup: %+v", j)
	}
	rps := a.recoveryPoints(t, "rg-vault", "vault-a", "data-b", nil)
	if len(rps) != 1 {
		t.Fatalf("%d recovery points", len(rps))
	}
	b.grantRole(t, principal, rbac.RoleDiskRestoreOperator, "/subscriptions/"+subB+"/resourceGroups/rg-restore")
	target := "/subscriptions/" + subB + "/resourceGroups/rg-restore/providers/Microsoft.Compute/disks/restored"
	jid, err := a.restore("rg-vault", "vault-a", "data-b", a.restoreRequest(*rps[0].Name, target, "local"))
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if j := a.waitJob(t, "rg-vault", "vault-a", jid); *j.Status != "Completed" {
		t.Fatalf("restore job: %+v", j)
	}
	if got := b.hash(t, "rg-restore", "restored"); got != want {
		t.Fatalf("restored %s, want %s", got, want)
	}
	// The restored disk keeps the source's SKU.
	d, err := b.disks.Get(b.ctx, "rg-restore", "restored", nil)
	if err != nil || string(*d.SKU.Name) != "Premium_LRS" {
		t.Fatalf("restored disk: %v %+v", err, d.SKU)
	}
}
