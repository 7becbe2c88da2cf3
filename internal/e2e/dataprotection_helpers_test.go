package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dataprotection/armdataprotection/v3"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"coffer/internal/client"
	"coffer/internal/dataprotection"
	"coffer/internal/identity"
	"coffer/internal/rbac"
)

// dpEnv is a server with the Azure SDK clients of the disk backup flow.
type dpEnv struct {
	*Env
	ctx      context.Context
	sub      string
	cred     azcore.TokenCredential
	c        *client.Client
	groups   *armresources.ResourceGroupsClient
	disks    *armcompute.DisksClient
	snaps    *armcompute.SnapshotsClient
	assign   *armauthorization.RoleAssignmentsClient
	vaults   *armdataprotection.BackupVaultsClient
	policies *armdataprotection.BackupPoliciesClient
	bis      *armdataprotection.BackupInstancesClient
	rps      *armdataprotection.RecoveryPointsClient
	jobs     *armdataprotection.JobsClient
}

func startDP(t *testing.T, o Options) *dpEnv {
	t.Helper()
	o.TLS = true
	env := Start(t, o)
	e := &dpEnv{Env: env, ctx: context.Background(), sub: env.Admin.SubscriptionID, c: env.Client("")}
	e.cred = env.Credential(env.Admin.ClientID, env.Admin.ClientSecret)
	e.clients(t, e.sub)
	return e
}

func (e *dpEnv) clients(t *testing.T, sub string) {
	t.Helper()
	opts := e.ARMOptions()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	var err error
	e.groups, err = armresources.NewResourceGroupsClient(sub, e.cred, opts)
	must(err)
	cf, err := armcompute.NewClientFactory(sub, e.cred, opts)
	must(err)
	e.disks, e.snaps = cf.NewDisksClient(), cf.NewSnapshotsClient()
	e.assign, err = armauthorization.NewRoleAssignmentsClient(sub, e.cred, opts)
	must(err)
	df, err := armdataprotection.NewClientFactory(sub, e.cred, opts)
	must(err)
	e.vaults, e.policies, e.bis = df.NewBackupVaultsClient(), df.NewBackupPoliciesClient(), df.NewBackupInstancesClient()
	e.rps, e.jobs = df.NewRecoveryPointsClient(), df.NewJobsClient()
}

func (e *dpEnv) group(t *testing.T, name, location string) {
	t.Helper()
	if _, err := e.groups.CreateOrUpdate(e.ctx, name, armresources.ResourceGroup{Location: to.Ptr(location)}, nil); err != nil {
		t.Fatalf("create group %s: %v", name, err)
	}
}

func (e *dpEnv) disk(t *testing.T, rg, name, location, sku string) armcompute.Disk {
	t.Helper()
	p, err := e.disks.BeginCreateOrUpdate(e.ctx, rg, name, armcompute.Disk{Location: to.Ptr(location),
		SKU: &armcompute.DiskSKU{Name: to.Ptr(armcompute.DiskStorageAccountTypes(sku))},
		Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionEmpty)},
			DiskSizeGB: to.Ptr[int32](1)}}, nil)
	if err != nil {
		t.Fatalf("create disk %s: %v", name, err)
	}
	res, err := p.PollUntilDone(e.ctx, nil)
	if err != nil {
		t.Fatalf("create disk %s: %v", name, err)
	}
	return res.Disk
}

// sas grants access to a disk through the SDK and returns the SAS URL.
func (e *dpEnv) sas(t *testing.T, rg, name string, access armcompute.AccessLevel) string {
	t.Helper()
	p, err := e.disks.BeginGrantAccess(e.ctx, rg, name, armcompute.GrantAccessData{Access: to.Ptr(access), DurationInSeconds: to.Ptr[int32](3600)}, nil)
	if err != nil {
		t.Fatalf("grant %s: %v", name, err)
	}
	res, err := p.PollUntilDone(e.ctx, nil)
	if err != nil {
		t.Fatalf("grant %s: %v", name, err)
	}
	return *res.AccessSAS
}

func (e *dpEnv) endAccess(t *testing.T, rg, name string) {
	t.Helper()
	p, err := e.disks.BeginRevokeAccess(e.ctx, rg, name, nil)
	if err != nil {
		t.Fatalf("revoke %s: %v", name, err)
	}
	if _, err := p.PollUntilDone(e.ctx, nil); err != nil {
		t.Fatalf("revoke %s: %v", name, err)
	}
}

