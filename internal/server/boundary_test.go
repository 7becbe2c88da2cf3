package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/authorization"
	"coffer/internal/compute"
	"coffer/internal/dataprotection"
	"coffer/internal/identity"
	"coffer/internal/job"
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/store/storetest"
)

// roleless makes a service principal with no role anywhere and returns its
// API token.
func roleless(t *testing.T, srv *Server) (identity.Principal, string) {
	t.Helper()
	ctx := context.Background()
	p, _, err := srv.IDs.Create(ctx, identity.CreateOptions{Kind: identity.ServicePrincipal, DisplayName: "nobody", WithSecret: true})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := srv.IDs.IssueAPIToken(ctx, p.ID, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	return p, tok
}

// call sends a request to the server's handler and returns the status,
// the error code and the body.
func call(t *testing.T, srv *Server, token, method, path string, body []byte) (int, string, string) {
	t.Helper()
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, w.Header().Get("x-ms-error-code"), string(b)
}

// TestComputeAuthorizesBeforeTheBody: a caller with no role is refused
// with 403 AuthorizationFailed by PUT, PATCH, beginGetAccess and
// endGetAccess of a disk or snapshot, whatever the body says, as ARM
// refuses it; the body's errors (LocationRequired, a missing
// durationInSeconds) are not shown to it. (The handlers used to decode and
// validate the body before the service authorized the caller.)
func TestComputeAuthorizesBeforeTheBody(t *testing.T) {
	srv, _, _, diskID := openWithDisk(t, "rg")
	_, tok := roleless(t, srv)
	snap := diskID.GroupScope().String() + "/providers/Microsoft.Compute/snapshots/s1"
	const v = "?api-version=2024-03-02"
	for _, c := range []struct {
		method, path, body string
	}{
		{"PUT", diskID.String() + v, `{}`},
		{"PUT", diskID.String() + v, `{"location":"local","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":-1}}`},
		{"PATCH", diskID.String() + v, `{"properties":{"diskSizeGB":-5}}`},
		{"POST", diskID.String() + "/beginGetAccess" + v, `{"access":"Read"}`},
		{"POST", diskID.String() + "/beginGetAccess" + v, `{"access":"Sideways","durationInSeconds":60}`},
		{"POST", diskID.String() + "/endGetAccess" + v, `{"grantId":"not-a-guid"}`},
		{"PUT", snap + v, `{}`},
		{"PATCH", snap + v, `{"tags":{"a":1}}`},
	} {
		status, code, body := call(t, srv, tok, c.method, c.path, []byte(c.body))
		if status != http.StatusForbidden || code != "AuthorizationFailed" {
			t.Errorf("%s %s %s: %d %s %s, want 403 AuthorizationFailed", c.method, c.path, c.body, status, code, body)
		}
	}
}

// pathFor fills a route pattern with names that every name rule accepts,
// in the admin's subscription.
func pathFor(srv *Server, pattern string) string {
	sub := srv.Admin.SubscriptionID
	r := strings.NewReplacer("{scope...}", "/subscriptions/"+sub+"/resourceGroups/rg", "{sub}", sub, "{rg}", "rg", "{vault}", "v1",
		"{policy}", "p1", "{bi}", "bi1", "{rp}", "rp1", "{job}", "00000000-0000-4000-8000-00000000000a", "{name}", "n1",
		"{id}", "00000000-0000-4000-8000-00000000000b", "{alias}", "a1", "{location}", "local", "{op}", "op1")
	return r.Replace(pattern)
}

// TestEveryRouteAuthorizesBeforeItsBody walks the whole route table: every
// route that declares an action (or a tenant-level action) refuses a caller
// without roles with 403 AuthorizationFailed naming that action, before it
// reads the body (which here is not even JSON), and changes nothing.
func TestEveryRouteAuthorizesBeforeItsBody(t *testing.T) {
	srv, _, _, _ := openWithDisk(t, "rg")
	p, tok := roleless(t, srv)
	ctx := context.Background()
	index := func() uint64 {
		var i uint64
		srv.store.View(ctx, func(tx store.Tx) error { i = tx.Index(); return nil })
		return i
	}
	before := index()
	checked := 0
	for _, rt := range srv.API.Routes() {
		action := rt.Action
		if action == "" {
			action = rt.TenantAction
		}
		if action == "" {
			if !rt.Anonymous && rt.Checks == "" {
				t.Errorf("%s %s declares no authorization", rt.Method, rt.Pattern)
			}
			continue
		}
		path := pathFor(srv, rt.Pattern)
		if len(rt.Versions) > 0 {
			path += "?api-version=" + rt.Versions[len(rt.Versions)-1]
		}
		status, code, body := call(t, srv, tok, rt.Method, path, []byte(`{"location": 5, "properties": [`))
		if status != http.StatusForbidden || code != "AuthorizationFailed" {
			t.Errorf("%s %s: %d %s %s, want 403 AuthorizationFailed", rt.Method, rt.Pattern, status, code, body)
			continue
		}
		if rt.Method != http.MethodHead && (!strings.Contains(body, "'"+action+"'") || !strings.Contains(body, p.ID)) {
			t.Errorf("%s %s: the refusal does not name %s and the caller: %s", rt.Method, rt.Pattern, action, body)
		}
		checked++
	}
	if after := index(); after != before {
		t.Errorf("refused requests wrote to the store (index %d → %d)", before, after)
	}
	if checked < 50 {
		t.Errorf("only %d routes checked", checked)
	}
}

// countingAuthz counts the decisions the decision point makes for each
// principal, action and scope.
type countingAuthz struct {
	*authorization.Service
	mu sync.Mutex
	n  map[string]int
}

func (c *countingAuthz) Decide(ctx context.Context, p identity.Principal, action, scope string) (authorization.Decision, error) {
	c.mu.Lock()
	c.n[strings.ToLower(p.ID+" "+action+" "+scope)]++
	c.mu.Unlock()
	return c.Service.Decide(ctx, p, action, scope)
}

func (c *countingAuthz) count(p, action, scope string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[strings.ToLower(p+" "+action+" "+scope)]
}

func (c *countingAuthz) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = map[string]int{}
}

