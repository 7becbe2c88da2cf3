package dataprotection

import (
	"encoding/json"
	"time"

	"coffer/internal/job"
)

// ARM resource types of Microsoft.DataProtection.
const (
	Namespace                  = "Microsoft.DataProtection"
	VaultResourceType          = "Microsoft.DataProtection/backupVaults"
	InstanceType               = "Microsoft.DataProtection/backupVaults/backupInstances"
	RecoveryPointType          = "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints"
	kindVault                  = VaultResourceType
	kindPolicy                 = PolicyResourceType
	kindInstance               = InstanceType
	kindRecoveryPoint          = RecoveryPointType
	ObjectTypeDatasource       = "Datasource"
	ObjectTypeInstance         = "BackupInstance"
	ObjectTypeOpStoreParams    = "AzureOperationalStoreParameters"
	ObjectTypeDiscreteRP       = "AzureBackupDiscreteRecoveryPoint"
	ObjectTypeRPRestore        = "AzureBackupRecoveryPointBasedRestoreRequest"
	ObjectTypeRestoreTarget    = "RestoreTargetInfo"
	ObjectTypeJobInfo          = "OperationJobExtendedInfo"
	RecoveryOptionFailIfExists = "FailIfExists"
)

// Protection states (currentProtectionState / protectionStatus.status).
const (
	StateConfiguring       = "ConfiguringProtection"
	StateConfiguringFailed = "ConfiguringProtectionFailed"
	StateConfigured        = "ProtectionConfigured"
	StateStopped           = "ProtectionStopped"
	StateSuspended         = "BackupSchedulesSuspended"
	StateProtectionError   = "ProtectionError"
)

// SystemData is ARM's systemData block.
type SystemData struct {
	CreatedBy          string    `json:"createdBy,omitempty"`
	CreatedByType      string    `json:"createdByType,omitempty"`
	CreatedAt          time.Time `json:"createdAt,omitzero"`
	LastModifiedBy     string    `json:"lastModifiedBy,omitempty"`
	LastModifiedByType string    `json:"lastModifiedByType,omitempty"`
	LastModifiedAt     time.Time `json:"lastModifiedAt,omitzero"`
}

// VaultResource is BackupVaultResource.
type VaultResource struct {
	ID         string            `json:"id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Type       string            `json:"type,omitempty"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	ETag       string            `json:"eTag,omitempty"`
	Identity   *IdentityDetails  `json:"identity,omitempty"`
	Properties VaultProperties   `json:"properties"`
	SystemData *SystemData       `json:"systemData,omitempty"`
}

// IdentityDetails is DppIdentityDetails.
type IdentityDetails struct {
	Type                   string                     `json:"type"`
	PrincipalID            string                     `json:"principalId,omitempty"`
	TenantID               string                     `json:"tenantId,omitempty"`
	UserAssignedIdentities map[string]json.RawMessage `json:"userAssignedIdentities,omitempty"`
}

// VaultProperties is BackupVault. The settings Coffer does not act on
// (feature, monitoring, security) are kept as sent and reported back.
type VaultProperties struct {
	StorageSettings                 []StorageSetting `json:"storageSettings"`
	FeatureSettings                 json.RawMessage  `json:"featureSettings,omitempty"`
	MonitoringSettings              json.RawMessage  `json:"monitoringSettings,omitempty"`
	SecuritySettings                json.RawMessage  `json:"securitySettings,omitempty"`
	ReplicatedRegions               []string         `json:"replicatedRegions,omitempty"`
	ProvisioningState               string           `json:"provisioningState,omitempty"`
	ResourceMoveState               string           `json:"resourceMoveState,omitempty"`
	SecureScore                     string           `json:"secureScore,omitempty"`
	IsVaultProtectedByResourceGuard bool             `json:"isVaultProtectedByResourceGuard"`
}

// StorageSetting is a vault's storage setting (it does not apply to disk
// backups, which stay as snapshots in the operational tier).
type StorageSetting struct {
	DatastoreType string `json:"datastoreType"`
	Type          string `json:"type"`
}

// InstanceResource is BackupInstanceResource.
type InstanceResource struct {
	ID         string            `json:"id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Type       string            `json:"type,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	Properties Instance          `json:"properties"`
	SystemData *SystemData       `json:"systemData,omitempty"`

	// LastChange is the latest change of its protection with its reason
	// (Coffer's; not on the wire, which is Azure's).
	LastChange *ChangeNote `json:"-"`
}

