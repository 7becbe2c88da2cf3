package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"coffer/internal/dataprotection"
)

// DataProtectionVersion is the api-version the client sends to
// Microsoft.DataProtection (the one the armdataprotection/v3 SDK sends).
const DataProtectionVersion = "2024-04-01"

// Vault is a backup vault.
type Vault struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Location string `json:"location"`
	Identity *struct {
		Type        string `json:"type"`
		PrincipalID string `json:"principalId"`
		TenantID    string `json:"tenantId"`
	} `json:"identity"`
	Properties struct {
		ProvisioningState string `json:"provisioningState"`
		StorageSettings   []struct {
			DatastoreType string `json:"datastoreType"`
			Type          string `json:"type"`
		} `json:"storageSettings"`
	} `json:"properties"`
}

// PrincipalID is the vault identity's principal ID ("" without one).
func (v Vault) PrincipalID() string {
	if v.Identity == nil {
		return ""
	}
	return v.Identity.PrincipalID
}

// Policy is a backup policy; Properties is kept as sent.
type Policy struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Properties json.RawMessage `json:"properties"`
}

// UserFacingError is Azure Backup's error detail.
type UserFacingError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Instance is a backup instance.
type Instance struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Properties struct {
		FriendlyName   string `json:"friendlyName"`
		DataSourceInfo struct {
			ResourceID       string `json:"resourceID"`
			ResourceLocation string `json:"resourceLocation"`
		} `json:"dataSourceInfo"`
		PolicyInfo struct {
			PolicyID         string `json:"policyId"`
			PolicyParameters *struct {
				DataStoreParametersList []struct {
					ResourceGroupID string `json:"resourceGroupId"`
				} `json:"dataStoreParametersList"`
			} `json:"policyParameters"`
		} `json:"policyInfo"`
		CurrentProtectionState string `json:"currentProtectionState"`
		ProtectionStatus       *struct {
			Status       string           `json:"status"`
			ErrorDetails *UserFacingError `json:"errorDetails"`
		} `json:"protectionStatus"`
		ProvisioningState string `json:"provisioningState"`
	} `json:"properties"`
}

// RecoveryPoint is a recovery point.
type RecoveryPoint struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Properties struct {
		RecoveryPointID   string `json:"recoveryPointId"`
		RecoveryPointTime string `json:"recoveryPointTime"`
		RetentionTagName  string `json:"retentionTagName"`
		ExpiryTime        string `json:"expiryTime"`
		PolicyName        string `json:"policyName"`
	} `json:"properties"`
}

// Job is a backup job.
type Job struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Properties struct {
		Operation          string            `json:"operation"`
		OperationCategory  string            `json:"operationCategory"`
		Status             string            `json:"status"`
		StartTime          string            `json:"startTime"`
		EndTime            string            `json:"endTime"`
		Duration           string            `json:"duration"`
		DataSourceName     string            `json:"dataSourceName"`
		IsUserTriggered    bool              `json:"isUserTriggered"`
		PolicyName         string            `json:"policyName"`
		BackupInstanceName string            `json:"backupInstanceFriendlyName"`
		ErrorDetails       []UserFacingError `json:"errorDetails"`
		ExtendedInfo       *struct {
			AdditionalDetails   map[string]string `json:"additionalDetails"`
			RecoveryDestination string            `json:"recoveryDestination"`
		} `json:"extendedInfo"`
	} `json:"properties"`
}

func (c *Client) dpPath(rg, vault string, rest ...string) (string, error) {
	sub, err := c.sub()
	if err != nil {
		return "", err
	}
	p := "/subscriptions/" + sub + "/resourceGroups/" + url.PathEscape(rg) + "/providers/Microsoft.DataProtection/backupVaults"
	if vault != "" {
		p += "/" + url.PathEscape(vault)
	}
	for _, r := range rest {
		p += "/" + r
	}
	return p, nil
}

// jobResult waits for an action's operation and returns its job ID.
func (c *Client) jobResult(ctx context.Context, resp *Response, wait bool) (string, error) {
	if !wait {
		return "", nil
	}
	body, err := c.Wait(ctx, resp, nil)
	if err != nil {
		return "", err
	}
	var info dataprotection.JobInfo
	if len(body) > 0 {
		if err := json.Unmarshal(body, &info); err != nil {
			return "", fmt.Errorf("decode job info: %w", err)
		}
	}
	return info.JobID, nil
}

