package compute_test

import (
	"context"
	"testing"

	"coffer/internal/compute"
	"coffer/internal/resource"
)

// SnapshotProgress reports nothing running for a snapshot that is only
// recorded (Creating, the engine not started) and for one committed, and
// not found for a snapshot that does not exist. (The engine's figures
// while it runs: blockdev's TestSnapshotProgress.)
func TestSnapshotProgressStates(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	disk := f.emptyDisk(t, "rg", "d")
	id := compute.SnapshotID(f.sub, "rg", "s")
	if _, err := f.svc.SnapshotProgress(ctx, id); !resource.IsNotFound(err) {
		t.Fatalf("progress of a snapshot that does not exist: %v, want not found", err)
	}
	sn, created, finish, err := f.svc.StartSnapshot(ctx, f.admin, id, compute.SnapshotInput{Location: "local", Incremental: true,
		CreationData: compute.CreationData{CreateOption: compute.OptionCopy, SourceResourceID: disk.String()}})
	if err != nil || !created || finish == nil || sn.ProvisioningState != compute.StateCreating {
		t.Fatalf("start: %+v %v %v", sn, created, err)
	}
	if p, err := f.svc.SnapshotProgress(ctx, id); err != nil || p.Running {
		t.Fatalf("progress before the engine starts: %+v, %v", p, err)
	}
	if sn, err = finish(ctx); err != nil || sn.ProvisioningState != compute.StateSucceeded {
		t.Fatalf("finish: %+v, %v", sn, err)
	}
	if p, err := f.svc.SnapshotProgress(ctx, id); err != nil || p.Running {
		t.Fatalf("progress once committed: %+v, %v", p, err)
	}
}
