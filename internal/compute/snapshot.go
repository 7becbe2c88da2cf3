package compute

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"coffer/internal/authorization"
	"coffer/internal/blockdev"
	"coffer/internal/identity"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// SnapshotInput is the body of a snapshot PUT.
type SnapshotInput struct {
	Location     string
	Tags         map[string]string
	SKU          string // empty: Standard_LRS
	CreationData CreationData
	Incremental  bool
	Options      Options
}

// SnapshotFinish completes a snapshot started by StartSnapshot.
type SnapshotFinish func(ctx context.Context) (Snapshot, error)

// CreateSnapshot takes a snapshot of a disk and waits for it. The caller
// has authorized Microsoft.Compute/snapshots/write on id for p; it checks
// Microsoft.Compute/disks/beginGetAccess/action on the source disk.
func (s *Service) CreateSnapshot(ctx context.Context, p identity.Principal, id resource.ID, in SnapshotInput) (Snapshot, error) {
	sn, _, finish, err := s.StartSnapshot(ctx, p, id, in)
	if err != nil || finish == nil {
		return sn, err
	}
	return finish(ctx)
}

// SnapshotDisk is CreateSnapshot with the usual arguments: an incremental
// (or full) snapshot id of disk in location.
func (s *Service) SnapshotDisk(ctx context.Context, p identity.Principal, id, disk resource.ID, location string, incremental bool, tags map[string]string) (Snapshot, error) {
	return s.CreateSnapshot(ctx, p, id, SnapshotInput{Location: location, Tags: tags, Incremental: incremental,
		CreationData: CreationData{CreateOption: OptionCopy, SourceResourceID: disk.String()}})
}