// Instance is BackupInstance. Property names match case-insensitively on
// input (encoding/json does), so resourceId and resourceID both work.
type Instance struct {
	ObjectType             string               `json:"objectType"`
	FriendlyName           string               `json:"friendlyName,omitempty"`
	DataSourceInfo         Datasource           `json:"dataSourceInfo"`
	DataSourceSetInfo      *Datasource          `json:"dataSourceSetInfo,omitempty"`
	PolicyInfo             PolicyInfo           `json:"policyInfo"`
	ValidationType         string               `json:"validationType,omitempty"`
	IdentityDetails        json.RawMessage      `json:"identityDetails,omitempty"`
	CurrentProtectionState string               `json:"currentProtectionState,omitempty"`
	ProtectionStatus       *ProtectionStatus    `json:"protectionStatus,omitempty"`
	ProtectionErrorDetails *job.UserFacingError `json:"protectionErrorDetails,omitempty"`
	ProvisioningState      string               `json:"provisioningState,omitempty"`
}

// ProtectionStatus is ProtectionStatusDetails.
type ProtectionStatus struct {
	Status       string               `json:"status"`
	ErrorDetails *job.UserFacingError `json:"errorDetails,omitempty"`
}

// Datasource names the protected (or restored) disk.
type Datasource struct {
	ObjectType       string `json:"objectType,omitempty"`
	DatasourceType   string `json:"datasourceType,omitempty"`
	ResourceID       string `json:"resourceID"`
	ResourceLocation string `json:"resourceLocation,omitempty"`
	ResourceName     string `json:"resourceName,omitempty"`
	ResourceType     string `json:"resourceType,omitempty"`
	ResourceURI      string `json:"resourceUri,omitempty"`
}

// PolicyInfo is a backup instance's policy and parameters.
type PolicyInfo struct {
	PolicyID         string            `json:"policyId"`
	PolicyVersion    string            `json:"policyVersion,omitempty"`
	PolicyParameters *PolicyParameters `json:"policyParameters,omitempty"`
}

// PolicyParameters carries the snapshot resource group.
type PolicyParameters struct {
	DataStoreParametersList        []DataStoreParameters `json:"dataStoreParametersList,omitempty"`
	BackupDatasourceParametersList json.RawMessage       `json:"backupDatasourceParametersList,omitempty"`
}

// DataStoreParameters is AzureOperationalStoreParameters.
type DataStoreParameters struct {
	ObjectType      string `json:"objectType"`
	DataStoreType   string `json:"dataStoreType"`
	ResourceGroupID string `json:"resourceGroupId,omitempty"`
}

// RecoveryPointResource is AzureBackupRecoveryPointResource.
type RecoveryPointResource struct {
	ID         string             `json:"id"`
	Name       string             `json:"name"`
	Type       string             `json:"type"`
	Properties RecoveryPointProps `json:"properties"`

	// Time, Expiry and SizeBytes (of the point's snapshot) are what the
	// wire carries as strings (and the size inside the data store's
	// metaData), typed for the portal; they are not encoded.
	Time      time.Time `json:"-"`
	Expiry    time.Time `json:"-"`
	SizeBytes int64     `json:"-"`
}

// RecoveryPointProps is AzureBackupDiscreteRecoveryPoint.
type RecoveryPointProps struct {
	ObjectType                     string              `json:"objectType"`
	RecoveryPointID                string              `json:"recoveryPointId"`
	RecoveryPointTime              string              `json:"recoveryPointTime"`
	RecoveryPointType              string              `json:"recoveryPointType"`
	FriendlyName                   string              `json:"friendlyName"`
	PolicyName                     string              `json:"policyName,omitempty"`
	PolicyVersion                  string              `json:"policyVersion,omitempty"`
	RetentionTagName               string              `json:"retentionTagName"`
	RetentionTagVersion            string              `json:"retentionTagVersion,omitempty"`
	RecoveryPointState             string              `json:"recoveryPointState"`
	ExpiryTime                     string              `json:"expiryTime,omitempty"`
	RecoveryPointDataStoresDetails []RPDataStoreDetail `json:"recoveryPointDataStoresDetails"`
	// CofferVerification is Coffer's extension (Azure has no verify of a
	// recovery point): its last verification, or state NotVerified.
	CofferVerification *RPVerification `json:"cofferVerification,omitempty"`
}

// RPVerification is a recovery point's last verification (Coffer's).
type RPVerification struct {
	State            string `json:"state"` // NotVerified, Verified, VerifyFailed
	LastVerifiedTime string `json:"lastVerifiedTime,omitempty"`
	Message          string `json:"message,omitempty"`
	Source           string `json:"source,omitempty"` // RecoveryPointVerify, RepositoryVerify
}

// RPDataStoreDetail is RecoveryPointDataStoreDetails.
type RPDataStoreDetail struct {
	ID           string `json:"id"`
	Type         string `json:"type"`
	CreationTime string `json:"creationTime"`
	ExpiryTime   string `json:"expiryTime,omitempty"`
	MetaData     string `json:"metaData,omitempty"`
	State        string `json:"state"`
	Visible      bool   `json:"visible"`
}

// JobInfo is OperationJobExtendedInfo, the result of backup, restore and
// validation operations.
type JobInfo struct {
	JobID      string `json:"jobId"`
	ObjectType string `json:"objectType"`
}

// formatTime writes times as Azure does: UTC with 7 fractional digits.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.0000000Z")
}
