// Package dataprotection implements Microsoft.DataProtection for managed
// disks: backup vaults, policies, backup instances, recovery points, jobs and
// restore, with Azure's validation rules and error codes.
package dataprotection
