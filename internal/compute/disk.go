package compute

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"coffer/internal/authorization"
	"coffer/internal/blockdev"
	"coffer/internal/capacity"
	"coffer/internal/identity"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// DiskInput is the body of a disk PUT.
type DiskInput struct {
	Location     string
	Tags         map[string]string
	SKU          string // empty: Standard_LRS
	Zones        []string
	CreationData CreationData
	// DiskSizeGB is required for Empty; for Copy and Restore it may grow
	// the disk; 0 means unset.
	DiskSizeGB int64
	Options    Options
}

// DiskUpdate is the body of a disk PATCH; zero fields are unchanged.
type DiskUpdate struct {
	Tags       map[string]string // nil: unchanged
	SKU        string
	DiskSizeGB int64
	Options    *Options
}

// Finish completes a create that continues after its record is written (a
// copy of a disk, a snapshot). It returns the final record.
type Finish func(ctx context.Context) (Disk, error)

// MinUploadBytes and MaxUploadBytes bound uploadSizeBytes.
const (
	MinUploadBytes = 512
	MaxUploadBytes = MaxDiskSizeGB*GiB + 512
)

func canonicalOption(o string) (string, bool) {
	for _, c := range []string{OptionEmpty, OptionCopy, OptionRestore, OptionUpload} {
		if strings.EqualFold(o, c) {
			return c, true
		}
	}
	return o, false
}

// source is the resolved source of a copy or restore.
type source struct {
	id       resource.ID
	snapshot bool
}

// resolveSource parses the source of a copy or restore of disk id and
// makes Azure's linked access check: reading the bytes of the source takes
// beginGetAccess on it (which Disk Snapshot Contributor and Disk Backup
// Reader hold), not mere read access to its properties.
func (s *Service) resolveSource(ctx context.Context, p identity.Principal, id resource.ID, option, src string) (*source, error) {
	if src == "" {
		return nil, invalidParameter("creationData.sourceResourceId", "Required parameter 'sourceResourceId' is missing (null).")
	}
	own := authorization.Need{Action: ActionDiskWrite, Scope: id.String()}
	if sid, err := ParseID(TypeSnapshots, src); err == nil {
		if err := s.requireLinked(ctx, p, own, authorization.Need{Action: ActionSnapshotGrant, Scope: sid.String()}); err != nil {
			return nil, err
		}
		return &source{id: sid, snapshot: true}, nil
	}
	if option == OptionRestore {
		return nil, invalidParameter("creationData.sourceResourceId",
			"The source '%s' of a disk with createOption 'Restore' must be a snapshot.", src)
	}
	sid, err := ParseID(TypeDisks, src)
	if err != nil {
		return nil, invalidParameter("creationData.sourceResourceId",
			"The value '%s' of parameter 'sourceResourceId' is not a valid disk or snapshot resource ID.", src)
	}
	if err := s.requireLinked(ctx, p, own, authorization.Need{Action: ActionDiskGrant, Scope: sid.String()}); err != nil {
		return nil, err
	}
	return &source{id: sid}, nil
}

func shrinkError(cur, want int64) error {
	return resource.Errorf(resource.KindBadRequest, "BadRequest",
		"Disk size reduction is not supported. Current size is %d bytes, requested size is %d bytes.", cur, want).WithTarget("diskSizeGB")
}

func checkSizeGB(gb int64) error {
	if gb < 1 || gb > MaxDiskSizeGB {
		return invalidParameter("diskSizeGB", "The value %d of parameter 'diskSizeGB' is out of range. The value must be between 1 and %d, inclusive.", gb, MaxDiskSizeGB)
	}
	return nil
}

// checkFits refuses a disk size (bytes, from the parameter target) that
// this node cannot hold: larger than the largest file of the filesystem
// that holds the disks' volumes.
func (s *Service) checkFits(bytes int64, target string) error {
	return sizeError(s.Engine.CheckSize(bytes), target)
}

// sizeError turns a size the block engine refused (blockdev.ErrTooLarge)
// into Azure's 400 for the parameter target; other errors pass unchanged.
func sizeError(err error, target string) error {
	var sl *blockdev.SizeLimitError
	if !errors.As(err, &sl) {
		return err
	}
	return invalidParameter(target,
		"The disk size of %d bytes (%d GiB) is larger than this Coffer node can hold: its data filesystem stores at most %d bytes (%d GiB) in one file, and a disk is one file. Choose a size of at most %d GiB, or keep the data directory on a filesystem with larger files (ext4 with 4 KiB blocks holds 16 TiB; XFS more).",
		sl.Size, sizeGB(sl.Size), sl.Limit, sl.Limit/GiB, sl.Limit/GiB)
}

