package compute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"coffer/internal/authorization"
	"coffer/internal/blockdev"
	"coffer/internal/clock"
	"coffer/internal/identity"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/tenant"
)

// Store kinds of the provider's records.
const (
	KindDisk     = "Microsoft.Compute/disks"
	KindSnapshot = "Microsoft.Compute/snapshots"
	kindGrant    = "Microsoft.Compute/accessGrants"
)

// Resource types, as ARM names them.
const (
	TypeDisks     = "disks"
	TypeSnapshots = "snapshots"
	Provider      = "Microsoft.Compute"
)

// GiB is the unit of diskSizeGB.
const GiB = int64(1) << 30

// Limits.
const (
	// MaxDiskSizeGB is Azure's largest managed disk (32 TiB... 64 TiB for
	// Ultra; Coffer takes 32767 GiB for every SKU).
	MaxDiskSizeGB = 32767
	// MaxIncrementalSnapshots is Azure's limit per disk.
	MaxIncrementalSnapshots = 500
	// MaxGrantDuration bounds durationInSeconds.
	MaxGrantDuration = 30 * 24 * time.Hour
)

// Provisioning states.
const (
	StateSucceeded = "Succeeded"
	StateUpdating  = "Updating"
	StateCreating  = "Creating"
	StateFailed    = "Failed"
	StateDeleting  = "Deleting"
)

// Disk states (diskState).
const (
	DiskUnattached    = "Unattached"
	DiskReadyToUpload = "ReadyToUpload"
	DiskActiveUpload  = "ActiveUpload"
	DiskActiveSAS     = "ActiveSAS"
)

// Create options.
const (
	OptionEmpty   = "Empty"
	OptionCopy    = "Copy"
	OptionRestore = "Restore"
	OptionUpload  = "Upload"
)

// DiskSKUs are the disk SKUs Coffer accepts (kept and reported).
var DiskSKUs = []string{"Standard_LRS", "Premium_LRS", "StandardSSD_LRS", "UltraSSD_LRS", "Premium_ZRS", "StandardSSD_ZRS", "PremiumV2_LRS"}

// SnapshotSKUs are the snapshot SKUs.
var SnapshotSKUs = []string{"Standard_LRS", "Premium_LRS", "Standard_ZRS"}

// RBAC actions.
const (
	ActionDiskRead       = "Microsoft.Compute/disks/read"
	ActionDiskWrite      = "Microsoft.Compute/disks/write"
	ActionDiskDelete     = "Microsoft.Compute/disks/delete"
	ActionDiskGrant      = "Microsoft.Compute/disks/beginGetAccess/action"
	ActionDiskRevoke     = "Microsoft.Compute/disks/endGetAccess/action"
	ActionSnapshotRead   = "Microsoft.Compute/snapshots/read"
	ActionSnapshotWrite  = "Microsoft.Compute/snapshots/write"
	ActionSnapshotDelete = "Microsoft.Compute/snapshots/delete"
	ActionSnapshotGrant  = "Microsoft.Compute/snapshots/beginGetAccess/action"
	ActionSnapshotRevoke = "Microsoft.Compute/snapshots/endGetAccess/action"

	actionKindGrant  = "beginGetAccess/action"
	actionKindRevoke = "endGetAccess/action"
)

// Authorizer is the decision point (authorization.Service). Compute asks it
// only what an operation alone can know it needs: the source a copy or a
// restore reads (Azure's linked access check), the right to write that a
// Write grant confers, who may be handed an existing grant, and on the data
// path whether a grant's creator still holds the rights the grant took.
// The caller's own action on the resource (disks/write for a PUT, say) is
// decided once by whoever calls the service: the API's route table, the
// portal, or the backup worker acting as a vault's identity.
type Authorizer interface {
	Decide(ctx context.Context, p identity.Principal, action, scope string) (authorization.Decision, error)
}

