package dataprotection

import "coffer/internal/job"

// The RBAC actions a caller needs for each operation of
// Microsoft.DataProtection (Azure's action strings). The API's route table
// decides them before an operation runs; the portal decides the same ones
// to offer or disable what a principal may or may not do.
const (
	ActionVaultRead               = "Microsoft.DataProtection/backupVaults/read"
	ActionVaultWrite              = "Microsoft.DataProtection/backupVaults/write"
	ActionVaultDelete             = "Microsoft.DataProtection/backupVaults/delete"
	ActionCheckName               = "Microsoft.DataProtection/locations/checkNameAvailability/action"
	ActionPolicyRead              = "Microsoft.DataProtection/backupVaults/backupPolicies/read"
	ActionPolicyWrite             = "Microsoft.DataProtection/backupVaults/backupPolicies/write"
	ActionPolicyDelete            = "Microsoft.DataProtection/backupVaults/backupPolicies/delete"
	ActionValidateForBackup       = "Microsoft.DataProtection/backupVaults/validateForBackup/action"
	ActionInstanceRead            = "Microsoft.DataProtection/backupVaults/backupInstances/read"
	ActionInstanceWrite           = "Microsoft.DataProtection/backupVaults/backupInstances/write"
	ActionInstanceDelete          = "Microsoft.DataProtection/backupVaults/backupInstances/delete"
	ActionInstanceBackup          = "Microsoft.DataProtection/backupVaults/backupInstances/backup/action"
	ActionInstanceValidateRestore = "Microsoft.DataProtection/backupVaults/backupInstances/validateRestore/action"
	ActionInstanceRestore         = "Microsoft.DataProtection/backupVaults/backupInstances/restore/action"
	ActionInstanceSuspend         = "Microsoft.DataProtection/backupVaults/backupInstances/SuspendBackups/action"
	ActionInstanceResume          = "Microsoft.DataProtection/backupVaults/backupInstances/resumeProtection/action"
	ActionRecoveryPointRead       = "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints/read"
	// ActionRecoveryPointVerify verifies a recovery point
	// (VerifyRecoveryPoint, Coffer's): a deeper validation of a restore
	// from it, so it takes validateRestore on the backup instance (Backup
	// Operator and Backup Contributor hold it; Backup Reader does not).
	ActionRecoveryPointVerify = ActionInstanceValidateRestore
	// ActionJobRead reads a vault's jobs (Azure checks the vault's read).
	ActionJobRead = ActionVaultRead
	// ActionOperationStatusRead reads the status of another principal's
	// operation on a vault or backup instance.
	ActionOperationStatusRead = "Microsoft.DataProtection/backupVaults/operationStatus/read"
)

// ProtectionChange stops, suspends or resumes a backup instance's
// protection (SetProtection).
type ProtectionChange string

// Protection changes, named as their API actions.
const (
	StopProtection   ProtectionChange = "stopProtection"
	SuspendBackups   ProtectionChange = "suspendBackups"
	ResumeProtection ProtectionChange = "resumeProtection"
	ResumeBackups    ProtectionChange = "resumeBackups"
)

// Action is the RBAC action a protection change needs: stopping writes the
// backup instance; suspending and resuming have actions of their own
// (resumeBackups takes resumeProtection's, as in Azure).
func (c ProtectionChange) Action() string {
	switch c {
	case SuspendBackups:
		return ActionInstanceSuspend
	case ResumeProtection, ResumeBackups:
		return ActionInstanceResume
	}
	return ActionInstanceWrite
}

// CancelAction is the RBAC action that cancelling a job of operation (a
// job's operation: Backup or Restore) needs on the job's backup instance:
// what starting it needs. Other operations cannot be cancelled; their
// action is the backup's, which no cancel then uses.
func CancelAction(operation string) string {
	if operation == job.OpRestore {
		return ActionInstanceRestore
	}
	return ActionInstanceBackup
}

// CancelScope is where CancelAction is checked for job j of the vault
// vaultID: its backup instance, or the vault for a job that names none.
func CancelScope(vaultID string, j job.Resource) string {
	if j.Properties.BackupInstanceID != "" {
		return j.Properties.BackupInstanceID
	}
	return vaultID
}