// CreateDisk creates (or, if it exists, updates) a disk and waits for it to
// be provisioned. The caller has authorized Microsoft.Compute/disks/write
// on id for p; it checks beginGetAccess on a copy's source.
func (s *Service) CreateDisk(ctx context.Context, p identity.Principal, id resource.ID, in DiskInput) (Disk, error) {
	d, _, finish, err := s.StartDisk(ctx, p, id, in)
	if err != nil || finish == nil {
		return d, err
	}
	return finish(ctx)
}

// CreateDiskFromSnapshot creates disk id from snapshot snap (createOption
// Copy), available at once and hydrating in the background. sizeGB 0 keeps
// the snapshot's size.
func (s *Service) CreateDiskFromSnapshot(ctx context.Context, p identity.Principal, id, snap resource.ID, location, sku string, sizeGB int64, tags map[string]string) (Disk, error) {
	return s.CreateDisk(ctx, p, id, DiskInput{Location: location, SKU: sku, Tags: tags, DiskSizeGB: sizeGB,
		CreationData: CreationData{CreateOption: OptionCopy, SourceResourceID: snap.String()}})
}

// StartDisk validates a disk PUT and writes the record. Creations that are
// instant (Empty, Upload, from a snapshot) are complete when it returns
// (finish is nil); a copy of a disk returns the record in Updating and a
// finish function that takes the copy. created is false when the PUT
// updated an existing disk.
func (s *Service) StartDisk(ctx context.Context, p identity.Principal, id resource.ID, in DiskInput) (d Disk, created bool, finish Finish, err error) {
	loc, sku, err := s.checkPut(id, TypeDisks, DiskSKUs, in.Location, in.SKU, in.Tags, in.CreationData)
	if err != nil {
		return d, false, nil, err
	}
	option, ok := canonicalOption(in.CreationData.CreateOption)
	if !ok {
		return d, false, nil, invalidParameter("creationData.createOption",
			"The value '%s' of parameter 'createOption' is not supported. Coffer supports 'Empty', 'Copy', 'Restore' and 'Upload'.", in.CreationData.CreateOption)
	}
	if in.DiskSizeGB != 0 {
		if err := checkSizeGB(in.DiskSizeGB); err != nil {
			return d, false, nil, err
		}
		if err := s.checkFits(in.DiskSizeGB*GiB, "diskSizeGB"); err != nil {
			return d, false, nil, err
		}
	}
	if u := in.CreationData.UploadSizeBytes; option == OptionUpload && u >= MinUploadBytes && u <= MaxUploadBytes && u%512 == 0 {
		if err := s.checkFits(u, "creationData.uploadSizeBytes"); err != nil {
			return d, false, nil, err
		}
	}
	var src *source
	if option == OptionCopy || option == OptionRestore {
		if src, err = s.resolveSource(ctx, p, id, option, in.CreationData.SourceResourceID); err != nil {
			return d, false, nil, err
		}
	}
	now := s.now()
	var srcDisk Disk
	var srcSnap Snapshot
	var undo func()
	var stale string // the volume of a failed disk this PUT replaces
	err = s.Store.Update(ctx, func(tx store.Tx) error {
		// The store may re-run this function (its contract): each run
		// starts afresh, the last one's growth of the volume undone.
		stale, created = "", false
		if undo != nil {
			undo()
			undo = nil
		}
		if err := s.checkGroup(ctx, tx, id); err != nil {
			return err
		}
		old, gerr := s.getDisk(ctx, tx, id)
		switch {
		case gerr == nil && old.ProvisioningState == StateFailed:
			// A disk whose provisioning failed (an error, or a stop that
			// interrupted it, as Recover records) holds nothing: a PUT
			// provisions it anew, as ARM retries a failed resource. An
			// interrupted restore that is delivered again relies on it.
			stale = old.UniqueID
		case gerr == nil:
			d, undo, err = s.updateFromPut(ctx, tx, p, old, loc, sku, option, in)
			return err
		case !resource.IsNotFound(gerr):
			return gerr
		}
		created = true
		d = Disk{ID: id.String(), Name: id.Name(), Location: loc, Tags: in.Tags, SKU: SKU{Name: sku, Tier: skuTier(sku)},
			Zones: in.Zones, UniqueID: identity.NewGUID(), TimeCreated: now, ProvisioningState: StateUpdating,
			Options: defaultOptions(in.Options, sku)}
		d.CreationData = CreationData{CreateOption: option, LogicalSectorSize: in.CreationData.LogicalSectorSize}
		stamp(&d.SystemData, p, now, true)
		var bytes int64
		switch option {
		case OptionEmpty:
			if in.DiskSizeGB == 0 {
				return invalidParameter("diskSizeGB", "Required parameter 'diskSizeGB' is missing (null).")
			}
			bytes = in.DiskSizeGB * GiB
		case OptionUpload:
			u := in.CreationData.UploadSizeBytes
			if u == 0 {
				return invalidParameter("creationData.uploadSizeBytes", "Required parameter 'uploadSizeBytes' is missing (null).")
			}
			if u < MinUploadBytes || u > MaxUploadBytes || u%512 != 0 {
				return invalidParameter("creationData.uploadSizeBytes",
					"The value %d of parameter 'uploadSizeBytes' is invalid. It must be a multiple of 512 between %d and %d.", u, MinUploadBytes, int64(MaxUploadBytes))
			}
			bytes = u
			d.CreationData.UploadSizeBytes = u
			d.Uploading = true
		default:
			d.CreationData.SourceResourceID = src.id.String()
			if src.snapshot {
				if srcSnap, err = s.getSnapshot(ctx, tx, src.id); err != nil {
					return err
				}
				if srcSnap.ProvisioningState != StateSucceeded {
					return notAllowed("The snapshot '%s' is in provisioning state '%s'; a disk can be created from it once it has succeeded.", srcSnap.ID, srcSnap.ProvisioningState)
				}
				d.CreationData.SourceUniqueID = srcSnap.UniqueID
				bytes = srcSnap.DiskSizeBytes
				if d.Options.OSType == "" {
					d.Options.OSType = srcSnap.Options.OSType
				}
			} else {
				if srcDisk, err = s.getDisk(ctx, tx, src.id); err != nil {
					return err
				}
				if srcDisk.ProvisioningState != StateSucceeded || srcDisk.Uploading {
					return notAllowed("The disk '%s' is in state '%s' (provisioning state '%s'); it can be copied once it is provisioned and its upload has ended.",
						srcDisk.ID, srcDisk.State(now), srcDisk.ProvisioningState)
				}
				d.CreationData.SourceUniqueID = srcDisk.UniqueID
				bytes = srcDisk.DiskSizeBytes
				d.TempSnapshot = "copy-" + d.UniqueID
				if d.Options.OSType == "" {
					d.Options.OSType = srcDisk.Options.OSType
				}
			}
			if in.DiskSizeGB != 0 {
				if want := in.DiskSizeGB * GiB; want < bytes {
					return shrinkError(bytes, want)
				} else {
					bytes = want
				}
			}
		}
		d.DiskSizeBytes, d.DiskSizeGB = bytes, sizeGB(bytes)
		if s.Home != nil {
			if err := s.Home(ctx, tx, d.ID, d.UniqueID); err != nil {
				return err
			}
		}
		return s.putDisk(ctx, tx, &d)
	})
	if err != nil && undo != nil {
		undo()
	}
	if err != nil || !created {
		return d, created, nil, err
	}
	if stale != "" {
		if err := s.Engine.DeleteVolume(ctx, stale); err != nil && !errors.Is(err, blockdev.ErrNotFound) {
			s.logger().Warn("delete the volume of a failed disk", "disk", id.String(), "volume", stale, "err", err)
		}
	}
	if src != nil && !src.snapshot {
		return d, true, func(ctx context.Context) (Disk, error) { return s.FinishDisk(ctx, id) }, nil
	}
	if err := s.provisionDisk(ctx, d, src, srcSnap, srcDisk); err != nil {
		d, err = s.failDisk(ctx, id, d.UniqueID, err)
		return d, true, nil, err
	}
	d, err = s.provisioned(ctx, id, d.UniqueID)
	return d, true, nil, err
}