// decisionKeeper is an Authorizer whose decisions can be kept: it tells the
// store index a decision was made at, and whether a decision made at an
// index still holds without reading the store (authorization.Service). The
// data path uses it to re-check a grant's creator on every request cheaply.
type decisionKeeper interface {
	AllowedAt(ctx context.Context, p identity.Principal, action, scope string) (bool, uint64, error)
	Unchanged(index uint64) bool
}

// Service is the Microsoft.Compute provider. Set the fields, then call
// Recover once before use.
type Service struct {
	Store  store.Store
	Tenant *tenant.Service
	Engine *blockdev.Engine
	Authz  Authorizer
	Clock  clock.Clock
	Logger *slog.Logger
	// GrantKey signs access-grant tokens (at least 32 random bytes, kept
	// across restarts so that grants survive them).
	GrantKey []byte
	// Home, when set, is called in the transaction that records a new
	// disk, to record that its volume lives on this node (several nodes
	// share the store: cluster.SetHome).
	Home func(ctx context.Context, tx store.Tx, diskID, uniqueID string) error
	// ForgetHome, when set, is called in the transaction that deletes a
	// disk's record, to delete what Home recorded (cluster.DeleteHome).
	ForgetHome func(ctx context.Context, tx store.Tx, diskID, uniqueID string) error
	// DeleteVolumeElsewhere, when set, is called in the transaction that
	// deletes a disk's record when this node may not hold its volume (a
	// resource group's deletion runs on any node): when another node
	// holds the volume uniqueID it queues the volume's deletion there
	// (DeleteVolumeTask, on that node) and reports true; false: the
	// volume is this node's to delete.
	DeleteVolumeElsewhere func(ctx context.Context, tx store.Tx, uniqueID string) (bool, error)
	// VolumeElsewhere, when set, reports, read in tx, whether another node
	// holds the volume uniqueID (cluster.VolumeHome): Recover leaves the
	// creations of such disks, and of snapshots of them, to that node,
	// which may be making them while this one starts.
	VolumeElsewhere func(ctx context.Context, tx store.Tx, uniqueID string) (bool, error)
	// Finishing, when set, returns the resources (IDs, lower-cased) whose
	// creation a durable operation will finish (FinishDisk,
	// FinishSnapshot): Recover leaves those to it.
	Finishing func(ctx context.Context) (map[string]bool, error)
	// HydrationObserver, when set, hears when the hydration of disk
	// diskID stalls for lack of space (stall is the error) and when it
	// moves again or ends (stall nil).
	HydrationObserver func(ctx context.Context, diskID string, stall *resource.Error)

	mu      sync.Mutex
	grants  map[string]*liveGrant // grant ID → state, a cache of the records
	revoked map[string]bool       // grants revoked by this process
	pending pendingRead           // FailStranded's last read of the records
	wg      sync.WaitGroup
	stop    chan struct{}
	closed  bool
}

func (s *Service) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Service) now() time.Time { return s.Clock.Now().UTC() }

// SKU is a disk or snapshot SKU.
type SKU struct {
	Name string `json:"name"`
	Tier string `json:"tier,omitempty"`
}

// CreationData says how a disk or snapshot was made.
type CreationData struct {
	CreateOption      string `json:"createOption"`
	SourceResourceID  string `json:"sourceResourceId,omitempty"`
	SourceUniqueID    string `json:"sourceUniqueId,omitempty"`
	UploadSizeBytes   int64  `json:"uploadSizeBytes,omitempty"`
	LogicalSectorSize int    `json:"logicalSectorSize,omitempty"`
}

// Options are the optional properties Coffer keeps and reports but does not
// act on.
type Options struct {
	OSType              string `json:"osType,omitempty"`
	HyperVGeneration    string `json:"hyperVGeneration,omitempty"`
	NetworkAccessPolicy string `json:"networkAccessPolicy,omitempty"`
	PublicNetworkAccess string `json:"publicNetworkAccess,omitempty"`
	DataAccessAuthMode  string `json:"dataAccessAuthMode,omitempty"`
	EncryptionType      string `json:"encryptionType,omitempty"`
	Tier                string `json:"tier,omitempty"`
	DiskIOPSReadWrite   int64  `json:"diskIOPSReadWrite,omitempty"`
	DiskMBpsReadWrite   int64  `json:"diskMBpsReadWrite,omitempty"`
	BurstingEnabled     *bool  `json:"burstingEnabled,omitempty"`
	MaxShares           int    `json:"maxShares,omitempty"`
}

