package compute_test

import (
	"context"
	"testing"
	"time"

	"coffer/internal/compute"
	"coffer/internal/store/storetest"
)

// The store may re-run an Update's function after a concurrent writer
// committed (PostgreSQL's serialization failures; the store contract).
// These tests make a writer commit between the two runs of one Update
// (storetest.RerunWith) and check that the second run decides afresh.

// A resize whose first run grew the volume, and whose second run is
// refused because a grant came meanwhile, leaves the volume as it was.
func TestResizeRerunAfterConcurrentGrant(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := f.emptyDisk(t, "rg", "d")
	d, err := f.svc.GetDisk(ctx, f.admin, id)
	if err != nil {
		t.Fatal(err)
	}
	good, armed := f.svc.Store, true
	f.svc.Store = storetest.RerunWith(good, func(ctx context.Context) {
		if armed {
			armed = false
			if _, err := f.svc.GrantAccess(ctx, f.admin, id, compute.GrantInput{Access: compute.AccessRead, Duration: time.Hour}); err != nil {
				t.Errorf("grant between the runs: %v", err)
			}
		}
	})
	if _, err := f.svc.UpdateDisk(ctx, f.admin, id, compute.DiskUpdate{DiskSizeGB: 2}); code(err) != "OperationNotAllowed" {
		t.Fatalf("resize of a disk granted meanwhile: %v, want OperationNotAllowed", err)
	}
	f.svc.Store = good
	after, err := f.svc.GetDisk(ctx, f.admin, id)
	if err != nil || after.DiskSizeBytes != compute.GiB {
		t.Fatalf("record after the refused resize: %+v, %v", after, err)
	}
	vol, err := f.svc.Engine.OpenVolume(ctx, d.UniqueID)
	if err != nil {
		t.Fatal(err)
	}
	if vol.Size() != compute.GiB {
		t.Fatalf("volume after the refused resize: %d bytes, want %d (the record's)", vol.Size(), compute.GiB)
	}
}

// A PUT whose first run created the disk, and whose second run finds the
// disk that another PUT created meanwhile, is an update of that disk: not
// a creation that provisions a second volume over it.
func TestPutDiskRerunFindsDiskCreatedMeanwhile(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := compute.DiskID(f.sub, "rg", "d")
	good, armed := f.svc.Store, true
	f.svc.Store = storetest.RerunWith(good, func(ctx context.Context) {
		if armed {
			armed = false
			f.emptyDisk(t, "rg", "d")
		}
	})
	d, created, finish, err := f.svc.StartDisk(ctx, f.admin, id, compute.DiskInput{Location: "local", DiskSizeGB: 1,
		Tags: map[string]string{"k": "v"}, CreationData: compute.CreationData{CreateOption: "Empty"}})
	if err != nil || created || finish != nil {
		t.Fatalf("PUT of a disk created meanwhile: created %v, %v", created, err)
	}
	f.svc.Store = good
	got, err := f.svc.GetDisk(ctx, f.admin, id)
	if err != nil || got.ProvisioningState != compute.StateSucceeded || got.UniqueID != d.UniqueID || got.Tags["k"] != "v" {
		t.Fatalf("disk after the PUT: %+v, %v", got, err)
	}
	if _, err := f.svc.Engine.OpenVolume(ctx, got.UniqueID); err != nil {
		t.Fatalf("the disk's volume: %v", err)
	}
}

// A snapshot PUT whose second run finds the snapshot another PUT took
// meanwhile updates it, and takes no second snapshot.
func TestPutSnapshotRerunFindsSnapshotCreatedMeanwhile(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	disk := f.emptyDisk(t, "rg", "d")
	id := compute.SnapshotID(f.sub, "rg", "s")
	in := compute.SnapshotInput{Location: "local", Incremental: true,
		CreationData: compute.CreationData{CreateOption: compute.OptionCopy, SourceResourceID: disk.String()}}
	good, armed := f.svc.Store, true
	f.svc.Store = storetest.RerunWith(good, func(ctx context.Context) {
		if armed {
			armed = false
			if _, err := f.svc.CreateSnapshot(ctx, f.admin, id, in); err != nil {
				t.Errorf("snapshot between the runs: %v", err)
			}
		}
	})
	in.Tags = map[string]string{"k": "v"}
	sn, created, finish, err := f.svc.StartSnapshot(ctx, f.admin, id, in)
	if err != nil || created || finish != nil {
		t.Fatalf("PUT of a snapshot taken meanwhile: created %v, %v", created, err)
	}
	f.svc.Store = good
	got, err := f.svc.GetSnapshot(ctx, f.admin, id)
	if err != nil || got.ProvisioningState != compute.StateSucceeded || got.UniqueID != sn.UniqueID || got.Tags["k"] != "v" {
		t.Fatalf("snapshot after the PUT: %+v, %v", got, err)
	}
}