// settled reports whether a resource whose creation is to be finished has
// ended already (its state is no longer pending), with the error of a
// Failed one (what failed names its work).
func settled(state, pending string, failed *resource.Error, what string) (bool, error) {
	switch state {
	case pending:
		return false, nil
	case StateFailed:
		if failed != nil {
			return true, failed
		}
		return true, resource.Errorf(resource.KindInternal, "InternalExecutionError", "%s failed.", what)
	}
	return true, nil
}

// FailCreationTx ends, in tx, the creation of the disk or snapshot id
// (typ is TypeDisks or TypeSnapshots) whose operation failed for good —
// its task ran out of deliveries, or its handler could not record the
// failure itself: a disk still Updating or a snapshot still Creating
// becomes Failed with e, so that every node shows why at once. One that
// has ended, or is gone, is left as it is.
func (s *Service) FailCreationTx(ctx context.Context, tx store.Tx, typ string, id resource.ID, e *resource.Error) error {
	var err error
	switch typ {
	case TypeDisks:
		err = failPending(ctx, tx, KindDisk, id, func(x *Disk) bool {
			if x.ProvisioningState != StateUpdating {
				return false
			}
			x.ProvisioningState, x.FailedError = StateFailed, e
			return true
		})
	case TypeSnapshots:
		err = failPending(ctx, tx, KindSnapshot, id, func(x *Snapshot) bool {
			if x.ProvisioningState != StateCreating {
				return false
			}
			x.ProvisioningState, x.FailedError = StateFailed, e
			return true
		})
	default:
		err = fmt.Errorf("unknown resource type %q", typ)
	}
	if err != nil && !resource.IsNotFound(err) {
		return fmt.Errorf("fail the creation of %s: %w", id, err)
	}
	return nil
}

