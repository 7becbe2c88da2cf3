package dataprotection

import (
	"fmt"

	"coffer/internal/job"
	"coffer/internal/resource"
)

// Error codes of backup instances, backups and restores. Codes marked
// (Azure) are the ones Azure Backup for Managed Disks documents (disk
// backup troubleshooting guide and REST docs); codes marked (Coffer) are
// Coffer's where Azure documents none. All are HTTP 400 unless noted.
const (
	CodeDatasourceAlreadyProtected     = "UserErrorDppDatasourceAlreadyProtected"                  // Azure
	CodeOperationalStoreParamsMissing  = "UserErrorOperationalStoreParametersNotProvided"          // Azure
	CodeInvalidOperationalStoreRG      = "UserErrorInvalidOperationalStoreResourceGroup"           // Azure
	CodeSnapshotRGNotFound             = "UserErrorSnapshotRGNotFound"                             // Azure
	CodeSnapshotRGSubscriptionMismatch = "UserErrorSnapshotRGSubscriptionMismatch"                 // Azure
	CodeManagedDiskNotFound            = "UserErrorManagedDiskNotFound"                            // Azure
	CodeDiskTypeNotSupported           = "UserErrorDiskBackupDiskTypeNotSupported"                 // Azure
	CodeMissingRequiredPermissions     = "UserErrorMissingRequiredPermissions"                     // Azure
	CodeDiskOrMSIPermissions           = "UserErrorDiskBackupDiskOrMSIPermissionsNotPresent"       // Azure
	CodeSnapshotRGOrMSIPermissions     = "UserErrorDiskBackupSnapshotRGOrMSIPermissionsNotPresent" // Azure
	CodeMaxConcurrentOperations        = "UserErrorMaxConcurrentOperationLimitReached"             // Azure
	CodeSameNameDiskExists             = "UserErrorSameNameDiskAlreadyExists"                      // Azure
	CodeRestoreTargetRGNotFound        = "UserErrorRestoreTargetRGNotFound"                        // Azure
	CodeNotEnoughPermissionOnTargetRG  = "UserErrorNotEnoughPermissionOnTargetRG"                  // Azure
	CodeDiskSnapshotNotFound           = "UserErrorDiskSnapshotNotFound"                           // Azure
	CodeSnapshotMetadataNotFound       = "UserErrorSnapshotMetadataNotFound"                       // Azure

	CodeLocationMismatch          = "UserErrorDatasourceAndBackupVaultLocationMismatch" // Coffer
	CodeSnapshotRGImmutable       = "UserErrorSnapshotResourceGroupCannotBeChanged"     // Coffer
	CodeDatasourceImmutable       = "UserErrorDatasourceCannotBeChanged"                // Coffer
	CodeVaultIdentityMissing      = "UserErrorBackupVaultIdentityNotEnabled"            // Coffer
	CodePolicyNotFound            = "UserErrorBackupPolicyNotFound"                     // Coffer
	CodePolicyInUse               = "UserErrorBackupPolicyInUse"                        // Coffer (409)
	CodeVaultNotEmpty             = "UserErrorBackupVaultHasBackupInstances"            // Coffer (409)
	CodeAdhocLimit                = "UserErrorMaxAdhocBackupsPerDayReached"             // Coffer
	CodeJobNotCancellable         = "UserErrorJobNotCancellable"                        // Coffer (409)
	CodeRestoreLimit              = "UserErrorMaxRestoresPerDayReached"                 // Coffer
	CodeInvalidState              = "UserErrorOperationNotAllowedInCurrentState"        // Coffer
	CodeInvalidBackupRule         = "UserErrorInvalidBackupRuleName"                    // Coffer
	CodeInvalidRetentionTag       = "UserErrorInvalidRetentionTagOverride"              // Coffer
	CodeOriginalLocationRestore   = "UserErrorOriginalLocationRestoreNotSupported"      // Coffer
	CodeRestoreLocationMismatch   = "UserErrorRestoreLocationMismatch"                  // Coffer
	CodeRecoveryPointNotFound     = "UserErrorRecoveryPointNotFound"                    // Coffer (404)
	CodeUnsupportedRestoreRequest = "UserErrorUnsupportedRestoreRequest"                // Coffer
	CodeVaultLimit                = "UserErrorVaultResourceLimitReached"                // Coffer
)

// userError returns a 400 *resource.Error.
func userError(code, format string, args ...any) *resource.Error {
	return resource.Errorf(resource.KindBadRequest, code, format, args...)
}

// withUserFacing adds the UserFacingError additionalInfo entry Azure Backup
// puts on its errors.
func withUserFacing(e *resource.Error, recommended ...string) *resource.Error {
	u := job.FromError(e)
	u.IsUserError = true
	u.RecommendedAction = recommended
	e.AdditionalInfo = append(e.AdditionalInfo, resource.AdditionalInfo{Type: "UserFacingError", Info: u})
	return e
}

func parentNotFound(vaultName string) *resource.Error {
	return resource.Errorf(resource.KindNotFound, "ParentResourceNotFound",
		"Can not perform requested operation on nested resource. Parent resource '%s' not found.", vaultName)
}

func errDiskNotFound(diskID string) *resource.Error {
	return withUserFacing(userError(CodeManagedDiskNotFound,
		"Could not perform the operation as Managed Disk no longer exists. Disk: %s.", diskID),
		"Please check if the backed up disk has been moved or deleted.")
}

func errDiskPermissions(diskID string) *resource.Error {
	return withUserFacing(userError(CodeDiskOrMSIPermissions,
		"Invalid disk or Azure Backup Service requires additional permissions on the Disk to do this operation. Disk: %s.", diskID),
		fmt.Sprintf("Assign the Disk Backup Reader role to the Backup vault's managed identity on the disk %s.", diskID))
}

func errSnapshotRGPermissions(rgID string) *resource.Error {
	return withUserFacing(userError(CodeSnapshotRGOrMSIPermissions,
		"Could not perform the operation as Snapshot Data store Resource Group no longer exists. Or Azure Backup Service requires additional permissions on the Snapshot Data store Resource Group to do this operation. Resource group: %s.", rgID),
		fmt.Sprintf("Assign the Disk Snapshot Contributor role to the Backup vault's managed identity on the resource group %s, or re-create the resource group.", rgID))
}