// Access is the access of a grant.
type Access string

// Accesses.
const (
	AccessRead  Access = "Read"
	AccessWrite Access = "Write"
)

// Grant is an access grant recorded on a disk or snapshot.
type Grant struct {
	ID        string    `json:"id"`
	Access    Access    `json:"access"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	CreatedBy string    `json:"createdBy"`
	// OutlivesCreator grants stand alone: they are not checked against
	// their creator's rights when used, and survive its deletion.
	OutlivesCreator bool `json:"outlivesCreator,omitempty"`
}

// Disk is a managed disk record.
type Disk struct {
	ID                string            `json:"id"`
	Name              string            `json:"name"`
	Location          string            `json:"location"`
	Tags              map[string]string `json:"tags,omitempty"`
	SKU               SKU               `json:"sku"`
	Zones             []string          `json:"zones,omitempty"`
	CreationData      CreationData      `json:"creationData"`
	DiskSizeGB        int64             `json:"diskSizeGB"`
	DiskSizeBytes     int64             `json:"diskSizeBytes"`
	UniqueID          string            `json:"uniqueId"`
	TimeCreated       time.Time         `json:"timeCreated"`
	ProvisioningState string            `json:"provisioningState"`
	Options           Options           `json:"options"`
	SystemData        tenant.SystemData `json:"systemData"`
	Grants            []Grant           `json:"grants,omitempty"`
	// Uploading is set for an Upload disk until the first endGetAccess
	// after a write grant (ReadyToUpload/ActiveUpload).
	Uploading bool `json:"uploading,omitempty"`
	// TempSnapshot is the block-engine snapshot a copy of a disk hydrates
	// from; it is deleted once the copy has hydrated.
	TempSnapshot string `json:"tempSnapshot,omitempty"`
	// FailedError is why provisioning failed.
	FailedError *resource.Error `json:"failedError,omitempty"`
	// HydrationError is set while the disk's hydration (from its source
	// snapshot) is stalled for lack of space; it resumes by itself.
	HydrationError *resource.Error `json:"hydrationError,omitempty"`
	// ETag is the store index of the record.
	ETag uint64 `json:"-"`
}

// Snapshot is a snapshot record.
type Snapshot struct {
	ID                string            `json:"id"`
	Name              string            `json:"name"`
	Location          string            `json:"location"`
	Tags              map[string]string `json:"tags,omitempty"`
	SKU               SKU               `json:"sku"`
	CreationData      CreationData      `json:"creationData"`
	Incremental       bool              `json:"incremental"`
	DiskSizeGB        int64             `json:"diskSizeGB"`
	DiskSizeBytes     int64             `json:"diskSizeBytes"`
	UniqueID          string            `json:"uniqueId"`
	FamilyID          string            `json:"incrementalSnapshotFamilyId,omitempty"`
	TimeCreated       time.Time         `json:"timeCreated"`
	ProvisioningState string            `json:"provisioningState"`
	Options           Options           `json:"options"`
	SystemData        tenant.SystemData `json:"systemData"`
	Grants            []Grant           `json:"grants,omitempty"`
	// ChangedBytes is how much data the snapshot stored that its parent in
	// the block engine did not have (blocks written × block size).
	ChangedBytes int64           `json:"changedBytes"`
	FailedError  *resource.Error `json:"failedError,omitempty"`
	ETag         uint64          `json:"-"`
}

// activeGrants returns the grants not expired at now.
func activeGrants(gs []Grant, now time.Time) []Grant {
	var out []Grant
	for _, g := range gs {
		if now.Before(g.Expires) {
			out = append(out, g)
		}
	}
	return out
}

// State returns the diskState at now.
func (d Disk) State(now time.Time) string {
	act := activeGrants(d.Grants, now)
	if d.Uploading {
		for _, g := range act {
			if g.Access == AccessWrite {
				return DiskActiveUpload
			}
		}
		return DiskReadyToUpload
	}
	if len(act) > 0 {
		return DiskActiveSAS
	}
	return DiskUnattached
}

// ActiveGrants returns the unexpired grants of the disk.
func (d Disk) ActiveGrants(now time.Time) []Grant { return activeGrants(d.Grants, now) }

// State returns the snapshot's diskState at now (ActiveSAS while a grant is
// active).
func (sn Snapshot) State(now time.Time) string {
	if len(activeGrants(sn.Grants, now)) > 0 {
		return DiskActiveSAS
	}
	return DiskUnattached
}

// AccessState is the snapshotAccessState Azure reports.
func (sn Snapshot) AccessState() string {
	if sn.ProvisioningState == StateSucceeded {
		return "Available"
	}
	return "Pending"
}

// --- errors ---

// Errors for conditions callers may test with errors.Is. The API maps them
// through the *resource.Error each is wrapped in.
var (
	// ErrAccessDenied is wrapped by OpenAccess and Access.Check when a token
	// is expired, revoked or for another resource.
	ErrAccessDenied = errors.New("access grant expired or revoked")
	// ErrUnknownGrant is wrapped when a token is malformed or unknown.
	ErrUnknownGrant = errors.New("unknown access grant")
	// ErrReadOnly is wrapped when a read grant is used to write.
	ErrReadOnly = errors.New("access grant is read-only")
	// ErrCreatorDenied is wrapped (with ErrAccessDenied) when a grant is
	// used whose creator no longer holds the rights the use needs.
	ErrCreatorDenied = errors.New("the principal that created the access grant no longer holds the rights it needs")
)

func invalidParameter(target, format string, args ...any) *resource.Error {
	return resource.Errorf(resource.KindBadRequest, "InvalidParameter", format, args...).WithTarget(target)
}

func notAllowed(format string, args ...any) *resource.Error {
	return resource.Errorf(resource.KindConflict, "OperationNotAllowed", format, args...)
}

// decide asks the decision point about p's need; without an Authorizer
// (tests) everything is allowed.
func (s *Service) decide(ctx context.Context, p identity.Principal, need authorization.Need) (authorization.Decision, error) {
	if s.Authz == nil {
		return authorization.Decision{Allowed: true}, nil
	}
	d, err := s.Authz.Decide(ctx, p, need.Action, need.Scope)
	if err != nil {
		return d, fmt.Errorf("authorize %s at %s: %w", need.Action, need.Scope, err)
	}
	return d, nil
}

// require checks a need only the operation knows, for p: nil, or Azure's
// 403 AuthorizationFailed.
func (s *Service) require(ctx context.Context, p identity.Principal, need authorization.Need) error {
	d, err := s.decide(ctx, p, need)
	if err != nil {
		return err
	}
	if !d.Allowed {
		return authorization.Forbidden(p, d)
	}
	return nil
}

// requireLinked checks, for a request p may make (own), that p may also
// use the resource it reads from (linked): Azure's linked access check,
// refused with 403 LinkedAuthorizationFailed.
func (s *Service) requireLinked(ctx context.Context, p identity.Principal, own, linked authorization.Need) error {
	d, err := s.decide(ctx, p, linked)
	if err != nil {
		return err
	}
	if !d.Allowed {
		return authorization.LinkedForbidden(p, own, d)
	}
	return nil
}

// action builds the RBAC action of kind on a resource type.
func action(typ, kind string) string { return "Microsoft.Compute/" + typ + "/" + kind }

// --- IDs ---

// ParseID parses and checks a disk or snapshot ID (typ is TypeDisks or
// TypeSnapshots). The name must follow Azure's rule.
func ParseID(typ, s string) (resource.ID, error) {
	id, err := resource.Parse(s)
	if err != nil || id.ResourceGroup == "" || !strings.EqualFold(id.Provider, Provider) || len(id.Types) != 1 || !strings.EqualFold(id.Types[0], typ) {
		return resource.ID{}, resource.Errorf(resource.KindBadRequest, "InvalidResourceId", "The resource ID '%s' is not a valid %s ID.", s, typ)
	}
	id.Types[0] = typ
	if err := resource.DiskNameRule.Check("InvalidResourceName", id.Name()); err != nil {
		return resource.ID{}, err
	}
	return id, nil
}

// DiskID returns the ID of a disk.
func DiskID(sub, rg, name string) resource.ID {
	return resource.ID{Subscription: sub, ResourceGroup: rg, Provider: Provider, Types: []string{TypeDisks}, Names: []string{name}}
}

// SnapshotID returns the ID of a snapshot.
func SnapshotID(sub, rg, name string) resource.ID {
	return resource.ID{Subscription: sub, ResourceGroup: rg, Provider: Provider, Types: []string{TypeSnapshots}, Names: []string{name}}
}

// --- store helpers ---

func getJSON(ctx context.Context, tx store.Tx, kind, key string, v any) (uint64, error) {
	o, err := tx.Get(ctx, kind, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(o.Data, v); err != nil {
		return 0, fmt.Errorf("decode %s %s: %w", kind, key, err)
	}
	return o.ModifyIndex, nil
}

func putJSON(ctx context.Context, tx store.Tx, kind, key string, v any) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s %s: %w", kind, key, err)
	}
	o := store.Object{Kind: kind, Key: key, Data: b}
	if err := tx.Put(ctx, &o, store.PutOptions{}); err != nil {
		return 0, fmt.Errorf("store %s %s: %w", kind, key, err)
	}
	return o.ModifyIndex, nil
}

func (s *Service) getDisk(ctx context.Context, tx store.Tx, id resource.ID) (Disk, error) {
	return getRecord[Disk](ctx, tx, KindDisk, id)
}

func (s *Service) putDisk(ctx context.Context, tx store.Tx, d *Disk) error {
	return putRecord(ctx, tx, KindDisk, d.ID, d)
}

func (s *Service) getSnapshot(ctx context.Context, tx store.Tx, id resource.ID) (Snapshot, error) {
	return getRecord[Snapshot](ctx, tx, KindSnapshot, id)
}

func (s *Service) putSnapshot(ctx context.Context, tx store.Tx, sn *Snapshot) error {
	return putRecord(ctx, tx, KindSnapshot, sn.ID, sn)
}

// etagged is a stored record that carries its store index as its ETag.
type etagged interface{ setETag(uint64) }

func (d *Disk) setETag(i uint64)      { d.ETag = i }
func (sn *Snapshot) setETag(i uint64) { sn.ETag = i }

// getRecord reads the record of kind at id, with its ETag; a missing one is
// the ARM 404 for id.
func getRecord[T any, P interface {
	*T
	etagged
}](ctx context.Context, tx store.Tx, kind string, id resource.ID) (T, error) {
	var v T
	idx, err := getJSON(ctx, tx, kind, id.Key(), &v)
	if errors.Is(err, store.ErrNotFound) {
		return v, resource.NotFound(id)
	}
	if err != nil {
		return v, err
	}
	P(&v).setETag(idx)
	return v, nil
}

// putRecord stores v under the canonical key of its resource ID and sets
// its ETag to the new index.
func putRecord(ctx context.Context, tx store.Tx, kind, rawID string, v etagged) error {
	id, err := resource.Parse(rawID)
	if err != nil {
		return fmt.Errorf("store %s %s: %w", kind, rawID, err)
	}
	idx, err := putJSON(ctx, tx, kind, id.Key(), v)
	v.setETag(idx)
	return err
}

// updateRecord reads the record of kind at id in tx, lets fn change it and
// stores it; an error from fn leaves the record as it was.
func updateRecord[T any, P interface {
	*T
	etagged
}](ctx context.Context, tx store.Tx, kind string, id resource.ID, fn func(P) error) (T, error) {
	v, err := getRecord[T, P](ctx, tx, kind, id)
	if err != nil {
		return v, err
	}
	if err := fn(&v); err != nil {
		return v, err
	}
	return v, putRecord(ctx, tx, kind, id.String(), P(&v))
}

// markRecord is updateRecord in a transaction of its own, for fn that
// cannot fail.
func markRecord[T any, P interface {
	*T
	etagged
}](ctx context.Context, s *Service, kind string, id resource.ID, fn func(P)) (T, error) {
	var v T
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		var err error
		v, err = updateRecord[T, P](ctx, tx, kind, id, func(x P) error { fn(x); return nil })
		return err
	})
	return v, err
}

// deleteRecord deletes the record of kind stored for rawID (noun names it
// in errors) and the pointers of its grants.
func (s *Service) deleteRecord(ctx context.Context, kind, noun, rawID string, grants []Grant) error {
	return s.Store.Update(ctx, func(tx store.Tx) error {
		return deleteRecordTx(ctx, tx, kind, noun, rawID, grants)
	})
}

// deleteRecordTx is deleteRecord in tx.
func deleteRecordTx(ctx context.Context, tx store.Tx, kind, noun, rawID string, grants []Grant) error {
	id, err := resource.Parse(rawID)
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", noun, rawID, err)
	}
	if err := deleteGrantPointers(ctx, tx, grants); err != nil {
		return err
	}
	if err := tx.Delete(ctx, kind, id.Key()); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete %s %s: %w", noun, rawID, err)
	}
	return nil
}

// checkGroup returns the group's error if the group of id does not exist.
func (s *Service) checkGroup(ctx context.Context, tx store.Tx, id resource.ID) error {
	g, err := s.Tenant.GetGroup(ctx, tx, id)
	if err != nil {
		return err
	}
	if g.ProvisioningState == "Deleting" {
		return resource.Errorf(resource.KindConflict, "ResourceGroupBeingDeleted",
			"The resource group '%s' is in deprovisioning state and cannot perform this operation.", id.ResourceGroup)
	}
	return nil
}

func sizeGB(bytes int64) int64 { return (bytes + GiB - 1) / GiB }

func checkSKU(name string, allowed []string, target string) (string, error) {
	for _, a := range allowed {
		if strings.EqualFold(a, name) {
			return a, nil
		}
	}
	return "", invalidParameter(target, "The value '%s' of parameter '%s' is not valid. Allowed values are '%s'.", name, target, strings.Join(allowed, "', '"))
}

// ListDisks lists the disks under scope (a subscription or a group), in ID
// order. Callers authorize the list at scope.
func (s *Service) ListDisks(ctx context.Context, scope resource.ID) ([]Disk, error) {
	return listScope[Disk](ctx, s, KindDisk, scope)
}

// ListSnapshots lists the snapshots under scope (a subscription or a
// group), in ID order. Callers authorize the list at scope.
func (s *Service) ListSnapshots(ctx context.Context, scope resource.ID) ([]Snapshot, error) {
	return listScope[Snapshot](ctx, s, KindSnapshot, scope)
}

// listScope lists the records of kind under scope (a subscription or a
// group) after checking that scope exists.
func listScope[T any, P interface {
	*T
	etagged
}](ctx context.Context, s *Service, kind string, scope resource.ID) ([]T, error) {
	var out []T
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if scope.ResourceGroup != "" {
			if _, err := s.Tenant.GetGroup(ctx, tx, scope); err != nil {
				return err
			}
		} else if _, err := s.Tenant.GetSubscription(ctx, tx, scope.Subscription); err != nil {
			return err
		}
		var err error
		out, err = listRecords[T, P](ctx, tx, kind, scope.Key()+"/")
		return err
	})
	return out, err
}

func (s *Service) listSnapshots(ctx context.Context, tx store.Tx, prefix string) ([]Snapshot, error) {
	return listRecords[Snapshot](ctx, tx, KindSnapshot, prefix)
}

// listRecords reads the records of kind whose keys start with prefix, in
// key order, each with its ETag.
func listRecords[T any, P interface {
	*T
	etagged
}](ctx context.Context, tx store.Tx, kind, prefix string) ([]T, error) {
	objs, err := tx.List(ctx, store.Query{Kind: kind, Prefix: prefix})
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		var v T
		if err := json.Unmarshal(o.Data, &v); err != nil {
			return nil, fmt.Errorf("decode %s %s: %w", kind, o.Key, err)
		}
		P(&v).setETag(o.ModifyIndex)
		out = append(out, v)
	}
	return out, nil
}

// GetDisk returns a disk (the caller authorized reading it).
func (s *Service) GetDisk(ctx context.Context, id resource.ID) (Disk, error) {
	return recordTx[Disk](ctx, s, s.Store.View, KindDisk, id, nil)
}

// GetSnapshot returns a snapshot (the caller authorized reading it).
func (s *Service) GetSnapshot(ctx context.Context, id resource.ID) (Snapshot, error) {
	return recordTx[Snapshot](ctx, s, s.Store.View, KindSnapshot, id, nil)
}

// recordTx, in a transaction that run opens (s.Store.View or
// s.Store.Update), checks that the resource group of id exists, reads the
// record of kind at id and, unless fn is nil, hands it to fn. It returns
// the record as fn left it.
func recordTx[T any, P interface {
	*T
	etagged
}](ctx context.Context, s *Service, run func(context.Context, func(store.Tx) error) error,
	kind string, id resource.ID, fn func(tx store.Tx, v P) error) (T, error) {
	var v T
	err := run(ctx, func(tx store.Tx) error {
		if err := s.checkGroupExists(ctx, tx, id); err != nil {
			return err
		}
		var err error
		if v, err = getRecord[T, P](ctx, tx, kind, id); err != nil || fn == nil {
			return err
		}
		return fn(tx, &v)
	})
	return v, err
}

func (s *Service) checkGroupExists(ctx context.Context, tx store.Tx, id resource.ID) error {
	_, err := s.Tenant.GetGroup(ctx, tx, id)
	return err
}

// systemData stamps creation or modification.
func stamp(sd *tenant.SystemData, p identity.Principal, now time.Time, create bool) {
	name, typ := p.DisplayName, p.Kind.PrincipalType()
	if name == "" {
		name = p.ID
	}
	if typ == "" {
		typ = "Application"
	}
	if create {
		sd.CreatedBy, sd.CreatedByType, sd.CreatedAt = name, typ, now
	}
	sd.LastModifiedBy, sd.LastModifiedByType, sd.LastModifiedAt = name, typ, now
}

// checkPut runs the checks a disk PUT and a snapshot PUT share, in Azure's
// order: the resource's name, location and tags are valid, the SKU
// (Standard_LRS when absent) is one of skus, and a createOption is given.
// It returns the canonical location and SKU.
func (s *Service) checkPut(id resource.ID, typ string, skus []string, location, skuIn string, tags map[string]string, cd CreationData) (loc, sku string, err error) {
	if err := resource.DiskNameRule.Check("InvalidResourceName", id.Name()); err != nil {
		return "", "", err
	}
	loc, err = s.Tenant.CheckLocation(location, "LocationNotAvailableForResourceType", "resource type 'Microsoft.Compute/"+typ+"'")
	if err != nil {
		return "", "", err
	}
	if err := resource.CheckTags(tags); err != nil {
		return "", "", err
	}
	sku = "Standard_LRS"
	if skuIn != "" {
		if sku, err = checkSKU(skuIn, skus, "sku.name"); err != nil {
			return "", "", err
		}
	}
	if cd.CreateOption == "" {
		return "", "", invalidParameter("creationData.createOption", "Required parameter 'createOption' is missing (null).")
	}
	return loc, sku, nil
}