// failPending stores the record of kind at id, in tx, if fail changed it.
func failPending[T any, P interface {
	*T
	etagged
}](ctx context.Context, tx store.Tx, kind string, id resource.ID, fail func(P) bool) error {
	_, err := changePending[T, P](ctx, tx, kind, id, fail)
	return err
}

// changePending reads the record of kind at id in tx and stores it if
// change changed it (it reports whether it did); it returns the record as
// it then stands.
func changePending[T any, P interface {
	*T
	etagged
}](ctx context.Context, tx store.Tx, kind string, id resource.ID, change func(P) bool) (T, error) {
	v, err := getRecord[T, P](ctx, tx, kind, id)
	if err != nil || !change(&v) {
		return v, err
	}
	return v, putRecord(ctx, tx, kind, id.String(), P(&v))
}

// endCreation ends, in a transaction of its own, the creation of the disk
// or snapshot of kind at id with end, which changes the record only while
// that creation is still pending (it reports whether it did): a creation
// that ended meanwhile — failed by the sweep of a gone node's work
// (FailStranded) while this node was away, say, or deleted and made anew —
// keeps its end, and is returned as it stands.
func endCreation[T any, P interface {
	*T
	etagged
}](ctx context.Context, s *Service, kind string, id resource.ID, end func(P) bool) (T, error) {
	var v T
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		var err error
		v, err = changePending[T, P](ctx, tx, kind, id, end)
		return err
	})
	return v, err
}

// FinishDisk completes, from the disk's record, the creation StartDisk
// left to do (a copy of a disk: a temporary snapshot of the source, and
// the new volume restored from it); it is what StartDisk's finish and the
// disks/create operation run, on the disk's home node. It is idempotent:
// a disk no longer Updating is answered as it is (a Failed one with its
// error); a volume already made ends the creation; a temporary snapshot a
// previous run took is used again.
func (s *Service) FinishDisk(ctx context.Context, id resource.ID) (Disk, error) {
	d, err := s.GetDisk(ctx, id)
	if err != nil {
		return d, err
	}
	if ended, err := settled(d.ProvisioningState, StateUpdating, d.FailedError, "Provisioning the disk '"+d.Name+"'"); ended {
		return d, err
	}
	if _, err := s.Engine.OpenVolume(ctx, d.UniqueID); err == nil {
		s.watchHydration(d.ID, d.UniqueID, d.TempSnapshot, nil)
		return s.provisioned(ctx, id, d.UniqueID)
	}
	src, err := resource.Parse(d.CreationData.SourceResourceID)
	if err != nil || d.TempSnapshot == "" {
		return s.failDisk(ctx, id, d.UniqueID, fmt.Errorf("disk %s: no source disk to copy is recorded", id))
	}
	srcDisk := Disk{ID: src.String(), UniqueID: d.CreationData.SourceUniqueID}
	if err := s.provisionDisk(ctx, d, &source{id: src}, Snapshot{}, srcDisk); err != nil {
		return s.failDisk(ctx, id, d.UniqueID, err)
	}
	return s.provisioned(ctx, id, d.UniqueID)
}

// provisionDisk makes the volume of a new disk.
func (s *Service) provisionDisk(ctx context.Context, d Disk, src *source, srcSnap Snapshot, srcDisk Disk) error {
	var vol *blockdev.Volume
	var err error
	switch {
	case src == nil:
		vol, err = s.Engine.CreateVolume(ctx, d.UniqueID, d.DiskSizeBytes)
	case src.snapshot:
		vol, err = s.Engine.RestoreVolume(ctx, srcSnap.UniqueID, d.UniqueID)
	default:
		// A run interrupted after the temporary snapshot took it already.
		if _, err = s.Engine.StatSnapshot(ctx, d.TempSnapshot); err != nil {
			if _, err = s.Engine.Snapshot(ctx, srcDisk.UniqueID, d.TempSnapshot); err != nil {
				return fmt.Errorf("copy disk %s: %w", srcDisk.ID, err)
			}
		}
		vol, err = s.Engine.RestoreVolume(ctx, d.TempSnapshot, d.UniqueID)
	}
	if err != nil {
		return fmt.Errorf("provision disk %s: %w", d.ID, sizeError(err, "diskSizeGB"))
	}
	if vol.Size() < d.DiskSizeBytes {
		if err := vol.Resize(ctx, d.DiskSizeBytes); err != nil {
			return fmt.Errorf("provision disk %s: %w", d.ID, sizeError(err, "diskSizeGB"))
		}
	}
	s.watchHydration(d.ID, d.UniqueID, d.TempSnapshot, nil)
	return nil
}

