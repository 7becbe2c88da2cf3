package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"coffer/internal/compute"
	"coffer/internal/dataprotection"
	"coffer/internal/identity"
	"coffer/internal/job"
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/tenant"
)

// openWithDisk opens a server on a new data dir (not listening) with
// groups groups and a 1 GiB empty disk d1 in the first, and returns it,
// its data dir, the admin principal and the disk's ID.
func openWithDisk(t *testing.T, groups ...string) (*Server, string, identity.Principal, resource.ID) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := Open(ctx, Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	admin, err := srv.IDs.Get(ctx, srv.Admin.PrincipalID)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if err := srv.store.Update(ctx, func(tx store.Tx) error {
			_, _, err := srv.Tenant.PutGroup(ctx, tx, resource.GroupID(srv.Admin.SubscriptionID, g), tenant.PutGroupInput{Location: DefaultRegion}, "test", "User")
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	diskID := resource.GroupID(srv.Admin.SubscriptionID, groups[0]).Child("Microsoft.Compute/disks", "d1")
	if _, err := srv.Compute.CreateDisk(ctx, admin, diskID, compute.DiskInput{Location: DefaultRegion, DiskSizeGB: 1,
		CreationData: compute.CreationData{CreateOption: compute.OptionEmpty}}); err != nil {
		t.Fatal(err)
	}
	return srv, dir, admin, diskID
}

// breakPacks replaces the chunk store's pack directory of dir by a file:
// every pack write fails from then on, while everything else still reads;
// the returned function puts the directory back.
func breakPacks(t *testing.T, dir string) (repair func()) {
	t.Helper()
	packs := filepath.Join(dir, "chunks", "packs")
	if err := os.RemoveAll(packs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(packs, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(packs); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBackupSnapshotFailureLeavesNothing: when the block engine fails to
// take a backup's snapshot (here the pack directory is replaced by a file,
// so writing a pack fails while everything else reads), the snapshot
// resource that Compute recorded as Failed is deleted with the failure:
// the snapshot group lists nothing half-made, and the next attempt starts
// clean.
func TestBackupSnapshotFailureLeavesNothing(t *testing.T) {
	ctx := context.Background()
	srv, dir, admin, diskID := openWithDisk(t, "rg")
	rg := diskID.GroupScope()
	breakPacks(t, dir)
	snapID := rg.Child("Microsoft.Compute/snapshots", "AzureBackup_d1_0123456789abcdef0123")
	if _, err := (computeDisks{c: srv.Compute}).CreateSnapshot(ctx, admin, snapID, diskID); err == nil {
		t.Fatal("the snapshot succeeded with no pack directory")
	}
	snaps, err := srv.Compute.ListSnapshots(ctx, rg)
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range snaps {
		t.Errorf("snapshot %s left behind in state %s", sn.Name, sn.ProvisioningState)
	}
}

// TestFailedBackupJobLeavesNoSnapshot runs a backup job through the real
// worker pool, Compute and block engine with the pack directory broken:
// every attempt fails inside the engine, and when the job has failed for
// good the snapshot group holds no snapshot and the instance no recovery
// point; once the directory is back, the next backup succeeds.
func TestFailedBackupJobLeavesNoSnapshot(t *testing.T) {
	ctx := context.Background()
	srv, dir, _, diskID := openWithDisk(t, "rg-disks", "rg-snaps", "rg-vault")
	srv.dp.queue.Backoff = func(int) time.Duration { return 0 } // retry at once
	svc := srv.dp.svc
	sub := srv.Admin.SubscriptionID
	caller := dataprotection.Caller{Name: "test"}
	vaultID := dataprotection.VaultID(sub, "rg-vault", "v1")
	v, _, err := svc.PutVault(ctx, caller, vaultID, dataprotection.VaultInput{Location: "local", IdentityType: dataprotection.IdentitySystemAssigned,
		StorageSettings: []dataprotection.StorageSetting{{DatastoreType: "VaultStore", Type: "LocallyRedundant"}}})
	if err != nil {
		t.Fatal(err)
	}
	policyID := vaultID.Child("backupPolicies", "p")
	if _, _, err := svc.PutPolicy(ctx, policyID, dataprotection.DefaultPolicyTemplate().BackupPolicy); err != nil {
		t.Fatal(err)
	}
	snapRG := resource.GroupID(sub, "rg-snaps")
	if err := srv.store.Update(ctx, func(tx store.Tx) error {
		if _, err := srv.Authz.Assign(ctx, tx, v.Identity.PrincipalID, "ServicePrincipal", rbac.RoleDiskBackupReader, diskID.String(), "test"); err != nil {
			return err
		}
		_, err := srv.Authz.Assign(ctx, tx, v.Identity.PrincipalID, "ServicePrincipal", rbac.RoleDiskSnapshotContributor, snapRG.String(), "test")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	bi := dataprotection.InstanceID(vaultID, "d1-bi")
	in := dataprotection.InstanceInput{Properties: dataprotection.Instance{ObjectType: "BackupInstance",
		DataSourceInfo: dataprotection.Datasource{ObjectType: "Datasource", DatasourceType: "Microsoft.Compute/disks", ResourceID: diskID.String(),
			ResourceLocation: DefaultRegion, ResourceName: "d1", ResourceType: "Microsoft.Compute/disks"},
		PolicyInfo: dataprotection.PolicyInfo{PolicyID: policyID.String(), PolicyParameters: &dataprotection.PolicyParameters{
			DataStoreParametersList: []dataprotection.DataStoreParameters{{ObjectType: "AzureOperationalStoreParameters",
				DataStoreType: "OperationalStore", ResourceGroupID: snapRG.String()}}}}}}
	if _, _, err := svc.PutInstance(ctx, caller, bi, in); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ConfigureInstance(ctx, bi); err != nil {
		t.Fatal(err)
	}
	backup := func() job.Resource {
		t.Helper()
		id, err := svc.AdhocBackup(ctx, bi, dataprotection.BackupRequest{RuleName: "BackupHourly", RetentionTag: "Default"})
		if err != nil {
			t.Fatal(err)
		}
		jobID := resource.MustParse(id)
		for i := 0; ; i++ {
			j, err := svc.GetJob(ctx, vaultID, jobID.Name())
			if err != nil {
				t.Fatal(err)
			}
			if j.Properties.Status != string(job.InProgress) {
				return j
			}
			if i > 3000 {
				t.Fatalf("job %s still in progress", jobID.Name())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	repair := breakPacks(t, dir)
	if j := backup(); j.Properties.Status != string(job.Failed) {
		t.Fatalf("backup with a broken pack directory: %+v", j.Properties)
	}
	snaps, err := srv.Compute.ListSnapshots(ctx, snapRG)
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range snaps {
		t.Errorf("snapshot %s left behind in state %s", sn.Name, sn.ProvisioningState)
	}
	if rps, err := svc.ListRecoveryPoints(ctx, bi, dataprotection.RPFilter{}); err != nil || len(rps) != 0 {
		t.Fatalf("recovery points after the failure: %d %v", len(rps), err)
	}

	repair()
	if j := backup(); j.Properties.Status != string(job.Completed) {
		t.Fatalf("backup once the pack directory is back: %+v", j.Properties)
	}
	if snaps, err := srv.Compute.ListSnapshots(ctx, snapRG); err != nil || len(snaps) != 1 || snaps[0].ProvisioningState != compute.StateSucceeded {
		t.Fatalf("snapshots after a good backup: %+v %v", snaps, err)
	}
}
