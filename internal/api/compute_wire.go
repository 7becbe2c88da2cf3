package api

import (
	"time"

	"coffer/internal/compute"
	"coffer/internal/resource"
)

// Wire shapes of Microsoft.Compute disks and snapshots (armcompute's Disk,
// Snapshot, CreationData, Encryption).

type skuWire struct {
	Name string `json:"name"`
	Tier string `json:"tier,omitempty"`
}

type creationWire struct {
	CreateOption      string `json:"createOption"`
	SourceResourceID  string `json:"sourceResourceId,omitempty"`
	SourceUniqueID    string `json:"sourceUniqueId,omitempty"`
	SourceURI         string `json:"sourceUri,omitempty"`
	StorageAccountID  string `json:"storageAccountId,omitempty"`
	UploadSizeBytes   int64  `json:"uploadSizeBytes,omitempty"`
	LogicalSectorSize int    `json:"logicalSectorSize,omitempty"`
}

type encryptionWire struct {
	Type string `json:"type,omitempty"`
}

type diskPropsWire struct {
	CreationData        *creationWire   `json:"creationData,omitempty"`
	DiskSizeGB          *int64          `json:"diskSizeGB,omitempty"`
	DiskSizeBytes       int64           `json:"diskSizeBytes,omitempty"`
	UniqueID            string          `json:"uniqueId,omitempty"`
	TimeCreated         string          `json:"timeCreated,omitempty"`
	ProvisioningState   string          `json:"provisioningState,omitempty"`
	DiskState           string          `json:"diskState,omitempty"`
	OSType              string          `json:"osType,omitempty"`
	HyperVGeneration    string          `json:"hyperVGeneration,omitempty"`
	Encryption          *encryptionWire `json:"encryption,omitempty"`
	NetworkAccessPolicy string          `json:"networkAccessPolicy,omitempty"`
	PublicNetworkAccess string          `json:"publicNetworkAccess,omitempty"`
	DataAccessAuthMode  string          `json:"dataAccessAuthMode,omitempty"`
	Tier                string          `json:"tier,omitempty"`
	DiskIOPSReadWrite   int64           `json:"diskIOPSReadWrite,omitempty"`
	DiskMBpsReadWrite   int64           `json:"diskMBpsReadWrite,omitempty"`
	BurstingEnabled     *bool           `json:"burstingEnabled,omitempty"`
	MaxShares           int             `json:"maxShares,omitempty"`
	// Snapshot-only properties.
	Incremental                 *bool  `json:"incremental,omitempty"`
	IncrementalSnapshotFamilyID string `json:"incrementalSnapshotFamilyId,omitempty"`
	SnapshotAccessState         string `json:"snapshotAccessState,omitempty"`
	CompletionPercent           *int   `json:"completionPercent,omitempty"`
	// HydrationError (Coffer's) is set while a restored or copied disk
	// cannot hydrate for lack of space; it resumes by itself.
	HydrationError *resource.Error `json:"hydrationError,omitempty"`
}

func (p *diskPropsWire) options() compute.Options {
	o := compute.Options{OSType: p.OSType, HyperVGeneration: p.HyperVGeneration, NetworkAccessPolicy: p.NetworkAccessPolicy,
		PublicNetworkAccess: p.PublicNetworkAccess, DataAccessAuthMode: p.DataAccessAuthMode, Tier: p.Tier,
		DiskIOPSReadWrite: p.DiskIOPSReadWrite, DiskMBpsReadWrite: p.DiskMBpsReadWrite, BurstingEnabled: p.BurstingEnabled, MaxShares: p.MaxShares}
	if p.Encryption != nil {
		o.EncryptionType = p.Encryption.Type
	}
	return o
}

type diskWire struct {
	ID         string            `json:"id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Type       string            `json:"type,omitempty"`
	Location   string            `json:"location,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	SKU        *skuWire          `json:"sku,omitempty"`
	Zones      []string          `json:"zones,omitempty"`
	ManagedBy  string            `json:"managedBy,omitempty"`
	Properties *diskPropsWire    `json:"properties,omitempty"`
}

func missing(target string) error {
	return resource.Errorf(resource.KindBadRequest, "InvalidParameter", "Required parameter '%s' is missing (null).", target).WithTarget(target)
}