// failDisk records a failed provisioning of the disk id whose unique ID
// is uniqueID and returns its error; a disk that ended meanwhile keeps its
// end (endCreation).
func (s *Service) failDisk(ctx context.Context, id resource.ID, uniqueID string, cause error) (Disk, error) {
	e := resource.AsError(cause)
	if e == nil {
		s.logger().Error("disk provisioning failed", "disk", id.String(), "err", cause)
		e = resource.Errorf(resource.KindInternal, "InternalExecutionError", "Provisioning the disk failed: %v", cause)
	}
	d, err := s.endDisk(context.WithoutCancel(ctx), id, uniqueID, func(x *Disk) { x.ProvisioningState, x.FailedError = StateFailed, e })
	if err != nil && resource.AsError(err) == nil {
		s.logger().Error("record failed disk", "disk", id.String(), "err", err)
	}
	if err != nil {
		return d, err
	}
	return d, e
}

// provisioned records that the volume of the disk id whose unique ID is
// uniqueID is made; a disk that ended meanwhile keeps its end
// (endCreation).
func (s *Service) provisioned(ctx context.Context, id resource.ID, uniqueID string) (Disk, error) {
	return s.endDisk(ctx, id, uniqueID, func(x *Disk) { x.ProvisioningState = StateSucceeded })
}

// endDisk is endCreation for a disk.
func (s *Service) endDisk(ctx context.Context, id resource.ID, uniqueID string, end func(*Disk)) (Disk, error) {
	d, err := endCreation(ctx, s, KindDisk, id, func(x *Disk) bool {
		if x.ProvisioningState != StateUpdating || x.UniqueID != uniqueID {
			return false
		}
		end(x)
		return true
	})
	if err != nil {
		return d, err
	}
	if d.UniqueID != uniqueID {
		return d, resource.NotFound(id) // the one being made was deleted (and made anew)
	}
	_, err = settled(d.ProvisioningState, StateUpdating, d.FailedError, "Provisioning the disk '"+d.Name+"'")
	return d, err
}

// markDisk applies fn to the stored disk.
func (s *Service) markDisk(ctx context.Context, id resource.ID, fn func(*Disk)) (Disk, error) {
	return markRecord(ctx, s, KindDisk, id, fn)
}

func skuTier(sku string) string {
	switch {
	case strings.HasPrefix(sku, "PremiumV2"):
		return ""
	case strings.HasPrefix(sku, "Premium"):
		return "Premium"
	case strings.HasPrefix(sku, "StandardSSD"):
		return "StandardSSD"
	case strings.HasPrefix(sku, "UltraSSD"):
		return "Ultra"
	}
	return "Standard"
}

func defaultOptions(o Options, sku string) Options {
	if o.EncryptionType == "" {
		o.EncryptionType = "EncryptionAtRestWithPlatformKey"
	}
	if o.NetworkAccessPolicy == "" {
		o.NetworkAccessPolicy = "AllowAll"
	}
	if o.PublicNetworkAccess == "" {
		o.PublicNetworkAccess = "Enabled"
	}
	if (sku == "UltraSSD_LRS" || sku == "PremiumV2_LRS") && o.DiskIOPSReadWrite == 0 {
		o.DiskIOPSReadWrite, o.DiskMBpsReadWrite = 3000, 125
	}
	return o
}