// StartSnapshot validates a snapshot PUT and writes the record in state
// Creating; finish takes the snapshot. A PUT to an existing snapshot
// updates its tags (finish is nil, created false).
func (s *Service) StartSnapshot(ctx context.Context, p identity.Principal, id resource.ID, in SnapshotInput) (sn Snapshot, created bool, finish SnapshotFinish, err error) {
	loc, sku, err := s.checkPut(id, TypeSnapshots, SnapshotSKUs, in.Location, in.SKU, in.Tags, in.CreationData)
	if err != nil {
		return sn, false, nil, err
	}
	if !strings.EqualFold(in.CreationData.CreateOption, OptionCopy) {
		return sn, false, nil, invalidParameter("creationData.createOption",
			"The value '%s' of parameter 'createOption' is not supported for snapshots. Coffer supports 'Copy' from a disk.", in.CreationData.CreateOption)
	}
	srcText := in.CreationData.SourceResourceID
	if srcText == "" {
		return sn, false, nil, invalidParameter("creationData.sourceResourceId", "Required parameter 'sourceResourceId' is missing (null).")
	}
	src, err := ParseID(TypeDisks, srcText)
	if err != nil {
		return sn, false, nil, invalidParameter("creationData.sourceResourceId",
			"The value '%s' of parameter 'sourceResourceId' is not a disk resource ID; Coffer takes snapshots of disks.", srcText)
	}
	// Azure's linked access check: a snapshot reads the disk's bytes, which
	// takes beginGetAccess on it (Disk Snapshot Contributor has it, and not
	// disks/read).
	if err := s.requireLinked(ctx, p, authorization.Need{Action: ActionSnapshotWrite, Scope: id.String()},
		authorization.Need{Action: ActionDiskGrant, Scope: src.String()}); err != nil {
		return sn, false, nil, err
	}
	now := s.now()
	var disk Disk
	err = s.Store.Update(ctx, func(tx store.Tx) error {
		created = false // a re-run (store contract) decides afresh
		if err := s.checkGroup(ctx, tx, id); err != nil {
			return err
		}
		old, gerr := s.getSnapshot(ctx, tx, id)
		if gerr == nil {
			sn, err = s.updateSnapshotFromPut(ctx, tx, p, old, loc, src, in)
			return err
		}
		if !resource.IsNotFound(gerr) {
			return gerr
		}
		created = true
		if disk, err = s.getDisk(ctx, tx, src); err != nil {
			return err
		}
		if disk.ProvisioningState != StateSucceeded || disk.Uploading {
			return notAllowed("The disk '%s' is in state '%s' (provisioning state '%s'); a snapshot can be taken once it is provisioned and its upload has ended.",
				disk.ID, disk.State(now), disk.ProvisioningState)
		}
		if in.Incremental {
			if !strings.EqualFold(src.Subscription, id.Subscription) {
				return resource.Errorf(resource.KindBadRequest, "BadRequest",
					"Incremental snapshots of a disk can only be created in the disk's subscription. The disk '%s' is in subscription '%s', the snapshot '%s' in subscription '%s'.",
					disk.ID, src.Subscription, id.Name(), id.Subscription).WithTarget("creationData.sourceResourceId")
			}
			n, err := s.countIncremental(ctx, tx, disk.UniqueID)
			if err != nil {
				return err
			}
			if n >= MaxIncrementalSnapshots {
				return resource.Errorf(resource.KindConflict, "OperationNotAllowed",
					"The limit of %d incremental snapshots for disk '%s' has been reached. Delete older incremental snapshots of the disk before creating new ones.",
					MaxIncrementalSnapshots, disk.ID)
			}
		}
		sn = Snapshot{ID: id.String(), Name: id.Name(), Location: loc, Tags: in.Tags, SKU: SKU{Name: sku, Tier: snapshotTier(sku)},
			Incremental: in.Incremental, UniqueID: identity.NewGUID(), TimeCreated: now, ProvisioningState: StateCreating,
			CreationData:  CreationData{CreateOption: OptionCopy, SourceResourceID: disk.ID, SourceUniqueID: disk.UniqueID},
			DiskSizeBytes: disk.DiskSizeBytes, DiskSizeGB: disk.DiskSizeGB, Options: defaultOptions(in.Options, sku)}
		if sn.Options.OSType == "" {
			sn.Options.OSType = disk.Options.OSType
		}
		if sn.Options.HyperVGeneration == "" {
			sn.Options.HyperVGeneration = disk.Options.HyperVGeneration
		}
		if in.Incremental {
			sn.FamilyID = disk.UniqueID
		}
		stamp(&sn.SystemData, p, now, true)
		return s.putSnapshot(ctx, tx, &sn)
	})
	if err != nil || !created {
		return sn, created, nil, err
	}
	finish = func(ctx context.Context) (Snapshot, error) { return s.FinishSnapshot(ctx, id) }
	return sn, true, finish, nil
}

// FinishSnapshot takes, from the snapshot's record, the snapshot
// StartSnapshot recorded as Creating; it is what StartSnapshot's finish and
// the snapshots/create operation run, on the source disk's home node. It is
// idempotent: a snapshot no longer Creating is answered as it is (a Failed
// one with its error), and one whose block-engine snapshot a previous run
// committed is recorded as taken, not taken again.
func (s *Service) FinishSnapshot(ctx context.Context, id resource.ID) (Snapshot, error) {
	sn, err := s.GetSnapshot(ctx, id)
	if err != nil {
		return sn, err
	}
	if ended, err := settled(sn.ProvisioningState, StateCreating, sn.FailedError, "Taking the snapshot '"+sn.Name+"'"); ended {
		return sn, err
	}
	if si, err := s.Engine.StatSnapshot(ctx, sn.UniqueID); err == nil {
		return s.tookSnapshot(ctx, id, sn.UniqueID, si)
	}
	return s.takeSnapshot(ctx, id, sn.CreationData.SourceUniqueID, sn.UniqueID)
}

func snapshotTier(sku string) string {
	if strings.HasPrefix(sku, "Premium") {
		return "Premium"
	}
	return "Standard"
}

func (s *Service) countIncremental(ctx context.Context, tx store.Tx, family string) (int, error) {
	all, err := s.listSnapshots(ctx, tx, "")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sn := range all {
		if sn.Incremental && sn.FamilyID == family && sn.ProvisioningState != StateFailed {
			n++
		}
	}
	return n, nil
}