func (w diskWire) input() (compute.DiskInput, error) {
	if w.Location == "" {
		return compute.DiskInput{}, resource.Errorf(resource.KindBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	if w.Properties == nil {
		return compute.DiskInput{}, missing("properties")
	}
	if w.Properties.CreationData == nil {
		return compute.DiskInput{}, missing("creationData")
	}
	cd := w.Properties.CreationData
	if cd.SourceURI != "" || cd.StorageAccountID != "" {
		return compute.DiskInput{}, resource.Errorf(resource.KindBadRequest, "InvalidParameter",
			"Importing from a storage blob (sourceUri) is not supported by Coffer; create an 'Upload' disk and write its pages instead.").WithTarget("creationData.sourceUri")
	}
	in := compute.DiskInput{Location: w.Location, Tags: w.Tags, Zones: w.Zones, Options: w.Properties.options(),
		CreationData: compute.CreationData{CreateOption: cd.CreateOption, SourceResourceID: cd.SourceResourceID,
			UploadSizeBytes: cd.UploadSizeBytes, LogicalSectorSize: cd.LogicalSectorSize}}
	if w.SKU != nil {
		in.SKU = w.SKU.Name
	}
	if w.Properties.DiskSizeGB != nil {
		in.DiskSizeGB = *w.Properties.DiskSizeGB
		if err := compute.CheckDiskSizeGB(in.DiskSizeGB); err != nil {
			return in, err
		}
	}
	return in, nil
}

func creationJSON(c compute.CreationData) *creationWire {
	return &creationWire{CreateOption: c.CreateOption, SourceResourceID: c.SourceResourceID, SourceUniqueID: c.SourceUniqueID,
		UploadSizeBytes: c.UploadSizeBytes, LogicalSectorSize: c.LogicalSectorSize}
}

func optionsJSON(p *diskPropsWire, o compute.Options) {
	p.OSType, p.HyperVGeneration, p.NetworkAccessPolicy, p.PublicNetworkAccess = o.OSType, o.HyperVGeneration, o.NetworkAccessPolicy, o.PublicNetworkAccess
	p.DataAccessAuthMode, p.Tier, p.DiskIOPSReadWrite, p.DiskMBpsReadWrite = o.DataAccessAuthMode, o.Tier, o.DiskIOPSReadWrite, o.DiskMBpsReadWrite
	p.BurstingEnabled, p.MaxShares = o.BurstingEnabled, o.MaxShares
	if o.EncryptionType != "" {
		p.Encryption = &encryptionWire{Type: o.EncryptionType}
	}
}

func diskJSON(d compute.Disk, now time.Time) diskWire {
	size := d.DiskSizeGB
	p := &diskPropsWire{CreationData: creationJSON(d.CreationData), DiskSizeGB: &size, DiskSizeBytes: d.DiskSizeBytes,
		UniqueID: d.UniqueID, TimeCreated: FormatTime(d.TimeCreated), ProvisioningState: d.ProvisioningState, DiskState: d.State(now),
		HydrationError: d.HydrationError}
	optionsJSON(p, d.Options)
	sku := &skuWire{Name: d.SKU.Name, Tier: d.SKU.Tier}
	return diskWire{ID: d.ID, Name: d.Name, Type: "Microsoft.Compute/disks", Location: d.Location, Tags: d.Tags, SKU: sku, Zones: d.Zones, Properties: p}
}

type snapshotWire struct {
	ID         string            `json:"id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Type       string            `json:"type,omitempty"`
	Location   string            `json:"location,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	SKU        *skuWire          `json:"sku,omitempty"`
	ManagedBy  string            `json:"managedBy,omitempty"`
	Properties *diskPropsWire    `json:"properties,omitempty"`
}

func (w snapshotWire) input() (compute.SnapshotInput, error) {
	if w.Location == "" {
		return compute.SnapshotInput{}, resource.Errorf(resource.KindBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	if w.Properties == nil {
		return compute.SnapshotInput{}, missing("properties")
	}
	if w.Properties.CreationData == nil {
		return compute.SnapshotInput{}, missing("creationData")
	}
	cd := w.Properties.CreationData
	in := compute.SnapshotInput{Location: w.Location, Tags: w.Tags, Options: w.Properties.options(),
		CreationData: compute.CreationData{CreateOption: cd.CreateOption, SourceResourceID: cd.SourceResourceID}}
	if w.SKU != nil {
		in.SKU = w.SKU.Name
	}
	if w.Properties.Incremental != nil {
		in.Incremental = *w.Properties.Incremental
	}
	return in, nil
}

func snapshotJSON(sn compute.Snapshot, now time.Time) snapshotWire {
	size, inc := sn.DiskSizeGB, sn.Incremental
	pct := 0
	if sn.ProvisioningState == compute.StateSucceeded {
		pct = 100
	}
	p := &diskPropsWire{CreationData: creationJSON(sn.CreationData), DiskSizeGB: &size, DiskSizeBytes: sn.DiskSizeBytes,
		UniqueID: sn.UniqueID, TimeCreated: FormatTime(sn.TimeCreated), ProvisioningState: sn.ProvisioningState, DiskState: sn.State(now),
		Incremental: &inc, IncrementalSnapshotFamilyID: sn.FamilyID, SnapshotAccessState: sn.AccessState(), CompletionPercent: &pct}
	optionsJSON(p, sn.Options)
	return snapshotWire{ID: sn.ID, Name: sn.Name, Type: "Microsoft.Compute/snapshots", Location: sn.Location, Tags: sn.Tags,
		SKU: &skuWire{Name: sn.SKU.Name, Tier: sn.SKU.Tier}, Properties: p}
}

// DiskBody is a disk's ARM body as the API returns it (the portal's JSON
// view shows the same).
func DiskBody(d compute.Disk, now time.Time) any { return diskJSON(d, now) }

// SnapshotBody is a snapshot's ARM body as the API returns it.
func SnapshotBody(sn compute.Snapshot, now time.Time) any { return snapshotJSON(sn, now) }
