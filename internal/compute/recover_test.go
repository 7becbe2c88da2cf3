package compute_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"coffer/internal/compute"
	"coffer/internal/store"
)

// TestPutOnDiskLeftFailedByStop: a server stop between writing a disk's
// record and making its volume (a restore from a snapshot, interrupted)
// leaves the disk Failed once Recover runs. The same PUT again — what the
// interrupted restore does when it is delivered again — provisions the
// disk: it succeeds and reads as the snapshot, instead of answering with
// the Failed disk as if it were made.
func TestPutOnDiskLeftFailedByStop(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	src := f.emptyDisk(t, "rg", "src")
	sd, err := f.svc.GetDisk(ctx, f.admin, src)
	if err != nil {
		t.Fatal(err)
	}
	vol, err := f.svc.Engine.OpenVolume(ctx, sd.UniqueID)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("restored "), 20000)
	if _, err := vol.WriteAt(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	snap := compute.SnapshotID(f.sub, "rg", "snap")
	if _, err := f.svc.SnapshotDisk(ctx, f.admin, snap, src, "local", true, nil); err != nil {
		t.Fatal(err)
	}
	target := compute.DiskID(f.sub, "rg", "restored")
	d, err := f.svc.CreateDiskFromSnapshot(ctx, f.admin, target, snap, "local", "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}

	// What a stop leaves: the record written (Updating), no volume yet.
	if err := f.svc.Engine.DeleteVolume(ctx, d.UniqueID); err != nil {
		t.Fatal(err)
	}
	err = f.st.Update(ctx, func(tx store.Tx) error {
		o, err := tx.Get(ctx, compute.KindDisk, target.Key())
		if err != nil {
			return err
		}
		var rec map[string]any
		if err := json.Unmarshal(o.Data, &rec); err != nil {
			return err
		}
		rec["provisioningState"] = compute.StateUpdating
		o.Data, _ = json.Marshal(rec)
		return tx.Put(ctx, &o, store.PutOptions{})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := f.svc.GetDisk(ctx, f.admin, target); err != nil || d.ProvisioningState != compute.StateFailed {
		t.Fatalf("after Recover: %s, %v; want %s", d.ProvisioningState, err, compute.StateFailed)
	}

	d, err = f.svc.CreateDiskFromSnapshot(ctx, f.admin, target, snap, "local", "", 0, nil)
	if err != nil || d.ProvisioningState != compute.StateSucceeded {
		t.Fatalf("PUT again on the Failed disk: %s, %v; want %s", d.ProvisioningState, err, compute.StateSucceeded)
	}
	rv, err := f.svc.Engine.OpenVolume(ctx, d.UniqueID)
	if err != nil {
		t.Fatalf("the disk has no volume: %v", err)
	}
	got := make([]byte, len(data))
	if _, err := rv.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the disk does not read as its snapshot (%v)", err)
	}
}
