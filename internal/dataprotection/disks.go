package dataprotection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"coffer/internal/authorization"
	"coffer/internal/identity"
	"coffer/internal/resource"
)

// DiskInfo is what backup needs to know about a managed disk.
type DiskInfo struct {
	ID        string
	Name      string
	Location  string
	SKU       string
	SizeBytes int64
	// Unsupported, when set, says why the disk cannot be backed up (for
	// example Azure Disk Encryption); Azure answers
	// UserErrorDiskBackupDiskTypeNotSupported.
	Unsupported string
	// Failed: the disk's creation failed (provisioningState Failed, as
	// when its node stopped while it was made); creating it again
	// replaces it.
	Failed bool
	// Provisioning: the disk's creation has not ended (provisioningState
	// Updating), as when the node making it stopped and has not started
	// again; it is neither readable nor Failed yet.
	Provisioning bool
}

// SnapshotInfo is what backup needs to know about a snapshot.
type SnapshotInfo struct {
	ID          string
	Location    string
	SourceDisk  string
	SizeBytes   int64
	Incremental bool
	TimeCreated time.Time
	// DiskSKU is the SKU of the source disk when the snapshot was taken.
	DiskSKU string
}

// SnapshotProgress is how far a snapshot being taken has got: Done of
// Total units of work (the blocks it reads).
type SnapshotProgress struct {
	Running     bool
	Done, Total int64
}

// ErrNotFound is wrapped by Disks implementations for a disk or snapshot
// that does not exist.
var ErrNotFound = errors.New("not found")

// Disks is what Microsoft.DataProtection needs from Microsoft.Compute.
// The reads are the resources themselves (validation looks at them as they
// are). For the writes, as is the vault's identity the work is done for:
// its own action on the resource was decided by this package (see actor),
// once; the implementation checks only what the action reads from, as
// Compute does for any caller (beginGetAccess on the disk a snapshot is
// taken of, and on the snapshot a disk is restored from: Azure's linked
// access check), through the same decision point. A refusal wraps an
// *authorization.DeniedError that names the action missing.
type Disks interface {
	GetDisk(ctx context.Context, diskID resource.ID) (DiskInfo, error)
	GetSnapshot(ctx context.Context, snapshotID resource.ID) (SnapshotInfo, error)
	// CreateSnapshot takes an incremental snapshot of diskID as the
	// Microsoft.Compute/snapshots resource snapshotID (in the disk's
	// subscription and location). It returns once the snapshot is
	// committed.
	CreateSnapshot(ctx context.Context, as identity.Principal, snapshotID, diskID resource.ID) (SnapshotInfo, error)
	// SnapshotProgress reports how far the snapshot snapshotID, which
	// CreateSnapshot is taking, has got. It is for the job's progress
	// only: an error or Running false means nothing is known now.
	SnapshotProgress(ctx context.Context, snapshotID resource.ID) (SnapshotProgress, error)
	DeleteSnapshot(ctx context.Context, as identity.Principal, snapshotID resource.ID) error
	// CreateDiskFromSnapshot creates the disk diskID from snapshotID; the
	// disk is readable when it returns.
	CreateDiskFromSnapshot(ctx context.Context, as identity.Principal, diskID, snapshotID resource.ID, location, sku string) (DiskInfo, error)
	// DeleteDisk deletes a disk that a restore made, when the restore is
	// cancelled: the service cleans up its own work, as it deletes a
	// failed snapshot, with no principal's request behind it.
	DeleteDisk(ctx context.Context, diskID resource.ID) error
	// VerifySnapshot reads back every chunk snapshotID references and
	// checks it against its content ID; damaged chunks are in the
	// result's Problems, an error means the check could not run
	// (ErrNotFound: no such snapshot).
	VerifySnapshot(ctx context.Context, snapshotID resource.ID) (SnapshotCheck, error)
}

// SnapshotCheck is the outcome of VerifySnapshot.
type SnapshotCheck struct {
	Chunks   int64    // distinct chunks read back
	Problems []string // one line per damaged chunk
}

// The Microsoft.Compute actions the vault identity performs.
const (
	ActionDiskRead               = "Microsoft.Compute/disks/read"
	ActionDiskWrite              = "Microsoft.Compute/disks/write"
	ActionDiskBeginGetAccess     = "Microsoft.Compute/disks/beginGetAccess/action"
	ActionSnapshotRead           = "Microsoft.Compute/snapshots/read"
	ActionSnapshotWrite          = "Microsoft.Compute/snapshots/write"
	ActionSnapshotDelete         = "Microsoft.Compute/snapshots/delete"
	ActionSnapshotBeginGetAccess = "Microsoft.Compute/snapshots/beginGetAccess/action"
	ActionGroupRead              = "Microsoft.Resources/subscriptions/resourceGroups/read"
)

// deniedAction returns the action a refusal of the decision point says is
// missing, and whether err is such a refusal.
func deniedAction(err error) (string, bool) {
	d, ok := authorization.Denial(err)
	return d.MissingAction, ok
}

// actor does Compute work as a vault's managed identity. It decides each
// call's own action through the decision point exactly once, as the route
// table decides a request's, before calling Disks (which checks only what
// the call reads from).
type actor struct {
	s  *Service
	as identity.Principal
}

func (a actor) allow(ctx context.Context, action string, scope resource.ID) error {
	d, err := a.s.Authz.Decide(ctx, a.as, action, scope.String())
	if err != nil {
		return fmt.Errorf("authorize %s: %w", action, err)
	}
	if !d.Allowed {
		return authorization.Forbidden(a.as, d)
	}
	return nil
}

func (a actor) getDisk(ctx context.Context, id resource.ID) (DiskInfo, error) {
	if err := a.allow(ctx, ActionDiskRead, id); err != nil {
		return DiskInfo{}, err
	}
	return a.s.Disks.GetDisk(ctx, id)
}

func (a actor) getSnapshot(ctx context.Context, id resource.ID) (SnapshotInfo, error) {
	if err := a.allow(ctx, ActionSnapshotRead, id); err != nil {
		return SnapshotInfo{}, err
	}
	return a.s.Disks.GetSnapshot(ctx, id)
}

// createSnapshot takes the snapshot: snapshots/write here, beginGetAccess
// on the disk by Disks (linked).
func (a actor) createSnapshot(ctx context.Context, snap, disk resource.ID) (SnapshotInfo, error) {
	if err := a.allow(ctx, ActionSnapshotWrite, snap); err != nil {
		return SnapshotInfo{}, err
	}
	return a.s.Disks.CreateSnapshot(ctx, a.as, snap, disk)
}

func (a actor) deleteSnapshot(ctx context.Context, snap resource.ID) error {
	if err := a.allow(ctx, ActionSnapshotDelete, snap); err != nil {
		return err
	}
	return a.s.Disks.DeleteSnapshot(ctx, a.as, snap)
}

// restoreDisk makes the new disk: disks/write here, beginGetAccess on the
// snapshot by Disks (linked).
func (a actor) restoreDisk(ctx context.Context, disk, snap resource.ID, location, sku string) (DiskInfo, error) {
	if err := a.allow(ctx, ActionDiskWrite, disk); err != nil {
		return DiskInfo{}, err
	}
	return a.s.Disks.CreateDiskFromSnapshot(ctx, a.as, disk, snap, location, sku)
}
