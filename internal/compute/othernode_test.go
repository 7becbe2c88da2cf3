package compute_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"coffer/internal/blobstore/mem"
	"coffer/internal/blockdev"
	"coffer/internal/chunkstore"
	"coffer/internal/cluster"
	"coffer/internal/compute"
	"coffer/internal/store"
)

// asNode makes svc record the homes of the disks it creates as node's and
// tell, as a server in a cluster does, the volumes other nodes hold.
func asNode(svc *compute.Service, node string) {
	svc.Home = func(ctx context.Context, tx store.Tx, diskID, uniqueID string) error {
		return cluster.SetHome(ctx, tx, diskID, uniqueID, node)
	}
	svc.VolumeElsewhere = func(ctx context.Context, tx store.Tx, uniqueID string) (bool, error) {
		home, err := cluster.VolumeHome(ctx, tx, uniqueID)
		return home != "" && !strings.EqualFold(home, node), err
	}
}

// otherNode returns the compute service of another node, name, sharing
// f's store, tenant and grant key, with volumes of its own.
func (f *fixture) otherNode(t testing.TB, name string) *compute.Service {
	t.Helper()
	blobs := mem.New()
	chunks, err := chunkstore.New(blobs, chunkstore.NewMemIndex(), chunkstore.Options{Clock: f.clk})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := blockdev.Open(context.Background(), t.TempDir(), chunks, blobs, blockdev.Options{Clock: f.clk, Catalogue: f.st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	svc := &compute.Service{Store: f.st, Tenant: f.svc.Tenant, Engine: eng, Clock: f.clk, GrantKey: f.svc.GrantKey}
	asNode(svc, name)
	t.Cleanup(svc.Close)
	return svc
}

// TestRecoverLeavesOtherNodesCreations: node B starting (Recover) while
// node A, sharing the store, is making a disk and a snapshot — a restore's
// disk, a backup's snapshot — leaves them to A: they end Succeeded when
// A finishes them. B used to find them Updating/Creating with no volume
// or snapshot in its own engine and mark them Failed "interrupted", so a
// restore job could complete on A with its disk Failed (TestRollingRestart
// saw it once).
func TestRecoverLeavesOtherNodesCreations(t *testing.T) {
	a := newFixture(t)
	asNode(a.svc, "a")
	ctx := context.Background()
	data := bytes.Repeat([]byte("node a "), 10000)
	src := a.writtenDisk(t, "rg", "src", data, 0)
	srcID := compute.DiskID(a.sub, "rg", "src")

	diskID := compute.DiskID(a.sub, "rg", "copy")
	d, _, finishDisk, err := a.svc.StartDisk(ctx, a.admin, diskID, compute.DiskInput{Location: "local",
		CreationData: compute.CreationData{CreateOption: compute.OptionCopy, SourceResourceID: src.ID}})
	if err != nil || finishDisk == nil || d.ProvisioningState != compute.StateUpdating {
		t.Fatalf("start the copy: %s, %v", d.ProvisioningState, err)
	}
	snapID := compute.SnapshotID(a.sub, "rg", "snap")
	sn, _, finishSnap, err := a.svc.StartSnapshot(ctx, a.admin, snapID, compute.SnapshotInput{Location: "local", Incremental: true,
		CreationData: compute.CreationData{CreateOption: compute.OptionCopy, SourceResourceID: srcID.String()}})
	if err != nil || finishSnap == nil || sn.ProvisioningState != compute.StateCreating {
		t.Fatalf("start the snapshot: %s, %v", sn.ProvisioningState, err)
	}

	b := a.otherNode(t, "b")
	if err := b.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := b.GetDisk(ctx, diskID); err != nil || d.ProvisioningState != compute.StateUpdating {
		t.Fatalf("the disk A is making, after B's Recover: %s, %v; want %s", d.ProvisioningState, err, compute.StateUpdating)
	}
	if sn, err := b.GetSnapshot(ctx, snapID); err != nil || sn.ProvisioningState != compute.StateCreating {
		t.Fatalf("the snapshot A is taking, after B's Recover: %s, %v; want %s", sn.ProvisioningState, err, compute.StateCreating)
	}

	if d, err = finishDisk(ctx); err != nil || d.ProvisioningState != compute.StateSucceeded {
		t.Fatalf("A finishes the disk: %s, %v; want %s", d.ProvisioningState, err, compute.StateSucceeded)
	}
	vol, err := a.svc.Engine.OpenVolume(ctx, d.UniqueID)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := vol.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the copy does not read as its source (%v)", err)
	}
	if sn, err := finishSnap(ctx); err != nil || sn.ProvisioningState != compute.StateSucceeded {
		t.Fatalf("A finishes the snapshot: %s, %v; want %s", sn.ProvisioningState, err, compute.StateSucceeded)
	}
}