// CreateVault creates a backup vault with a system-assigned identity.
func (c *Client) CreateVault(ctx context.Context, rg, name, location, redundancy string) (Vault, error) {
	p, err := c.dpPath(rg, name)
	if err != nil {
		return Vault{}, err
	}
	if redundancy == "" {
		redundancy = "LocallyRedundant"
	}
	body := map[string]any{"location": location, "identity": map[string]any{"type": "SystemAssigned"},
		"properties": map[string]any{"storageSettings": []any{map[string]any{"datastoreType": "VaultStore", "type": redundancy}}}}
	resp, err := c.Do(ctx, http.MethodPut, p, DataProtectionVersion, nil, body, nil)
	if err != nil {
		return Vault{}, err
	}
	if _, err := c.Wait(ctx, resp, nil); err != nil {
		return Vault{}, err
	}
	return c.GetVault(ctx, rg, name)
}

// GetVault returns a vault.
func (c *Client) GetVault(ctx context.Context, rg, name string) (Vault, error) {
	p, err := c.dpPath(rg, name)
	if err != nil {
		return Vault{}, err
	}
	var v Vault
	_, err = c.Do(ctx, http.MethodGet, p, DataProtectionVersion, nil, nil, &v)
	return v, err
}

// ListVaults lists the vaults of a group, or of the subscription when rg is empty.
func (c *Client) ListVaults(ctx context.Context, rg string) ([]Vault, error) {
	p := ""
	if rg == "" {
		sub, err := c.sub()
		if err != nil {
			return nil, err
		}
		p = "/subscriptions/" + sub + "/providers/Microsoft.DataProtection/backupVaults"
	} else {
		var err error
		if p, err = c.dpPath(rg, ""); err != nil {
			return nil, err
		}
	}
	items, err := c.List(ctx, p, DataProtectionVersion, nil)
	if err != nil {
		return nil, err
	}
	return Decode[Vault](items)
}

// DeleteVault deletes a vault.
func (c *Client) DeleteVault(ctx context.Context, rg, name string) error {
	p, err := c.dpPath(rg, name)
	if err != nil {
		return err
	}
	resp, err := c.Do(ctx, http.MethodDelete, p, DataProtectionVersion, nil, nil, nil)
	if err != nil {
		return err
	}
	_, err = c.Wait(ctx, resp, nil)
	return err
}

// DefaultPolicyTemplate is Azure's default disk backup policy template
// (what `az dataprotection backup-policy get-default-policy-template
// --datasource-type AzureDisk` prints).
func DefaultPolicyTemplate() any { return dataprotection.DefaultPolicyTemplate() }

// DiskPolicyOptions are the choices BuildDiskPolicy builds a policy from.
type DiskPolicyOptions = dataprotection.DiskPolicyOptions

// BuildDiskPolicy builds and checks a disk backup policy from simple choices.
func BuildDiskPolicy(o DiskPolicyOptions) (any, error) { return dataprotection.BuildDiskPolicy(o) }

// PutPolicy creates or replaces a backup policy (props is the policy's
// properties object).
func (c *Client) PutPolicy(ctx context.Context, rg, vault, name string, props any) (Policy, error) {
	p, err := c.dpPath(rg, vault, "backupPolicies", url.PathEscape(name))
	if err != nil {
		return Policy{}, err
	}
	var out Policy
	_, err = c.Do(ctx, http.MethodPut, p, DataProtectionVersion, nil, map[string]any{"properties": props}, &out)
	return out, err
}

// GetPolicy returns a policy.
func (c *Client) GetPolicy(ctx context.Context, rg, vault, name string) (Policy, error) {
	p, err := c.dpPath(rg, vault, "backupPolicies", url.PathEscape(name))
	if err != nil {
		return Policy{}, err
	}
	var out Policy
	_, err = c.Do(ctx, http.MethodGet, p, DataProtectionVersion, nil, nil, &out)
	return out, err
}

// ListPolicies lists a vault's policies.
func (c *Client) ListPolicies(ctx context.Context, rg, vault string) ([]Policy, error) {
	p, err := c.dpPath(rg, vault, "backupPolicies")
	if err != nil {
		return nil, err
	}
	items, err := c.List(ctx, p, DataProtectionVersion, nil)
	if err != nil {
		return nil, err
	}
	return Decode[Policy](items)
}

