package e2e

import (
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"coffer/internal/client"
	"coffer/internal/rbac"
)

// TestDataProtectionGroupDelete deletes the resource group of a backup
// vault: refused while the vault protects a disk (nothing is deleted and the
// group is usable again), then, once the instance is gone, the vault goes
// with the group and so does its managed identity.
func TestDataProtectionGroupDelete(t *testing.T) {
	e := startDP(t, Options{})
	const loc = "local"
	for _, g := range []string{"rg-disks", "rg-snaps", "rg-vault"} {
		e.group(t, g, loc)
	}
	src := e.disk(t, "rg-disks", "d1", loc, "StandardSSD_LRS")
	v := e.vault(t, "rg-vault", "v1", loc)
	principal := *v.Identity.PrincipalID
	pol := e.policy(t, "rg-vault", "v1", "DiskPolicy", defaultPolicy())
	snapRG := "/subscriptions/" + e.sub + "/resourceGroups/rg-snaps"
	e.grantRole(t, principal, rbac.RoleDiskBackupReader, *src.ID)
	e.grantRole(t, principal, rbac.RoleDiskSnapshotContributor, snapRG)
	if _, err := e.protect("rg-vault", "v1", "d1-bi", biBody(*src.ID, loc, *pol.ID, snapRG)); err != nil {
		t.Fatal(err)
	}
	opts := &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond}

	poller, err := e.groups.BeginDelete(e.ctx, "rg-vault", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = poller.PollUntilDone(e.ctx, opts)
	if _, code := responseCode(t, err); code != "UserErrorBackupVaultHasBackupInstances" {
		t.Fatalf("deleting the group of a vault with an instance: %v", err)
	}
	g, err := e.groups.Get(e.ctx, "rg-vault", nil)
	if err != nil || *g.Properties.ProvisioningState != "Succeeded" {
		t.Fatalf("group after a refused delete: %+v %v", g.Properties, err)
	}
	if _, err := e.bis.Get(e.ctx, "rg-vault", "v1", "d1-bi", nil); err != nil {
		t.Fatalf("instance after a refused group delete: %v", err)
	}

	del, err := e.bis.BeginDelete(e.ctx, "rg-vault", "v1", "d1-bi", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := del.PollUntilDone(e.ctx, opts); err != nil {
		t.Fatal(err)
	}
	poller, err = e.groups.BeginDelete(e.ctx, "rg-vault", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := poller.PollUntilDone(e.ctx, opts); err != nil {
		t.Fatalf("group delete: %v", err)
	}
	if _, err := e.vaults.Get(e.ctx, "rg-vault", "v1", nil); err == nil {
		t.Fatal("vault survived its group")
	}
	ps, err := e.c.ListPrincipals(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.PrincipalID == principal {
			t.Fatalf("the vault's managed identity survived: %+v", p)
		}
	}
	as, err := e.c.ListRoleAssignments(e.ctx, "/subscriptions/"+e.sub, "principalId eq '"+principal+"'")
	if err != nil || len(as) != 0 {
		t.Fatalf("the identity's role assignments survived: %v %v", as, err)
	}
	_ = client.Disks
}
