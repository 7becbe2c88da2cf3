package compute_test

import (
	"bytes"
	"context"
	"testing"

	"coffer/internal/compute"
	"coffer/internal/resource"
)

// TestFinishRunsAgain: the durable operations that create a snapshot and
// copy a disk may run their finishing step again (a node died mid-way, or
// a paused node came back): FinishSnapshot and FinishDisk run twice end as
// once, and a run after an interruption that had committed the block-engine
// snapshot (the snapshot's, or the copy's temporary one) uses it instead of
// failing on it.
func TestFinishRunsAgain(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("copied "), 30000)
	sd := f.writtenDisk(t, "rg", "src", data, 4<<20)
	src := resource.MustParse(sd.ID)

	// A snapshot whose block-engine snapshot an interrupted run took.
	snap := compute.SnapshotID(f.sub, "rg", "snap")
	sn, created, finish, err := f.svc.StartSnapshot(ctx, f.admin, snap, compute.SnapshotInput{Location: "local", Incremental: true,
		CreationData: compute.CreationData{CreateOption: compute.OptionCopy, SourceResourceID: src.String()}})
	if err != nil || !created || finish == nil {
		t.Fatalf("start snapshot: %v %v", created, err)
	}
	if _, err := f.svc.Engine.Snapshot(ctx, sd.UniqueID, sn.UniqueID); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		got, err := f.svc.FinishSnapshot(ctx, snap)
		if err != nil || got.ProvisioningState != compute.StateSucceeded || got.DiskSizeBytes != sd.DiskSizeBytes {
			t.Fatalf("run %d of FinishSnapshot: %+v, %v", i+1, got, err)
		}
	}

	// A copy whose temporary snapshot an interrupted run took, but not
	// its volume.
	cp := compute.DiskID(f.sub, "rg", "copy")
	d, created, finishDisk, err := f.svc.StartDisk(ctx, f.admin, cp, compute.DiskInput{Location: "local",
		CreationData: compute.CreationData{CreateOption: compute.OptionCopy, SourceResourceID: src.String()}})
	if err != nil || !created || finishDisk == nil || d.ProvisioningState != compute.StateUpdating {
		t.Fatalf("start copy: %+v %v %v", d, created, err)
	}
	if _, err := f.svc.Engine.Snapshot(ctx, sd.UniqueID, d.TempSnapshot); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		got, err := f.svc.FinishDisk(ctx, cp)
		if err != nil || got.ProvisioningState != compute.StateSucceeded {
			t.Fatalf("run %d of FinishDisk: %+v, %v", i+1, got, err)
		}
	}
	cv, err := f.svc.Engine.OpenVolume(ctx, d.UniqueID)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := cv.ReadAt(got, 4<<20); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the copy does not read as its source (%v)", err)
	}
}