// updateFromPut applies a PUT to an existing disk: tags, SKU, options and a
// larger diskSizeGB may change; the location and creation data may not.
func (s *Service) updateFromPut(ctx context.Context, tx store.Tx, p identity.Principal, old Disk, loc, sku, option string, in DiskInput) (Disk, func(), error) {
	if err := checkSameLocation(old.Name, old.ID, old.Location, loc); err != nil {
		return old, nil, err
	}
	if option != old.CreationData.CreateOption {
		return old, nil, resource.Errorf(resource.KindConflict, "PropertyChangeNotAllowed", "Changing property 'creationData.createOption' is not allowed.").WithTarget("creationData.createOption")
	}
	if src := in.CreationData.SourceResourceID; src != "" && !strings.EqualFold(strings.TrimPrefix(src, "/"), strings.TrimPrefix(old.CreationData.SourceResourceID, "/")) {
		return old, nil, resource.Errorf(resource.KindConflict, "PropertyChangeNotAllowed", "Changing property 'creationData.sourceResourceId' is not allowed.").WithTarget("creationData.sourceResourceId")
	}
	upd := DiskUpdate{Tags: in.Tags, SKU: sku, DiskSizeGB: in.DiskSizeGB, Options: &in.Options}
	if upd.Tags == nil {
		upd.Tags = map[string]string{}
	}
	return s.applyUpdate(ctx, tx, p, old, upd)
}

// checkSameLocation refuses, as ARM does, a PUT that would move the
// existing resource name (ID id, in location have) to location want.
func checkSameLocation(name, id, have, want string) error {
	if have == want {
		return nil
	}
	return resource.Errorf(resource.KindConflict, "InvalidResourceLocation",
		"The resource '%s' already exists in location '%s' in resource group '%s'. A resource with the same name cannot be created in location '%s'. Please select a new resource name.",
		name, have, resourceGroupOf(id), want)
}

func resourceGroupOf(id string) string {
	rid, err := resource.Parse(id)
	if err != nil {
		return ""
	}
	return rid.ResourceGroup
}

// applyUpdate changes a disk record (and grows its volume) inside tx. When
// it grew the volume it returns undo, which the caller runs if tx does not
// commit, so that a failed update leaves the disk exactly as it was.
func (s *Service) applyUpdate(ctx context.Context, tx store.Tx, p identity.Principal, d Disk, upd DiskUpdate) (_ Disk, undo func(), err error) {
	now := s.now()
	if upd.Tags != nil {
		if err := resource.CheckTags(upd.Tags); err != nil {
			return d, nil, err
		}
	}
	defer func() {
		if err != nil && undo != nil {
			undo()
			undo = nil
		}
	}()
	if upd.DiskSizeGB != 0 {
		if err := checkSizeGB(upd.DiskSizeGB); err != nil {
			return d, nil, err
		}
		want := upd.DiskSizeGB * GiB
		if want < d.DiskSizeBytes {
			return d, nil, shrinkError(d.DiskSizeBytes, want)
		}
		if want > d.DiskSizeBytes {
			if d.ProvisioningState != StateSucceeded {
				return d, nil, notAllowed("The disk '%s' is in provisioning state '%s' and cannot be resized now.", d.Name, d.ProvisioningState)
			}
			if st := d.State(now); st != DiskUnattached {
				return d, nil, notAllowed("The disk '%s' is in state '%s' and cannot be resized. Resizing is allowed only in state 'Unattached'; revoke access (endGetAccess) first.", d.Name, st)
			}
			if err := s.checkFits(want, "diskSizeGB"); err != nil {
				return d, nil, err
			}
			vol, err := s.Engine.OpenVolume(ctx, d.UniqueID)
			if err != nil {
				return d, nil, fmt.Errorf("resize disk %s: %w", d.ID, err)
			}
			if err := vol.Resize(ctx, want); err != nil {
				return d, nil, fmt.Errorf("resize disk %s: %w", d.ID, sizeError(err, "diskSizeGB"))
			}
			was, id := d.DiskSizeBytes, d.ID
			undo = func() {
				if err := vol.UndoResize(context.WithoutCancel(ctx), was); err != nil {
					s.logger().Error("undo the resize of a disk whose update failed", "disk", id, "size", was, "err", err)
				}
			}
			d.DiskSizeBytes, d.DiskSizeGB = want, upd.DiskSizeGB
		}
	}
	if upd.Tags != nil {
		d.Tags = upd.Tags
	}
	if upd.SKU != "" {
		sku, err := checkSKU(upd.SKU, DiskSKUs, "sku.name")
		if err != nil {
			return d, undo, err
		}
		d.SKU = SKU{Name: sku, Tier: skuTier(sku)}
	}
	if upd.Options != nil {
		o := *upd.Options
		keep := d.Options
		setIfSet(&keep.OSType, o.OSType)
		setIfSet(&keep.HyperVGeneration, o.HyperVGeneration)
		setIfSet(&keep.NetworkAccessPolicy, o.NetworkAccessPolicy)
		setIfSet(&keep.PublicNetworkAccess, o.PublicNetworkAccess)
		setIfSet(&keep.DataAccessAuthMode, o.DataAccessAuthMode)
		setIfSet(&keep.Tier, o.Tier)
		setIfSet(&keep.DiskIOPSReadWrite, o.DiskIOPSReadWrite)
		setIfSet(&keep.DiskMBpsReadWrite, o.DiskMBpsReadWrite)
		setIfSet(&keep.BurstingEnabled, o.BurstingEnabled)
		d.Options = keep
	}
	stamp(&d.SystemData, p, now, false)
	return d, undo, s.putDisk(ctx, tx, &d)
}

