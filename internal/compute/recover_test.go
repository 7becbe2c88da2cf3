package compute_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"coffer/internal/compute"
	"coffer/internal/resource"
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
	data := bytes.Repeat([]byte("restored "), 20000)
	src := resource.MustParse(f.writtenDisk(t, "rg", "src", data, 1<<20).ID)
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
	if d, err := f.svc.GetDisk(ctx, target); err != nil || d.ProvisioningState != compute.StateFailed {
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

// dyingStore is a store whose updates fail from the dieAt-th on, as if
// the process had stopped there: nothing more is written.
type dyingStore struct {
	store.Store
	updates int
	dieAt   int // the update that does not happen (1-based); 0: never
}

var errStopped = errors.New("the process stopped")

func (d *dyingStore) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	d.updates++
	if d.dieAt > 0 && d.updates >= d.dieAt {
		return errStopped
	}
	return d.Store.Update(ctx, fn)
}

// TestDeleteInterruptedByStop: a stop after a disk's or a snapshot's data
// was deleted and before its record was leaves it Deleting, and the next
// start finishes the deletion: never a Succeeded disk or snapshot whose
// data is gone.
func TestDeleteInterruptedByStop(t *testing.T) {
	for _, kind := range []string{"disk", "snapshot"} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			disk := f.emptyDisk(t, "rg", "d")
			snap := compute.SnapshotID(f.sub, "rg", "s")
			if _, err := f.svc.SnapshotDisk(ctx, f.admin, snap, disk, "local", true, nil); err != nil {
				t.Fatal(err)
			}
			dying := &dyingStore{Store: f.st}
			f.svc.Store = dying
			for dying.dieAt = 1; ; dying.dieAt++ {
				dying.updates = 0
				var err error
				if kind == "disk" {
					_, err = f.svc.DeleteDisk(ctx, disk)
				} else {
					_, err = f.svc.DeleteSnapshot(ctx, snap)
				}
				if !errors.Is(err, errStopped) {
					if err != nil {
						t.Fatal(err)
					}
					break // every update happened: the deletion is done
				}
				// The next start, on what the stop left.
				f.svc.Store = f.st
				if err := f.svc.Recover(ctx); err != nil {
					t.Fatal(err)
				}
				if kind == "disk" {
					d, err := f.svc.GetDisk(ctx, disk)
					if err == nil {
						if _, verr := f.svc.Engine.OpenVolume(ctx, d.UniqueID); verr != nil {
							t.Fatalf("stopped at update %d: disk %s is listed (%s) but its volume is gone: %v", dying.dieAt, d.Name, d.ProvisioningState, verr)
						}
					}
				} else {
					sn, err := f.svc.GetSnapshot(ctx, snap)
					if err == nil {
						if _, serr := f.svc.Engine.StatSnapshot(ctx, sn.UniqueID); serr != nil {
							t.Fatalf("stopped at update %d: snapshot %s is listed (%s) but its data is gone: %v", dying.dieAt, sn.Name, sn.ProvisioningState, serr)
						}
					}
				}
				f.svc.Store = dying
			}
		})
	}
}
