package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/odata"
	"coffer/internal/rbac"
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

// BackupRule returns the name of the policy's backup rule (a disk policy
// has one).
func (p Policy) BackupRule() (string, error) {
	var props struct {
		PolicyRules []struct {
			Name       string `json:"name"`
			ObjectType string `json:"objectType"`
		} `json:"policyRules"`
	}
	if err := json.Unmarshal(p.Properties, &props); err != nil {
		return "", fmt.Errorf("decode policy %s: %w", p.Name, err)
	}
	for _, r := range props.PolicyRules {
		if r.ObjectType == "AzureBackupRule" {
			return r.Name, nil
		}
	}
	return "", fmt.Errorf("the policy %s has no backup rule", p.Name)
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
		// DataStores name where the point is kept: for a disk, the ID of
		// its snapshot in the operational store.
		DataStores []struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		} `json:"recoveryPointDataStoresDetails"`
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

// dpDo sends a request with DataProtectionVersion to the vault path that
// dpPath builds from rg, vault and rest, and decodes a JSON answer into
// out (if non-nil).
func (c *Client) dpDo(ctx context.Context, method string, body, out any, rg, vault string, rest ...string) (*Response, error) {
	p, err := c.dpPath(rg, vault, rest...)
	if err != nil {
		return nil, err
	}
	return c.Do(ctx, method, p, DataProtectionVersion, nil, body, out)
}

// dpWait is dpDo without an answer to decode, followed by a wait for the
// end of the long-running operation the request starts.
func (c *Client) dpWait(ctx context.Context, method string, body any, rg, vault string, rest ...string) error {
	resp, err := c.dpDo(ctx, method, body, nil, rg, vault, rest...)
	if err != nil {
		return err
	}
	_, err = c.Wait(ctx, resp, nil)
	return err
}

// dpList lists the vault path that dpPath builds from rg, vault and rest,
// under an optional $filter.
func dpList[T any](ctx context.Context, c *Client, filter, rg, vault string, rest ...string) ([]T, error) {
	p, err := c.dpPath(rg, vault, rest...)
	if err != nil {
		return nil, err
	}
	var q url.Values
	if filter != "" {
		q = url.Values{"$filter": {filter}}
	}
	return listAs[T](ctx, c, p, DataProtectionVersion, q)
}