// setIfSet sets *dst to v unless v is its type's zero value (a property a
// PATCH or PUT leaves out).
func setIfSet[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}

// UpdateDisk applies a PATCH by p: tags, SKU and growing diskSizeGB
// (shrinking is refused with Azure's error).
func (s *Service) UpdateDisk(ctx context.Context, p identity.Principal, id resource.ID, upd DiskUpdate) (Disk, error) {
	var undo func()
	d, err := recordTx(ctx, s, s.Store.Update, KindDisk, id, func(tx store.Tx, d *Disk) error {
		if undo != nil { // a re-run (store contract) starts from the volume as it was
			undo()
			undo = nil
		}
		var err error
		*d, undo, err = s.applyUpdate(ctx, tx, p, *d, upd)
		return err
	})
	if err != nil && undo != nil {
		undo() // the volume grew but the record did not commit
	}
	return d, err
}

// DeleteDisk deletes a disk and its volume (its snapshots stay). A disk with
// an active access grant is refused (OperationNotAllowed), as Azure refuses
// an attached or exported disk. The record is Deleting while the volume
// goes, so that a stop in between leaves a deletion that Recover finishes,
// never a Succeeded disk without its data. It reports whether the disk
// existed.
func (s *Service) DeleteDisk(ctx context.Context, id resource.ID) (bool, error) {
	d, err := recordTx(ctx, s, s.Store.Update, KindDisk, id, func(tx store.Tx, d *Disk) error {
		if st := d.State(s.now()); st == DiskActiveSAS || st == DiskActiveUpload {
			return notAllowed("Disk '%s' cannot be deleted while it is in state '%s': it is exported through an access grant. End the access (endGetAccess) first.", d.Name, st)
		}
		d.ProvisioningState = StateDeleting
		return s.putDisk(ctx, tx, d)
	})
	if resource.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := s.destroyDisk(ctx, d); err != nil {
		return true, err
	}
	return true, nil
}

// destroyDisk removes a disk's data, grants and record.
func (s *Service) destroyDisk(ctx context.Context, d Disk) error {
	s.forgetGrants(d.Grants)
	if done, err := s.destroyDiskElsewhere(ctx, d); done || err != nil {
		return err
	}
	if err := s.Engine.DeleteVolume(ctx, d.UniqueID); err != nil && !errors.Is(err, blockdev.ErrNotFound) {
		if errors.Is(err, blockdev.ErrDeleting) {
			// Another request is deleting it: that one ends the deletion.
			e := notAllowed("Disk '%s' is being deleted by another request; that deletion goes on. Read the disk to see when it is gone.", d.Name)
			e.Err = err
			return e
		}
		return fmt.Errorf("delete disk %s: %w", d.ID, err)
	}
	if d.TempSnapshot != "" {
		if err := s.Engine.DeleteSnapshot(ctx, d.TempSnapshot); err != nil && !errors.Is(err, blockdev.ErrNotFound) {
			return fmt.Errorf("delete disk %s: %w", d.ID, err)
		}
	}
	return s.Store.Update(ctx, func(tx store.Tx) error { return s.deleteDiskTx(ctx, tx, d) })
}

// deleteDiskTx deletes d's record, the pointers of its grants and its
// home (ForgetHome), in tx.
func (s *Service) deleteDiskTx(ctx context.Context, tx store.Tx, d Disk) error {
	if err := deleteRecordTx(ctx, tx, KindDisk, "disk", d.ID, d.Grants); err != nil {
		return err
	}
	if s.ForgetHome != nil {
		if err := s.ForgetHome(ctx, tx, d.ID, d.UniqueID); err != nil {
			return fmt.Errorf("delete disk %s: %w", d.ID, err)
		}
	}
	return nil
}

// errHeldHere rolls back destroyDiskElsewhere's transaction when this node
// holds the volume.
var errHeldHere = errors.New("the volume is held by this node")