// DeletePolicy deletes a policy.
func (c *Client) DeletePolicy(ctx context.Context, rg, vault, name string) error {
	p, err := c.dpPath(rg, vault, "backupPolicies", url.PathEscape(name))
	if err != nil {
		return err
	}
	_, err = c.Do(ctx, http.MethodDelete, p, DataProtectionVersion, nil, nil, nil)
	return err
}

// InstanceBody is the properties of a disk backup instance.
func InstanceBody(diskID, location, policyID, snapshotGroupID string) map[string]any {
	name := diskID[strings.LastIndex(diskID, "/")+1:]
	return map[string]any{"objectType": "BackupInstance", "friendlyName": name,
		"dataSourceInfo": map[string]any{"objectType": "Datasource", "datasourceType": "Microsoft.Compute/disks", "resourceID": diskID,
			"resourceLocation": location, "resourceName": name, "resourceType": "Microsoft.Compute/disks", "resourceUri": diskID},
		"policyInfo": map[string]any{"policyId": policyID, "policyParameters": map[string]any{"dataStoreParametersList": []any{
			map[string]any{"objectType": "AzureOperationalStoreParameters", "dataStoreType": "OperationalStore", "resourceGroupId": snapshotGroupID}}}}}
}

// ValidateForBackup validates a backup instance (its properties) and
// returns the validation job's ID.
func (c *Client) ValidateForBackup(ctx context.Context, rg, vault string, props any) (string, error) {
	p, err := c.dpPath(rg, vault, "validateForBackup")
	if err != nil {
		return "", err
	}
	resp, err := c.Do(ctx, http.MethodPost, p, DataProtectionVersion, nil, map[string]any{"backupInstance": props}, nil)
	if err != nil {
		return "", err
	}
	return c.jobResult(ctx, resp, true)
}

// PutInstance creates or updates a backup instance and waits until
// protection is configured.
func (c *Client) PutInstance(ctx context.Context, rg, vault, name string, props any) (Instance, error) {
	p, err := c.dpPath(rg, vault, "backupInstances", url.PathEscape(name))
	if err != nil {
		return Instance{}, err
	}
	resp, err := c.Do(ctx, http.MethodPut, p, DataProtectionVersion, nil, map[string]any{"properties": props}, nil)
	if err != nil {
		return Instance{}, err
	}
	if _, err := c.Wait(ctx, resp, nil); err != nil {
		return Instance{}, err
	}
	return c.GetInstance(ctx, rg, vault, name)
}

// GetInstance returns a backup instance.
func (c *Client) GetInstance(ctx context.Context, rg, vault, name string) (Instance, error) {
	p, err := c.dpPath(rg, vault, "backupInstances", url.PathEscape(name))
	if err != nil {
		return Instance{}, err
	}
	var out Instance
	_, err = c.Do(ctx, http.MethodGet, p, DataProtectionVersion, nil, nil, &out)
	return out, err
}

// ListInstances lists a vault's backup instances.
func (c *Client) ListInstances(ctx context.Context, rg, vault string) ([]Instance, error) {
	p, err := c.dpPath(rg, vault, "backupInstances")
	if err != nil {
		return nil, err
	}
	items, err := c.List(ctx, p, DataProtectionVersion, nil)
	if err != nil {
		return nil, err
	}
	return Decode[Instance](items)
}

// DeleteInstance deletes a backup instance (with its recovery points).
func (c *Client) DeleteInstance(ctx context.Context, rg, vault, name string, wait bool) error {
	p, err := c.dpPath(rg, vault, "backupInstances", url.PathEscape(name))
	if err != nil {
		return err
	}
	resp, err := c.Do(ctx, http.MethodDelete, p, DataProtectionVersion, nil, nil, nil)
	if err != nil || !wait {
		return err
	}
	_, err = c.Wait(ctx, resp, nil)
	return err
}

// InstanceAction posts stopProtection, suspendBackups, resumeProtection or
// resumeBackups.
func (c *Client) InstanceAction(ctx context.Context, rg, vault, name, action string) error {
	p, err := c.dpPath(rg, vault, "backupInstances", url.PathEscape(name), action)
	if err != nil {
		return err
	}
	resp, err := c.Do(ctx, http.MethodPost, p, DataProtectionVersion, nil, map[string]any{}, nil)
	if err != nil {
		return err
	}
	_, err = c.Wait(ctx, resp, nil)
	return err
}