func (s *Service) updateSnapshotFromPut(ctx context.Context, tx store.Tx, p identity.Principal, old Snapshot, loc string, src resource.ID, in SnapshotInput) (Snapshot, error) {
	if err := checkSameLocation(old.Name, old.ID, old.Location, loc); err != nil {
		return old, err
	}
	oldSrc, _ := resource.Parse(old.CreationData.SourceResourceID)
	if !oldSrc.Equal(src) {
		return old, resource.Errorf(resource.KindConflict, "PropertyChangeNotAllowed", "Changing property 'creationData.sourceResourceId' is not allowed.").WithTarget("creationData.sourceResourceId")
	}
	if old.Incremental != in.Incremental {
		return old, resource.Errorf(resource.KindConflict, "PropertyChangeNotAllowed", "Changing property 'incremental' is not allowed.").WithTarget("incremental")
	}
	return s.applySnapshotUpdate(ctx, tx, p, old, in.Tags)
}

func (s *Service) applySnapshotUpdate(ctx context.Context, tx store.Tx, p identity.Principal, sn Snapshot, tags map[string]string) (Snapshot, error) {
	if tags == nil {
		tags = map[string]string{}
	}
	if err := resource.CheckTags(tags); err != nil {
		return sn, err
	}
	sn.Tags = tags
	stamp(&sn.SystemData, p, s.now(), false)
	return sn, s.putSnapshot(ctx, tx, &sn)
}

// UpdateSnapshot applies a PATCH (tags) by p.
func (s *Service) UpdateSnapshot(ctx context.Context, p identity.Principal, id resource.ID, tags map[string]string) (Snapshot, error) {
	return recordTx(ctx, s, s.Store.Update, KindSnapshot, id, func(tx store.Tx, sn *Snapshot) error {
		if tags == nil {
			tags = sn.Tags
		}
		var err error
		*sn, err = s.applySnapshotUpdate(ctx, tx, p, *sn, tags)
		return err
	})
}

// SnapshotProgress reports how far the snapshot id has got while the block
// engine takes it (blocks read of those it takes); Running is false once
// it is committed or failed, and while another node takes it.
func (s *Service) SnapshotProgress(ctx context.Context, id resource.ID) (blockdev.SnapshotProgress, error) {
	sn, err := s.GetSnapshot(ctx, id)
	if err != nil {
		return blockdev.SnapshotProgress{}, err
	}
	if sn.ProvisioningState != StateCreating {
		return blockdev.SnapshotProgress{}, nil
	}
	return s.Engine.SnapshotProgress(sn.CreationData.SourceUniqueID, sn.UniqueID), nil
}

// takeSnapshot runs the block-engine snapshot and records its outcome.
func (s *Service) takeSnapshot(ctx context.Context, id resource.ID, volume, snapID string) (Snapshot, error) {
	si, err := s.Engine.Snapshot(ctx, volume, snapID)
	if err != nil {
		e := resource.AsError(err)
		if e == nil {
			s.logger().Error("snapshot failed", "snapshot", id.String(), "err", err)
			e = resource.Errorf(resource.KindInternal, "InternalExecutionError", "Taking the snapshot failed: %v", err)
		}
		sn, uerr := s.endSnapshot(context.WithoutCancel(ctx), id, snapID, func(x *Snapshot) {
			x.ProvisioningState, x.FailedError = StateFailed, e
		})
		if uerr != nil && resource.AsError(uerr) == nil {
			s.logger().Error("record failed snapshot", "snapshot", id.String(), "err", uerr)
		}
		if uerr != nil && !resource.IsNotFound(uerr) {
			return sn, uerr
		}
		return sn, e
	}
	return s.tookSnapshot(ctx, id, snapID, si)
}