// destroyDiskElsewhere deletes d's record and queues the deletion of its
// volume on the node that holds it, in one transaction, when that node is
// another (DeleteVolumeElsewhere); it reports whether it did.
func (s *Service) destroyDiskElsewhere(ctx context.Context, d Disk) (bool, error) {
	if s.DeleteVolumeElsewhere == nil || d.UniqueID == "" {
		return false, nil
	}
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		queued, err := s.DeleteVolumeElsewhere(ctx, tx, d.UniqueID)
		if err != nil || !queued {
			return cmp.Or(err, errHeldHere)
		}
		return s.deleteDiskTx(ctx, tx, d)
	})
	if errors.Is(err, errHeldHere) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete disk %s: %w", d.ID, err)
	}
	if d.TempSnapshot != "" {
		if err := s.Engine.DeleteSnapshot(ctx, d.TempSnapshot); err != nil && !errors.Is(err, blockdev.ErrNotFound) {
			return true, fmt.Errorf("delete disk %s: %w", d.ID, err)
		}
	}
	return true, nil
}

// DeleteVolumeTask is the job-queue task type that deletes a volume on
// the node that holds it (its payload is the volume's unique ID), queued
// by DeleteVolumeElsewhere.
const DeleteVolumeTask = "compute.deleteVolume"

// DeleteVolume deletes the volume uniqueID of a disk whose record is gone
// (DeleteVolumeTask's handler); a volume already gone is no error.
func (s *Service) DeleteVolume(ctx context.Context, uniqueID string) error {
	if err := s.Engine.DeleteVolume(ctx, uniqueID); err != nil && !errors.Is(err, blockdev.ErrNotFound) {
		return fmt.Errorf("delete volume %s: %w", uniqueID, err)
	}
	return nil
}

// watchHydration follows the hydration of a disk made from a snapshot or
// a disk. While it is stalled for lack of space the disk record carries the
// error (HydrationError) and HydrationObserver hears of it; both are
// cleared when it moves again. shown is the stall the record shows now.
// Once hydration has ended, the temporary snapshot of a copy (temp, if not
// empty) is deleted.
func (s *Service) watchHydration(diskID, volumeID, temp string, shown *resource.Error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.stop == nil {
		s.stop = make(chan struct{})
	}
	stop := s.stop
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		id, err := resource.Parse(diskID)
		if err != nil {
			return
		}
		vol, err := s.Engine.OpenVolume(ctx, volumeID)
		if err != nil {
			return // deleted meanwhile
		}
		for {
			changed := vol.HydrationChanged()
			st := vol.Hydration()
			var stall *resource.Error
			if st.Stalled {
				if stall = resource.AsError(st.Err); stall == nil {
					stall = resource.Errorf(resource.KindInsufficientStorage, capacity.Code, "%v", st.Err)
				}
			}
			if (stall == nil) != (shown == nil) {
				if s.recordHydration(ctx, id, stall) {
					shown = stall
				}
			}
			if !st.Hydrating || (st.Err != nil && !st.Stalled) {
				break // ended, or failed for good (Recover watches again after a restart)
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
		if err := vol.WaitHydrated(ctx); err != nil || temp == "" {
			return
		}
		if err := s.Engine.DeleteSnapshot(ctx, temp); err != nil && !errors.Is(err, blockdev.ErrNotFound) {
			s.logger().Warn("delete temporary copy snapshot", "disk", diskID, "snapshot", temp, "err", err)
			return
		}
		if _, err := s.markDisk(ctx, id, func(d *Disk) { d.TempSnapshot = "" }); err != nil && !resource.IsNotFound(err) {
			s.logger().Warn("record hydrated copy", "disk", diskID, "err", err)
		}
	}()
}

// recordHydration shows (stall non-nil) or clears the hydration stall on
// the disk record and tells HydrationObserver; false means the record
// could not be written (the watcher tries again at the next change).
func (s *Service) recordHydration(ctx context.Context, id resource.ID, stall *resource.Error) bool {
	if stall != nil {
		s.logger().Warn("disk hydration stalled: no space on the data filesystem; it resumes by itself", "disk", id.String())
	}
	_, err := s.markDisk(ctx, id, func(d *Disk) { d.HydrationError = stall })
	if err != nil && !resource.IsNotFound(err) {
		s.logger().Warn("record disk hydration", "disk", id.String(), "err", err)
		return false
	}
	if s.HydrationObserver != nil {
		s.HydrationObserver(ctx, id.String(), stall)
	}
	return true
}

// Hydration reports the background hydration of a disk created from a
// snapshot or a disk (done and total bytes; done == total when complete).
func (s *Service) Hydration(ctx context.Context, d Disk) (done, total int64, err error) {
	vol, err := s.Engine.OpenVolume(ctx, d.UniqueID)
	if err != nil {
		return 0, 0, fmt.Errorf("hydration of disk %s: %w", d.ID, err)
	}
	h := vol.Hydration()
	return h.DoneBytes, h.TotalBytes, h.Err
}
