package e2e

import (
	"context"
	"net/http"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
)

// TestComputeSDK drives disks and snapshots with the official armcompute/v8
// SDK: create (Empty, and Copy from a snapshot), list by group and
// subscription, grow, refuse to shrink, snapshot, beginGetAccess to a SAS URL
// that serves the disk's size, refuse to delete an exported disk,
// endGetAccess, delete.
func TestComputeSDK(t *testing.T) {
	ctx := context.Background()
	env := Start(t, Options{TLS: true})
	sub := env.Admin.SubscriptionID
	cred := env.Credential(env.Admin.ClientID, env.Admin.ClientSecret)
	groups, err := armresources.NewResourceGroupsClient(sub, cred, env.ARMOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"rg-disks", "rg-snaps"} {
		if _, err := groups.CreateOrUpdate(ctx, g, armresources.ResourceGroup{Location: to.Ptr("local")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	fac, err := armcompute.NewClientFactory(sub, cred, env.ARMOptions())
	if err != nil {
		t.Fatal(err)
	}
	disks, snaps := fac.NewDisksClient(), fac.NewSnapshotsClient()

	create := func(name string, d armcompute.Disk) armcompute.Disk {
		t.Helper()
		p, err := disks.BeginCreateOrUpdate(ctx, "rg-disks", name, d, nil)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		res, err := p.PollUntilDone(ctx, nil)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return res.Disk
	}
	d1 := create("data1", armcompute.Disk{Location: to.Ptr("local"), SKU: &armcompute.DiskSKU{Name: to.Ptr(armcompute.DiskStorageAccountTypesPremiumLRS)},
		Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionEmpty)}, DiskSizeGB: to.Ptr[int32](1)}})
	if *d1.Properties.DiskSizeGB != 1 || *d1.Properties.DiskSizeBytes != 1<<30 || *d1.Properties.ProvisioningState != "Succeeded" ||
		*d1.Properties.DiskState != armcompute.DiskStateUnattached || *d1.SKU.Name != armcompute.DiskStorageAccountTypesPremiumLRS ||
		d1.Properties.UniqueID == nil || d1.Properties.TimeCreated == nil || *d1.Location != "local" {
		t.Fatalf("created disk: %+v", d1.Properties)
	}
	create("data2", armcompute.Disk{Location: to.Ptr("local"),
		Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionEmpty)}, DiskSizeGB: to.Ptr[int32](2)}})

	listNames := func(rg string) []string {
		t.Helper()
		var names []string
		if rg == "" {
			pg := disks.NewListPager(nil)
			for pg.More() {
				page, err := pg.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range page.Value {
					names = append(names, *d.Name)
				}
			}
			return names
		}
		pg := disks.NewListByResourceGroupPager(rg, nil)
		for pg.More() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range page.Value {
				names = append(names, *d.Name)
			}
		}
		return names
	}
	if got := listNames("rg-disks"); len(got) != 2 || got[0] != "data1" || got[1] != "data2" {
		t.Fatalf("disks in group: %v", got)
	}
	if got := listNames(""); len(got) != 2 {
		t.Fatalf("disks in subscription: %v", got)
	}

	// Grow, then refuse to shrink.
	up, err := disks.BeginUpdate(ctx, "rg-disks", "data1", armcompute.DiskUpdate{Properties: &armcompute.DiskUpdateProperties{DiskSizeGB: to.Ptr[int32](3)},
		Tags: map[string]*string{"tier": to.Ptr("gold")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	grown, err := up.PollUntilDone(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *grown.Properties.DiskSizeGB != 3 || *grown.Properties.DiskSizeBytes != 3<<30 || *grown.Tags["tier"] != "gold" {
		t.Fatalf("grown disk: %+v %v", grown.Properties, grown.Tags)
	}
	if _, err := disks.BeginUpdate(ctx, "rg-disks", "data1", armcompute.DiskUpdate{Properties: &armcompute.DiskUpdateProperties{DiskSizeGB: to.Ptr[int32](2)}}, nil); err == nil {
		t.Fatal("shrink accepted")
	} else if st, code := responseCode(t, err); st != http.StatusBadRequest || code != "BadRequest" {
		t.Fatalf("shrink: %d %s", st, code)
	}

	// An incremental snapshot in another group of the subscription.
	sp, err := snaps.BeginCreateOrUpdate(ctx, "rg-snaps", "snap1", armcompute.Snapshot{Location: to.Ptr("local"),
		Properties: &armcompute.SnapshotProperties{Incremental: to.Ptr(true),
			CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: d1.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := sp.PollUntilDone(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *snap.Properties.ProvisioningState != "Succeeded" || !*snap.Properties.Incremental || *snap.Properties.IncrementalSnapshotFamilyID != *d1.Properties.UniqueID ||
		*snap.Properties.DiskSizeGB != 3 || *snap.Properties.CreationData.SourceUniqueID != *d1.Properties.UniqueID {
		t.Fatalf("snapshot: %+v", snap.Properties)
	}
	sg, err := snaps.Get(ctx, "rg-snaps", "snap1", nil)
	if err != nil || *sg.Properties.ProvisioningState != "Succeeded" {
		t.Fatalf("get snapshot: %v %+v", err, sg)
	}
	spg := snaps.NewListPager(nil)
	nsnaps := 0
	for spg.More() {
		page, err := spg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		nsnaps += len(page.Value)
	}
	if nsnaps != 1 {
		t.Fatalf("listed %d snapshots", nsnaps)
	}

	// A disk from the snapshot.
	restored := create("from-snap", armcompute.Disk{Location: to.Ptr("local"),
		Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: snap.ID}}})
	if *restored.Properties.DiskSizeGB != 3 || *restored.Properties.CreationData.SourceUniqueID != *snap.Properties.UniqueID {
		t.Fatalf("restored disk: %+v", restored.Properties)
	}

	// beginGetAccess → a SAS URL; the disk is ActiveSAS and cannot be deleted.
	gp, err := disks.BeginGrantAccess(ctx, "rg-disks", "data1", armcompute.GrantAccessData{Access: to.Ptr(armcompute.AccessLevelRead), DurationInSeconds: to.Ptr[int32](600)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	grant, err := gp.PollUntilDone(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if grant.AccessSAS == nil || *grant.AccessSAS == "" {
		t.Fatalf("no SAS: %+v", grant)
	}
	resp, err := env.HTTP.Head(*grant.AccessSAS)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != 3<<30 || resp.Header.Get("x-ms-blob-type") != "PageBlob" {
		t.Fatalf("HEAD SAS: %d %d %v", resp.StatusCode, resp.ContentLength, resp.Header)
	}
	g, err := disks.Get(ctx, "rg-disks", "data1", nil)
	if err != nil || *g.Properties.DiskState != armcompute.DiskStateActiveSAS {
		t.Fatalf("state after grant: %v %v", err, g.Properties.DiskState)
	}
	if _, err := disks.BeginDelete(ctx, "rg-disks", "data1", nil); err == nil {
		t.Fatal("deleted an exported disk")
	} else if st, code := responseCode(t, err); st != http.StatusConflict || code != "OperationNotAllowed" {
		t.Fatalf("delete exported: %d %s", st, code)
	}
	rp, err := disks.BeginRevokeAccess(ctx, "rg-disks", "data1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.PollUntilDone(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if resp, err := env.HTTP.Head(*grant.AccessSAS); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("HEAD after revoke: %v %v", resp, err)
	}

	// Snapshot grant through the SDK's snapshot poller.
	sgp, err := snaps.BeginGrantAccess(ctx, "rg-snaps", "snap1", armcompute.GrantAccessData{Access: to.Ptr(armcompute.AccessLevelRead), DurationInSeconds: to.Ptr[int32](60)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sgrant, err := sgp.PollUntilDone(ctx, nil)
	if err != nil || sgrant.AccessSAS == nil {
		t.Fatalf("snapshot grant: %v %+v", err, sgrant)
	}
	srp, err := snaps.BeginRevokeAccess(ctx, "rg-snaps", "snap1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srp.PollUntilDone(ctx, nil); err != nil {
		t.Fatal(err)
	}

	// Delete everything; a deleted disk is 404 ResourceNotFound.
	for _, name := range []string{"data1", "data2", "from-snap"} {
		dp, err := disks.BeginDelete(ctx, "rg-disks", name, nil)
		if err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
		if _, err := dp.PollUntilDone(ctx, nil); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
	}
	dsp, err := snaps.BeginDelete(ctx, "rg-snaps", "snap1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dsp.PollUntilDone(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := disks.Get(ctx, "rg-disks", "data1", nil); err == nil {
		t.Fatal("deleted disk still there")
	} else if st, code := responseCode(t, err); st != http.StatusNotFound || code != "ResourceNotFound" {
		t.Fatalf("get deleted: %d %s", st, code)
	}
	if got := listNames(""); len(got) != 0 {
		t.Fatalf("disks left: %v", got)
	}
}