// endSnapshot is endCreation for the snapshot id whose unique ID is
// snapID: a snapshot no longer Creating with that ID is answered as it
// stands, with the error of a Failed one.
func (s *Service) endSnapshot(ctx context.Context, id resource.ID, snapID string, end func(*Snapshot)) (Snapshot, error) {
	sn, err := endCreation(ctx, s, KindSnapshot, id, func(x *Snapshot) bool {
		if x.ProvisioningState != StateCreating || x.UniqueID != snapID {
			return false
		}
		end(x)
		return true
	})
	if err != nil {
		return sn, err
	}
	if sn.UniqueID != snapID {
		return sn, resource.NotFound(id) // the one being made was deleted (and made anew)
	}
	_, err = settled(sn.ProvisioningState, StateCreating, sn.FailedError, "Taking the snapshot '"+sn.Name+"'")
	return sn, err
}

// tookSnapshot records that the block-engine snapshot snapID of id is
// committed.
func (s *Service) tookSnapshot(ctx context.Context, id resource.ID, snapID string, si blockdev.SnapshotInfo) (Snapshot, error) {
	sn, err := s.endSnapshot(context.WithoutCancel(ctx), id, snapID, func(x *Snapshot) {
		x.ProvisioningState = StateSucceeded
		x.DiskSizeBytes, x.DiskSizeGB = si.Size, sizeGB(si.Size)
		x.ChangedBytes = si.Stats.BlocksStored * si.BlockSize
	})
	if resource.IsNotFound(err) {
		// Deleted while it was being taken (a group deletion): drop the data.
		if derr := s.Engine.DeleteSnapshot(context.WithoutCancel(ctx), snapID); derr != nil && !errors.Is(derr, blockdev.ErrNotFound) {
			s.logger().Warn("delete orphan snapshot", "snapshot", snapID, "err", derr)
		}
		return sn, resource.NotFound(id)
	}
	return sn, err
}

// DeleteSnapshot deletes a snapshot and its block-engine snapshot. Disks
// restored from it are unaffected. A snapshot with an active access grant
// or still being created is refused. As with a disk, the record is
// Deleting while the data goes (Recover finishes a deletion a stop
// interrupted). It reports whether it existed.
func (s *Service) DeleteSnapshot(ctx context.Context, id resource.ID) (bool, error) {
	sn, err := recordTx(ctx, s, s.Store.Update, KindSnapshot, id, func(tx store.Tx, sn *Snapshot) error {
		if sn.ProvisioningState == StateCreating {
			return notAllowed("Snapshot '%s' is being created and cannot be deleted until it completes.", sn.Name)
		}
		if sn.State(s.now()) == DiskActiveSAS {
			return notAllowed("Snapshot '%s' cannot be deleted while it is in state 'ActiveSAS': it is exported through an access grant. End the access (endGetAccess) first.", sn.Name)
		}
		sn.ProvisioningState = StateDeleting
		return s.putSnapshot(ctx, tx, sn)
	})
	if resource.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, s.destroySnapshot(ctx, sn)
}

func (s *Service) destroySnapshot(ctx context.Context, sn Snapshot) error {
	s.forgetGrants(sn.Grants)
	if err := s.Engine.DeleteSnapshot(ctx, sn.UniqueID); err != nil && !errors.Is(err, blockdev.ErrNotFound) {
		return fmt.Errorf("delete snapshot %s: %w", sn.ID, err)
	}
	return s.deleteRecord(ctx, KindSnapshot, "snapshot", sn.ID, sn.Grants)
}

// VerifySnapshot reads back every chunk the snapshot id references and
// checks it against its content ID (blockdev's VerifySnapshot). The
// result lists damaged chunks; its error wraps blockdev.ErrCorrupt then.
// A snapshot that is not Succeeded is a not-found error.
func (s *Service) VerifySnapshot(ctx context.Context, id resource.ID) (blockdev.VerifyResult, error) {
	sn, err := s.GetSnapshot(ctx, id)
	if err != nil {
		return blockdev.VerifyResult{}, err
	}
	if sn.ProvisioningState != StateSucceeded {
		return blockdev.VerifyResult{}, resource.NotFound(id)
	}
	return s.Engine.VerifySnapshot(ctx, sn.UniqueID)
}