// BackupNow triggers an on-demand backup and returns its job's ID.
func (c *Client) BackupNow(ctx context.Context, rg, vault, name, rule, tag string) (string, error) {
	p, err := c.dpPath(rg, vault, "backupInstances", url.PathEscape(name), "backup")
	if err != nil {
		return "", err
	}
	body := map[string]any{"backupRuleOptions": map[string]any{"ruleName": rule, "triggerOption": map[string]any{"retentionTagOverride": tag}}}
	resp, err := c.Do(ctx, http.MethodPost, p, DataProtectionVersion, nil, body, nil)
	if err != nil {
		return "", err
	}
	return c.jobResult(ctx, resp, true)
}

// ListRecoveryPoints lists a backup instance's recovery points ($filter
// optional).
func (c *Client) ListRecoveryPoints(ctx context.Context, rg, vault, name, filter string) ([]RecoveryPoint, error) {
	p, err := c.dpPath(rg, vault, "backupInstances", url.PathEscape(name), "recoveryPoints")
	if err != nil {
		return nil, err
	}
	var q url.Values
	if filter != "" {
		q = url.Values{"$filter": {filter}}
	}
	items, err := c.List(ctx, p, DataProtectionVersion, q)
	if err != nil {
		return nil, err
	}
	return Decode[RecoveryPoint](items)
}

// RestoreRequest is the body of a disk restore: recovery point to a new disk.
func RestoreRequest(rpID, targetDiskID, location string) map[string]any {
	name := targetDiskID[strings.LastIndex(targetDiskID, "/")+1:]
	return map[string]any{"objectType": "AzureBackupRecoveryPointBasedRestoreRequest", "recoveryPointId": rpID,
		"sourceDataStoreType": "OperationalStore", "restoreTargetInfo": map[string]any{"objectType": "RestoreTargetInfo",
			"recoveryOption": "FailIfExists", "restoreLocation": location, "datasourceInfo": map[string]any{"objectType": "Datasource",
				"datasourceType": "Microsoft.Compute/disks", "resourceType": "Microsoft.Compute/disks", "resourceID": targetDiskID,
				"resourceName": name, "resourceLocation": location, "resourceUri": targetDiskID}}}
}

// ValidateRestore validates a restore request.
func (c *Client) ValidateRestore(ctx context.Context, rg, vault, name string, req any) error {
	p, err := c.dpPath(rg, vault, "backupInstances", url.PathEscape(name), "validateRestore")
	if err != nil {
		return err
	}
	resp, err := c.Do(ctx, http.MethodPost, p, DataProtectionVersion, nil, map[string]any{"restoreRequestObject": req}, nil)
	if err != nil {
		return err
	}
	_, err = c.jobResult(ctx, resp, true)
	return err
}

// Restore triggers a restore and returns its job's ID.
func (c *Client) Restore(ctx context.Context, rg, vault, name string, req any) (string, error) {
	p, err := c.dpPath(rg, vault, "backupInstances", url.PathEscape(name), "restore")
	if err != nil {
		return "", err
	}
	resp, err := c.Do(ctx, http.MethodPost, p, DataProtectionVersion, nil, req, nil)
	if err != nil {
		return "", err
	}
	return c.jobResult(ctx, resp, true)
}

// GetJob returns a job by name or ARM ID.
func (c *Client) GetJob(ctx context.Context, rg, vault, id string) (Job, error) {
	id = id[strings.LastIndex(id, "/")+1:]
	p, err := c.dpPath(rg, vault, "backupJobs", url.PathEscape(id))
	if err != nil {
		return Job{}, err
	}
	var out Job
	_, err = c.Do(ctx, http.MethodGet, p, DataProtectionVersion, nil, nil, &out)
	return out, err
}

// ListJobs lists a vault's jobs, newest first ($filter optional: status,
// operation and startTime clauses).
func (c *Client) ListJobs(ctx context.Context, rg, vault, filter string) ([]Job, error) {
	p, err := c.dpPath(rg, vault, "backupJobs")
	if err != nil {
		return nil, err
	}
	var q url.Values
	if filter != "" {
		q = url.Values{"$filter": {filter}}
	}
	items, err := c.List(ctx, p, DataProtectionVersion, q)
	if err != nil {
		return nil, err
	}
	return Decode[Job](items)
}