// waitJob waits for a job of the vault to end.
func waitJob(t *testing.T, svc *dataprotection.Service, vaultID resource.ID, jobResourceID string) job.Resource {
	t.Helper()
	jobID := resource.MustParse(jobResourceID)
	ctx := context.Background()
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

// TestVaultWorkAuthorizedOnce: a backup and a restore run by the workers as
// the vault's managed identity decide each action the identity performs on
// Compute exactly once (they were decided twice: by the worker and again by
// Compute): reading the disk, taking the snapshot, reading the disk's bytes
// (the linked check), making the restored disk. The restore's validation
// decides the snapshot's read and beginGetAccess once more, as the request's
// own check.
func TestVaultWorkAuthorizedOnce(t *testing.T) {
	ctx := context.Background()
	srv, _, _, diskID := openWithDisk(t, "rg-disks", "rg-snaps", "rg-vault", "rg-restore")
	svc := srv.dp.svc
	counter := &countingAuthz{Service: srv.Authz, n: map[string]int{}}
	svc.Authz, srv.Compute.Authz = counter, counter
	sub := srv.Admin.SubscriptionID
	vaultID := dataprotection.VaultID(sub, "rg-vault", "v1")
	v, _, err := svc.PutVault(ctx, dataprotection.Caller{Name: "test"}, vaultID, dataprotection.VaultInput{Location: DefaultRegion,
		IdentityType: dataprotection.IdentitySystemAssigned, StorageSettings: []dataprotection.StorageSetting{{DatastoreType: "VaultStore", Type: "LocallyRedundant"}}})
	if err != nil {
		t.Fatal(err)
	}
	vid := v.Identity.PrincipalID
	policyID := vaultID.Child("backupPolicies", "p")
	if _, _, err := svc.PutPolicy(ctx, policyID, dataprotection.DefaultPolicyTemplate().BackupPolicy); err != nil {
		t.Fatal(err)
	}
	snapRG := resource.GroupID(sub, "rg-snaps")
	restoreRG := resource.GroupID(sub, "rg-restore")
	if err := srv.store.Update(ctx, func(tx store.Tx) error {
		for _, a := range []struct{ role, scope string }{{rbac.RoleDiskBackupReader, diskID.String()},
			{rbac.RoleDiskSnapshotContributor, snapRG.String()}, {rbac.RoleDiskRestoreOperator, restoreRG.String()}} {
			if _, err := srv.Authz.Assign(ctx, tx, vid, "ServicePrincipal", a.role, a.scope, "test"); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	bi := dataprotection.InstanceID(vaultID, "d1-bi")
	in := dataprotection.InstanceInput{Properties: dataprotection.Instance{ObjectType: "BackupInstance",
		DataSourceInfo: dataprotection.Datasource{ResourceID: diskID.String(), ResourceLocation: DefaultRegion},
		PolicyInfo: dataprotection.PolicyInfo{PolicyID: policyID.String(), PolicyParameters: &dataprotection.PolicyParameters{
			DataStoreParametersList: []dataprotection.DataStoreParameters{{DataStoreType: "OperationalStore", ResourceGroupID: snapRG.String()}}}}}}
	if _, _, err := svc.PutInstance(ctx, dataprotection.Caller{Name: "test"}, bi, in); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ConfigureInstance(ctx, bi); err != nil {
		t.Fatal(err)
	}

	counter.reset()
	jobID, err := svc.AdhocBackup(ctx, bi, dataprotection.BackupRequest{RuleName: "BackupHourly", RetentionTag: "Default"})
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, svc, vaultID, jobID); j.Properties.Status != string(job.Completed) {
		t.Fatalf("backup: %+v", j.Properties)
	}
	rps, err := svc.ListRecoveryPoints(ctx, bi, dataprotection.RPFilter{})
	if err != nil || len(rps) != 1 {
		t.Fatalf("recovery points: %d %v", len(rps), err)
	}
	snap := rps[0].Properties.RecoveryPointDataStoresDetails[0].ID
	for _, d := range []struct{ action, scope string }{
		{compute.ActionDiskRead, diskID.String()},
		{compute.ActionSnapshotWrite, snap},
		{compute.ActionDiskGrant, diskID.String()},
	} {
		if n := counter.count(vid, d.action, d.scope); n != 1 {
			t.Errorf("backup: %s at %s decided %d times, want once", d.action, d.scope, n)
		}
	}

	counter.reset()
	target := restoreRG.Child("Microsoft.Compute/disks", "restored")
	jobID, err = svc.Restore(ctx, bi, dataprotection.RestoreRequest{RecoveryPointID: rps[0].Name,
		Target: &dataprotection.RestoreTarget{RecoveryOption: dataprotection.RecoveryOptionFailIfExists, DiskID: target.String()}})
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, svc, vaultID, jobID); j.Properties.Status != string(job.Completed) {
		t.Fatalf("restore: %+v", j.Properties)
	}
	if n := counter.count(vid, compute.ActionDiskWrite, target.String()); n != 1 {
		t.Errorf("restore: %s at %s decided %d times, want once", compute.ActionDiskWrite, target, n)
	}
	if n := counter.count(vid, compute.ActionSnapshotGrant, snap); n != 2 {
		t.Errorf("restore: %s at %s decided %d times, want twice (validation, then the restore)", compute.ActionSnapshotGrant, snap, n)
	}
}

// TestBackupReadsTheDiskItNames: the backup side reads a disk or a snapshot
// by its ID; it does not list the resource group to find it (it listed
// every disk of the group, each read of a backup or restore).
func TestBackupReadsTheDiskItNames(t *testing.T) {
	ctx := context.Background()
	srv, _, admin, diskID := openWithDisk(t, "rg")
	for i := range 3 {
		id := diskID.GroupScope().Child("Microsoft.Compute/disks", fmt.Sprintf("other%d", i))
		if _, err := srv.Compute.CreateDisk(ctx, admin, id, compute.DiskInput{Location: DefaultRegion, DiskSizeGB: 1,
			CreationData: compute.CreationData{CreateOption: compute.OptionEmpty}}); err != nil {
			t.Fatal(err)
		}
	}
	cs := storetest.CountLists(srv.Compute.Store)
	srv.Compute.Store = cs
	d := computeDisks{c: srv.Compute}
	info, err := d.GetDisk(ctx, diskID)
	if err != nil || !strings.EqualFold(info.ID, diskID.String()) {
		t.Fatalf("GetDisk = %+v %v", info, err)
	}
	if _, err := d.GetDisk(ctx, diskID.GroupScope().Child("Microsoft.Compute/disks", "missing")); err == nil {
		t.Fatal("GetDisk of a missing disk succeeded")
	}
	if _, err := d.GetSnapshot(ctx, diskID.GroupScope().Child("Microsoft.Compute/snapshots", "missing")); err == nil {
		t.Fatal("GetSnapshot of a missing snapshot succeeded")
	}
	if n := cs.Lists(compute.KindDisk, compute.KindSnapshot); n != 0 {
		t.Errorf("%d lists of disks and snapshots to read one resource", n)
	}
}
