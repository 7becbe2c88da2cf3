package dataprotection

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// ErrNotFound is wrapped by Disks implementations for a disk or snapshot
// that does not exist.
var ErrNotFound = errors.New("not found")

// Disks is what Microsoft.DataProtection needs from Microsoft.Compute.
// Implementations do not authorize: the vault identity's permissions are
// checked by this package (see actor) through the normal authorization
// path before every call. as is the principal the work is done for
// (recorded as the creator of what it makes).
type Disks interface {
	GetDisk(ctx context.Context, diskID resource.ID) (DiskInfo, error)
	GetSnapshot(ctx context.Context, snapshotID resource.ID) (SnapshotInfo, error)
	// CreateSnapshot takes an incremental snapshot of diskID as the
	// Microsoft.Compute/snapshots resource snapshotID (in the disk's
	// subscription and location). It returns once the snapshot is
	// committed.
	CreateSnapshot(ctx context.Context, as identity.Principal, snapshotID, diskID resource.ID) (SnapshotInfo, error)
	DeleteSnapshot(ctx context.Context, as identity.Principal, snapshotID resource.ID) error
	// CreateDiskFromSnapshot creates the disk diskID from snapshotID; the
	// disk is readable when it returns.
	CreateDiskFromSnapshot(ctx context.Context, as identity.Principal, diskID, snapshotID resource.ID, location, sku string) (DiskInfo, error)
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

// DeniedError says the vault identity may not perform Action at Scope.
// Disks implementations return it for an authorization failure.
type DeniedError struct {
	Action, Scope string
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("the vault identity may not perform %s at %s", e.Action, e.Scope)
}

// actor does Compute work as a vault's managed identity, checking each
// action with the Authorizer first, exactly as a request by that identity
// would be checked.
type actor struct {
	s  *Service
	as identity.Principal
}

func (a actor) allow(ctx context.Context, action string, scope resource.ID) error {
	ok, err := a.s.Authz.Allowed(ctx, a.as, action, scope.String())
	if err != nil {
		return fmt.Errorf("authorize %s: %w", action, err)
	}
	if !ok {
		return &DeniedError{Action: action, Scope: scope.String()}
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

func (a actor) createSnapshot(ctx context.Context, snap, disk resource.ID) (SnapshotInfo, error) {
	if err := a.allow(ctx, ActionDiskBeginGetAccess, disk); err != nil {
		return SnapshotInfo{}, err
	}
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

func (a actor) restoreDisk(ctx context.Context, disk, snap resource.ID, location, sku string) (DiskInfo, error) {
	if err := a.allow(ctx, ActionSnapshotBeginGetAccess, snap); err != nil {
		return DiskInfo{}, err
	}
	if err := a.allow(ctx, ActionDiskWrite, disk); err != nil {
		return DiskInfo{}, err
	}
	return a.s.Disks.CreateDiskFromSnapshot(ctx, a.as, disk, snap, location, sku)
}