// dpJob posts an action with body to the vault path that dpPath builds
// from rg, vault and rest, waits for its operation and returns the ID of
// the job it started.
func (c *Client) dpJob(ctx context.Context, req any, rg, vault string, rest ...string) (string, error) {
	resp, err := c.dpDo(ctx, http.MethodPost, req, nil, rg, vault, rest...)
	if err != nil {
		return "", err
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
	if redundancy == "" {
		redundancy = "LocallyRedundant"
	}
	body := map[string]any{"location": location, "identity": map[string]any{"type": "SystemAssigned"},
		"properties": map[string]any{"storageSettings": []any{map[string]any{"datastoreType": "VaultStore", "type": redundancy}}}}
	if err := c.dpWait(ctx, http.MethodPut, body, rg, name); err != nil {
		return Vault{}, err
	}
	return c.GetVault(ctx, rg, name)
}

// GetVault returns a vault.
func (c *Client) GetVault(ctx context.Context, rg, name string) (Vault, error) {
	var v Vault
	_, err := c.dpDo(ctx, http.MethodGet, nil, &v, rg, name)
	return v, err
}

// ListVaults lists the vaults of a group, or of the subscription when rg is empty.
func (c *Client) ListVaults(ctx context.Context, rg string) ([]Vault, error) {
	if rg != "" {
		return dpList[Vault](ctx, c, "", rg, "")
	}
	sub, err := c.sub()
	if err != nil {
		return nil, err
	}
	return listAs[Vault](ctx, c, "/subscriptions/"+sub+"/providers/Microsoft.DataProtection/backupVaults", DataProtectionVersion, nil)
}

// DeleteVault deletes a vault.
func (c *Client) DeleteVault(ctx context.Context, rg, name string) error {
	return c.dpWait(ctx, http.MethodDelete, nil, rg, name)
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
	var out Policy
	_, err := c.dpDo(ctx, http.MethodPut, map[string]any{"properties": props}, &out, rg, vault, "backupPolicies", url.PathEscape(name))
	return out, err
}

// GetPolicy returns a policy.
func (c *Client) GetPolicy(ctx context.Context, rg, vault, name string) (Policy, error) {
	var out Policy
	_, err := c.dpDo(ctx, http.MethodGet, nil, &out, rg, vault, "backupPolicies", url.PathEscape(name))
	return out, err
}

// ListPolicies lists a vault's policies.
func (c *Client) ListPolicies(ctx context.Context, rg, vault string) ([]Policy, error) {
	return dpList[Policy](ctx, c, "", rg, vault, "backupPolicies")
}

// DeletePolicy deletes a policy.
func (c *Client) DeletePolicy(ctx context.Context, rg, vault, name string) error {
	_, err := c.dpDo(ctx, http.MethodDelete, nil, nil, rg, vault, "backupPolicies", url.PathEscape(name))
	return err
}

// PermissionsScope returns where `--permissions-scope level` assigns a
// role required at scope: scope itself (Resource), its resource group
// (ResourceGroup) or its subscription (Subscription); levels match
// case-insensitively. A scope that does not parse stays as it is.
func PermissionsScope(scope, level string) string {
	sc, err := rbac.ParseScope(scope)
	if err != nil {
		return scope
	}
	switch strings.ToLower(level) {
	case "subscription":
		return sc.Ancestor(rbac.LevelSubscription)
	case "resourcegroup", "group":
		return sc.Ancestor(rbac.LevelResourceGroup)
	}
	return scope
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
	return c.dpJob(ctx, map[string]any{"backupInstance": props}, rg, vault, "validateForBackup")
}

// PutInstance creates or updates a backup instance and waits until
// protection is configured.
func (c *Client) PutInstance(ctx context.Context, rg, vault, name string, props any) (Instance, error) {
	if err := c.dpWait(ctx, http.MethodPut, map[string]any{"properties": props}, rg, vault, "backupInstances", url.PathEscape(name)); err != nil {
		return Instance{}, err
	}
	return c.GetInstance(ctx, rg, vault, name)
}

// GetInstance returns a backup instance.
func (c *Client) GetInstance(ctx context.Context, rg, vault, name string) (Instance, error) {
	var out Instance
	_, err := c.dpDo(ctx, http.MethodGet, nil, &out, rg, vault, "backupInstances", url.PathEscape(name))
	return out, err
}

// ListInstances lists a vault's backup instances.
func (c *Client) ListInstances(ctx context.Context, rg, vault string) ([]Instance, error) {
	return dpList[Instance](ctx, c, "", rg, vault, "backupInstances")
}

// DeleteInstance deletes a backup instance (with its recovery points).
func (c *Client) DeleteInstance(ctx context.Context, rg, vault, name string, wait bool) error {
	if wait {
		return c.dpWait(ctx, http.MethodDelete, nil, rg, vault, "backupInstances", url.PathEscape(name))
	}
	_, err := c.dpDo(ctx, http.MethodDelete, nil, nil, rg, vault, "backupInstances", url.PathEscape(name))
	return err
}

// InstanceAction posts stopProtection, suspendBackups, resumeProtection or
// resumeBackups.
func (c *Client) InstanceAction(ctx context.Context, rg, vault, name, action string) error {
	return c.dpWait(ctx, http.MethodPost, map[string]any{}, rg, vault, "backupInstances", url.PathEscape(name), action)
}

// BackupNow triggers an on-demand backup and returns its job's ID.
func (c *Client) BackupNow(ctx context.Context, rg, vault, name, rule, tag string) (string, error) {
	body := map[string]any{"backupRuleOptions": map[string]any{"ruleName": rule, "triggerOption": map[string]any{"retentionTagOverride": tag}}}
	return c.dpJob(ctx, body, rg, vault, "backupInstances", url.PathEscape(name), "backup")
}

// ListRecoveryPoints lists a backup instance's recovery points ($filter
// optional).
func (c *Client) ListRecoveryPoints(ctx context.Context, rg, vault, name, filter string) ([]RecoveryPoint, error) {
	return dpList[RecoveryPoint](ctx, c, filter, rg, vault, "backupInstances", url.PathEscape(name), "recoveryPoints")
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
	_, err := c.dpJob(ctx, map[string]any{"restoreRequestObject": req}, rg, vault, "backupInstances", url.PathEscape(name), "validateRestore")
	return err
}

// Restore triggers a restore and returns its job's ID.
func (c *Client) Restore(ctx context.Context, rg, vault, name string, req any) (string, error) {
	return c.dpJob(ctx, req, rg, vault, "backupInstances", url.PathEscape(name), "restore")
}

// GetJob returns a job by name or ARM ID.
func (c *Client) GetJob(ctx context.Context, rg, vault, id string) (Job, error) {
	id = id[strings.LastIndex(id, "/")+1:]
	var out Job
	_, err := c.dpDo(ctx, http.MethodGet, nil, &out, rg, vault, "backupJobs", url.PathEscape(id))
	return out, err
}

// CancelJob asks for a backup or restore job to be cancelled (Coffer's
// extension POST …/backupJobs/{id}/cancel) and returns the job as the
// request left it: Cancelled, or InProgress while its worker stops.
func (c *Client) CancelJob(ctx context.Context, rg, vault, id string) (Job, error) {
	id = id[strings.LastIndex(id, "/")+1:]
	var out Job
	_, err := c.dpDo(ctx, http.MethodPost, nil, &out, rg, vault, "backupJobs", url.PathEscape(id), "cancel")
	return out, err
}

// JobEnded reports whether a job's status is final.
func JobEnded(j Job) bool { return job.Status(j.Properties.Status).IsTerminal() }

// WaitJob polls a job (by name or ARM ID) until it ends, at a Poller's
// pace, and returns it as it ended, whether Completed or not. progress, if
// not nil, is told each answer.
func (c *Client) WaitJob(ctx context.Context, rg, vault, id string, progress func(Job)) (Job, error) {
	p := c.Poller()
	for {
		j, err := c.GetJob(ctx, rg, vault, id)
		if err != nil {
			return j, err
		}
		if progress != nil {
			progress(j)
		}
		if JobEnded(j) {
			return j, nil
		}
		if err := p.Wait(ctx, nil); err != nil {
			return j, err
		}
	}
}

// EqFilter is the $filter clause "name eq 'value'", the value quoted.
func EqFilter(name, value string) string { return name + " eq " + odata.Quote(value) }

// JobsFilter is the $filter that selects the jobs with the given status
// and operation (either may be empty: any), each value quoted.
func JobsFilter(status, operation string) string {
	var clauses []string
	if status != "" {
		clauses = append(clauses, EqFilter("status", status))
	}
	if operation != "" {
		clauses = append(clauses, EqFilter("operation", operation))
	}
	return strings.Join(clauses, " and ")
}

// ListJobs lists a vault's jobs, newest first, under an optional $filter
// (see docs/api.md: status, operation, startTime and endTime with and, or,
// not and parentheses; JobsFilter builds the simple ones).
func (c *Client) ListJobs(ctx context.Context, rg, vault, filter string) ([]Job, error) {
	return dpList[Job](ctx, c, filter, rg, vault, "backupJobs")
}
