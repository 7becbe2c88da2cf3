package compute_test

import (
	"bytes"
	"context"
	"testing"

	"coffer/internal/compute"
	"coffer/internal/resource"
	"coffer/internal/store"
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

// TestFailCreation: a disk still Updating and a snapshot still Creating
// whose operation failed for good become Failed with its error, in the
// caller's transaction; a resource that has ended is left as it is (not
// even rewritten), and one that is gone is no error.
func TestFailCreation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sd := f.writtenDisk(t, "rg", "src", []byte("data"), 0)
	src := resource.MustParse(sd.ID)
	snap := compute.SnapshotID(f.sub, "rg", "snap")
	if _, _, _, err := f.svc.StartSnapshot(ctx, f.admin, snap, compute.SnapshotInput{Location: "local", Incremental: true,
		CreationData: compute.CreationData{CreateOption: compute.OptionCopy, SourceResourceID: src.String()}}); err != nil {
		t.Fatal(err)
	}
	cp := compute.DiskID(f.sub, "rg", "copy")
	if _, _, _, err := f.svc.StartDisk(ctx, f.admin, cp, compute.DiskInput{Location: "local",
		CreationData: compute.CreationData{CreateOption: compute.OptionCopy, SourceResourceID: src.String()}}); err != nil {
		t.Fatal(err)
	}
	why := resource.Errorf(resource.KindInternal, "OperationInterrupted", "interrupted")
	fail := func(typ string, id resource.ID) {
		t.Helper()
		if err := f.st.Update(ctx, func(tx store.Tx) error { return f.svc.FailCreationTx(ctx, tx, typ, id, why) }); err != nil {
			t.Fatal(err)
		}
	}
	fail(compute.TypeSnapshots, snap)
	fail(compute.TypeDisks, cp)
	sn, err := f.svc.GetSnapshot(ctx, snap)
	if err != nil || sn.ProvisioningState != compute.StateFailed || sn.FailedError == nil || sn.FailedError.Code != "OperationInterrupted" {
		t.Fatalf("snapshot: %+v %v", sn, err)
	}
	d, err := f.svc.GetDisk(ctx, cp)
	if err != nil || d.ProvisioningState != compute.StateFailed || d.FailedError == nil || d.FailedError.Code != "OperationInterrupted" {
		t.Fatalf("disk: %+v %v", d, err)
	}

	fail(compute.TypeDisks, src)
	if got, err := f.svc.GetDisk(ctx, src); err != nil || got.ProvisioningState != compute.StateSucceeded || got.ETag != sd.ETag {
		t.Fatalf("a disk that had ended: %+v %v (etag %d before)", got, err, sd.ETag)
	}
	fail(compute.TypeDisks, compute.DiskID(f.sub, "rg", "gone"))
}