// write writes b at each offset of a disk through its SAS URL.
func (e *dpEnv) write(t *testing.T, rg, name string, b byte, offsets ...int64) {
	t.Helper()
	sas := e.sas(t, rg, name, armcompute.AccessLevelWrite)
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = b ^ byte(i*7)
	}
	for _, off := range offsets {
		if err := e.c.PutPages(e.ctx, sas, off, buf); err != nil {
			t.Fatalf("write %s at %d: %v", name, off, err)
		}
	}
	e.endAccess(t, rg, name)
}

// hash returns the SHA-256 of a disk's contents in a canonical form that
// stands for every byte: the size, then each non-zero 64 KiB block with its
// offset. Only the allocated ranges are read (the rest reads as zeros), so
// comparing hashes compares whole disks byte for byte.
func (e *dpEnv) hash(t *testing.T, rg, name string) string {
	t.Helper()
	sas := e.sas(t, rg, name, armcompute.AccessLevelRead)
	defer e.endAccess(t, rg, name)
	ranges, size, err := e.c.PageRanges(e.ctx, sas, "")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "size %d\n", size)
	const block = 64 << 10
	zero := make([]byte, block)
	last := int64(-1)
	for _, r := range ranges {
		if r.Clear {
			continue
		}
		start := r.Start / block * block
		end := (r.End/block + 1) * block
		if start <= last {
			start = last + block
		}
		for off := start; off < end && off < size; off += 16 << 20 {
			n := min(16<<20, end-off, size-off)
			b, err := e.c.ReadRange(e.ctx, sas, off, n)
			if err != nil {
				t.Fatalf("read %s: %v", name, err)
			}
			for i := int64(0); i < n; i += block {
				blk := b[i:min(i+block, n)]
				if !bytes.Equal(blk, zero[:len(blk)]) {
					fmt.Fprintf(h, "%d\n", off+i)
					h.Write(blk)
				}
				last = off + i
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (e *dpEnv) vault(t *testing.T, rg, name, location string) armdataprotection.BackupVaultResource {
	t.Helper()
	p, err := e.vaults.BeginCreateOrUpdate(e.ctx, rg, name, armdataprotection.BackupVaultResource{Location: to.Ptr(location),
		Identity: &armdataprotection.DppIdentityDetails{Type: to.Ptr("SystemAssigned")},
		Properties: &armdataprotection.BackupVault{StorageSettings: []*armdataprotection.StorageSetting{{
			DatastoreType: to.Ptr(armdataprotection.StorageSettingStoreTypesVaultStore), Type: to.Ptr(armdataprotection.StorageSettingTypesLocallyRedundant)}}}}, nil)
	if err != nil {
		t.Fatalf("create vault: %v", err)
	}
	res, err := p.PollUntilDone(e.ctx, nil)
	if err != nil {
		t.Fatalf("create vault: %v", err)
	}
	if res.Identity == nil || res.Identity.PrincipalID == nil || !identity.IsGUID(*res.Identity.PrincipalID) || *res.Identity.TenantID != e.Admin.TenantID {
		t.Fatalf("vault identity: %+v", res.Identity)
	}
	return res.BackupVaultResource
}

// policy puts a policy from JSON (the properties object).
func (e *dpEnv) policy(t *testing.T, rg, vault, name string, props any) armdataprotection.BaseBackupPolicyResource {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"properties": props})
	var in armdataprotection.BaseBackupPolicyResource
	if err := json.Unmarshal(b, &in); err != nil {
		t.Fatal(err)
	}
	res, err := e.policies.CreateOrUpdate(e.ctx, rg, vault, name, in, nil)
	if err != nil {
		t.Fatalf("create policy: %v", err)
	}
	return res.BaseBackupPolicyResource
}

// quietStart is the first slot of defaultPolicy's schedule: far enough
// ahead that no scheduled backup runs while a test does.
const quietStart = "2099-04-05T13:00:00+00:00"

// defaultPolicy is Azure's default disk policy template (its rule
// BackupHourly every 4 hours, Default tag kept 7 days) with the schedule
// starting at quietStart. The template's own schedule (from 2020, every 4 h
// at 13:00 UTC) would put a scheduled backup into any test that runs across
// 13:00, 17:00, 21:00… on the real clock, and tests count recovery points
// and jobs as though only their on-demand backups ran.
func defaultPolicy() dataprotection.PolicyTemplate {
	p := dataprotection.DefaultPolicyTemplate()
	for _, r := range p.BackupPolicy.PolicyRules {
		if br, ok := r.(*dataprotection.AzureBackupRule); ok && br.Trigger != nil {
			br.Trigger.Schedule.RepeatingTimeIntervals = []string{"R/" + quietStart + "/PT4H"}
		}
	}
	return p
}

func (e *dpEnv) roleDefinitionID(guid string) string {
	return "/subscriptions/" + e.sub + "/providers/Microsoft.Authorization/roleDefinitions/" + guid
}

func (e *dpEnv) grantRole(t *testing.T, principal, roleGUID, scope string) {
	t.Helper()
	_, err := e.assign.Create(e.ctx, strings.TrimPrefix(scope, "/"), identity.NewGUID(), armauthorization.RoleAssignmentCreateParameters{
		Properties: &armauthorization.RoleAssignmentProperties{PrincipalID: to.Ptr(principal), RoleDefinitionID: to.Ptr(e.roleDefinitionID(roleGUID)),
			PrincipalType: to.Ptr(armauthorization.PrincipalTypeServicePrincipal)}}, nil)
	if err != nil {
		t.Fatalf("assign role %s at %s: %v", roleGUID, scope, err)
	}
}

func biBody(diskID, location, policyID, snapRG string) armdataprotection.BackupInstance {
	bi := armdataprotection.BackupInstance{ObjectType: to.Ptr("BackupInstance"),
		DataSourceInfo: &armdataprotection.Datasource{ResourceID: to.Ptr(diskID), DatasourceType: to.Ptr("Microsoft.Compute/disks"),
			ObjectType: to.Ptr("Datasource"), ResourceLocation: to.Ptr(location), ResourceName: to.Ptr(diskID[strings.LastIndex(diskID, "/")+1:]),
			ResourceType: to.Ptr("Microsoft.Compute/disks"), ResourceURI: to.Ptr("")},
		PolicyInfo: &armdataprotection.PolicyInfo{PolicyID: to.Ptr(policyID)}}
	if snapRG != "" {
		bi.PolicyInfo.PolicyParameters = &armdataprotection.PolicyParameters{DataStoreParametersList: []armdataprotection.DataStoreParametersClassification{
			&armdataprotection.AzureOperationalStoreParameters{ObjectType: to.Ptr("AzureOperationalStoreParameters"),
				DataStoreType: to.Ptr(armdataprotection.DataStoreTypesOperationalStore), ResourceGroupID: to.Ptr(snapRG)}}}
	}
	return bi
}

func (e *dpEnv) validateForBackup(rg, vault string, bi armdataprotection.BackupInstance) (string, error) {
	p, err := e.bis.BeginValidateForBackup(e.ctx, rg, vault, armdataprotection.ValidateForBackupRequest{BackupInstance: &bi}, nil)
	if err != nil {
		return "", err
	}
	res, err := p.PollUntilDone(e.ctx, &runtimePollOptions)
	if err != nil {
		return "", err
	}
	return *res.JobID, nil
}

func (e *dpEnv) protect(rg, vault, name string, bi armdataprotection.BackupInstance) (armdataprotection.BackupInstanceResource, error) {
	p, err := e.bis.BeginCreateOrUpdate(e.ctx, rg, vault, name, armdataprotection.BackupInstanceResource{Properties: &bi}, nil)
	if err != nil {
		return armdataprotection.BackupInstanceResource{}, err
	}
	res, err := p.PollUntilDone(e.ctx, &runtimePollOptions)
	return res.BackupInstanceResource, err
}

// backupNow triggers an on-demand backup and waits for its job.
func (e *dpEnv) backupNow(t *testing.T, rg, vault, bi, rule, tag string) armdataprotection.AzureBackupJob {
	t.Helper()
	p, err := e.bis.BeginAdhocBackup(e.ctx, rg, vault, bi, armdataprotection.TriggerBackupRequest{BackupRuleOptions: &armdataprotection.AdHocBackupRuleOptions{
		RuleName: to.Ptr(rule), TriggerOption: &armdataprotection.AdhocBackupTriggerOption{RetentionTagOverride: to.Ptr(tag)}}}, nil)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	res, err := p.PollUntilDone(e.ctx, &runtimePollOptions)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return e.waitJob(t, rg, vault, *res.JobID)
}

// waitJob polls a job (ID or ARM ID) until it ends.
func (e *dpEnv) waitJob(t *testing.T, rg, vault, id string) armdataprotection.AzureBackupJob {
	t.Helper()
	id = id[strings.LastIndex(id, "/")+1:]
	for i := 0; ; i++ {
		res, err := e.jobs.Get(e.ctx, rg, vault, id, nil)
		if err != nil {
			t.Fatalf("get job %s: %v", id, err)
		}
		st := *res.Properties.Status
		if st != "InProgress" {
			return *res.Properties
		}
		if i > 1200 {
			t.Fatalf("job %s still %s", id, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *dpEnv) restoreRequest(rpID, targetDiskID, location string) *armdataprotection.AzureBackupRecoveryPointBasedRestoreRequest {
	return &armdataprotection.AzureBackupRecoveryPointBasedRestoreRequest{ObjectType: to.Ptr("AzureBackupRecoveryPointBasedRestoreRequest"),
		RecoveryPointID: to.Ptr(rpID), SourceDataStoreType: to.Ptr(armdataprotection.SourceDataStoreTypeOperationalStore),
		RestoreTargetInfo: &armdataprotection.RestoreTargetInfo{ObjectType: to.Ptr("RestoreTargetInfo"),
			RecoveryOption: to.Ptr(armdataprotection.RecoveryOptionFailIfExists), RestoreLocation: to.Ptr(location),
			DatasourceInfo: &armdataprotection.Datasource{ObjectType: to.Ptr("Datasource"), ResourceID: to.Ptr(targetDiskID),
				DatasourceType: to.Ptr("Microsoft.Compute/disks"), ResourceType: to.Ptr("Microsoft.Compute/disks"),
				ResourceName: to.Ptr(targetDiskID[strings.LastIndex(targetDiskID, "/")+1:]), ResourceLocation: to.Ptr(location), ResourceURI: to.Ptr(targetDiskID)}}}
}

func (e *dpEnv) validateRestore(rg, vault, bi string, req *armdataprotection.AzureBackupRecoveryPointBasedRestoreRequest) error {
	p, err := e.bis.BeginValidateForRestore(e.ctx, rg, vault, bi, armdataprotection.ValidateRestoreRequestObject{RestoreRequestObject: req}, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, &runtimePollOptions)
	return err
}

func (e *dpEnv) restore(rg, vault, bi string, req *armdataprotection.AzureBackupRecoveryPointBasedRestoreRequest) (string, error) {
	p, err := e.bis.BeginTriggerRestore(e.ctx, rg, vault, bi, req, nil)
	if err != nil {
		return "", err
	}
	res, err := p.PollUntilDone(e.ctx, &runtimePollOptions)
	if err != nil {
		return "", err
	}
	return *res.JobID, nil
}

func (e *dpEnv) recoveryPoints(t *testing.T, rg, vault, bi string, opts *armdataprotection.RecoveryPointsClientListOptions) []*armdataprotection.AzureBackupRecoveryPointResource {
	t.Helper()
	var out []*armdataprotection.AzureBackupRecoveryPointResource
	pg := e.rps.NewListPager(rg, vault, bi, opts)
	for pg.More() {
		page, err := pg.NextPage(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Value...)
	}
	return out
}

// protectedDisk sets up the how-to's starting point: groups rg-disks,
// rg-snaps, rg-vault and rg-restore; a disk rg-disks/data1 with size bytes
// of fill; vault1 with DiskPolicy; the vault identity's three roles; the
// disk protected as data1-bi and backed up once. It returns the disk and
// the hash of its contents at the backup.
func (e *dpEnv) protectedDisk(t *testing.T, loc string, fill byte, size int64) (armcompute.Disk, string) {
	t.Helper()
	for _, g := range []string{"rg-disks", "rg-snaps", "rg-vault", "rg-restore"} {
		e.group(t, g, loc)
	}
	src := e.disk(t, "rg-disks", "data1", loc, "StandardSSD_LRS")
	e.write(t, "rg-disks", "data1", fill, 0, size)
	want := e.hash(t, "rg-disks", "data1")
	v := e.vault(t, "rg-vault", "vault1", loc)
	pol := e.policy(t, "rg-vault", "vault1", "DiskPolicy", defaultPolicy())
	snapRG := "/subscriptions/" + e.sub + "/resourceGroups/rg-snaps"
	e.grantRole(t, *v.Identity.PrincipalID, rbac.RoleDiskBackupReader, *src.ID)
	e.grantRole(t, *v.Identity.PrincipalID, rbac.RoleDiskSnapshotContributor, snapRG)
	e.grantRole(t, *v.Identity.PrincipalID, rbac.RoleDiskRestoreOperator, "/subscriptions/"+e.sub+"/resourceGroups/rg-restore")
	if _, err := e.protect("rg-vault", "vault1", "data1-bi", biBody(*src.ID, loc, *pol.ID, snapRG)); err != nil {
		t.Fatalf("protect: %v", err)
	}
	if j := e.backupNow(t, "rg-vault", "vault1", "data1-bi", "BackupHourly", "Default"); *j.Status != "Completed" {
		t.Fatalf("backup: %+v", j)
	}
	return src, want
}
