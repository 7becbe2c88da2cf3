package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"coffer/internal/dataprotection"
	"coffer/internal/resource"
)

// Request bodies of Microsoft.DataProtection and their decoding into the
// domain's typed inputs. A body that is not JSON of the right shape is a
// 400 InvalidRequestContent; everything else (values, required settings,
// Azure Backup's rules and codes) is the domain's to check.

// decodeDP decodes a DataProtection request body into v. Property names and
// (through the model's decoders) objectType discriminators match
// case-insensitively.
func decodeDP(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return &resource.Error{Kind: resource.KindBadRequest, Code: "InvalidRequestContent",
			Message: "The request content was invalid and could not be deserialized: " + jsonErrorText(err), Err: err}
	}
	return nil
}

// jsonErrorText describes a decoding error by the JSON path it is at,
// without Go's type names.
func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var re *dataprotection.RuleDecodeError
	switch {
	case errors.As(err, &te):
		path := te.Field
		if errors.As(err, &re) {
			path = strings.TrimSuffix(fmt.Sprintf("properties.policyRules[%d].%s", re.Index, path), ".")
		} else if path == "" {
			path = "(root)"
		}
		return fmt.Sprintf("a JSON %s is not valid at %s", te.Value, path)
	case errors.As(err, &se):
		return fmt.Sprintf("%v (offset %d)", se, se.Offset)
	}
	return err.Error()
}

// decodeVault decodes a vault PUT: the vault resource.
func decodeVault(body []byte) (dataprotection.VaultInput, error) {
	var w dataprotection.VaultResource
	if err := decodeDP(body, &w); err != nil {
		return dataprotection.VaultInput{}, err
	}
	in := dataprotection.VaultInput{Location: w.Location, Tags: w.Tags, StorageSettings: w.Properties.StorageSettings,
		FeatureSettings: w.Properties.FeatureSettings, MonitoringSettings: w.Properties.MonitoringSettings,
		SecuritySettings: w.Properties.SecuritySettings, ReplicatedRegions: w.Properties.ReplicatedRegions,
		IsVaultProtectedByResourceGuard: w.Properties.IsVaultProtectedByResourceGuard}
	if w.Identity != nil {
		in.IdentityType = w.Identity.Type
	}
	return in, nil
}

// decodeVaultPatch decodes a vault PATCH (PatchResourceRequestInput).
func decodeVaultPatch(body []byte) (dataprotection.VaultPatch, error) {
	var w struct {
		Tags       map[string]string               `json:"tags"`
		Identity   *dataprotection.IdentityDetails `json:"identity"`
		Properties *struct {
			FeatureSettings    json.RawMessage `json:"featureSettings"`
			MonitoringSettings json.RawMessage `json:"monitoringSettings"`
			SecuritySettings   json.RawMessage `json:"securitySettings"`
		} `json:"properties"`
	}
	if err := decodeDP(body, &w); err != nil {
		return dataprotection.VaultPatch{}, err
	}
	in := dataprotection.VaultPatch{Tags: w.Tags}
	if w.Identity != nil {
		in.IdentityType = &w.Identity.Type
	}
	if p := w.Properties; p != nil {
		in.FeatureSettings, in.MonitoringSettings, in.SecuritySettings = p.FeatureSettings, p.MonitoringSettings, p.SecuritySettings
	}
	return in, nil
}

// decodePolicy decodes a policy PUT (BaseBackupPolicyResource) into the
// policy; its rules decode by their objectType.
func decodePolicy(body []byte) (dataprotection.BackupPolicy, error) {
	var w dataprotection.BaseBackupPolicyResource
	if err := decodeDP(body, &w); err != nil {
		return dataprotection.BackupPolicy{}, err
	}
	return w.Properties, nil
}

// decodeInstance decodes a backup instance PUT (BackupInstanceResource).
func decodeInstance(body []byte) (dataprotection.InstanceInput, error) {
	var w dataprotection.InstanceResource
	if err := decodeDP(body, &w); err != nil {
		return dataprotection.InstanceInput{}, err
	}
	return dataprotection.InstanceInput{Tags: w.Tags, Properties: w.Properties}, nil
}

// decodeValidateForBackup decodes {"backupInstance": {...}}.
func decodeValidateForBackup(body []byte) (dataprotection.Instance, error) {
	var w struct {
		BackupInstance *dataprotection.Instance `json:"backupInstance"`
	}
	if err := decodeDP(body, &w); err != nil {
		return dataprotection.Instance{}, err
	}
	if w.BackupInstance == nil {
		return dataprotection.Instance{}, resource.Errorf(resource.KindBadRequest, dataprotection.CodeInvalidInput, "backupInstance is required.").WithTarget("backupInstance")
	}
	return *w.BackupInstance, nil
}

// decodeBackupRequest decodes TriggerBackupRequest:
// {"backupRuleOptions": {"ruleName", "triggerOption": {"retentionTagOverride"}}}.
func decodeBackupRequest(body []byte) (dataprotection.BackupRequest, error) {
	var w struct {
		BackupRuleOptions *struct {
			RuleName      string `json:"ruleName"`
			TriggerOption *struct {
				RetentionTagOverride string `json:"retentionTagOverride"`
			} `json:"triggerOption"`
		} `json:"backupRuleOptions"`
	}
	if err := decodeDP(body, &w); err != nil {
		return dataprotection.BackupRequest{}, err
	}
	var in dataprotection.BackupRequest
	if o := w.BackupRuleOptions; o != nil {
		in.RuleName = o.RuleName
		if o.TriggerOption != nil {
			in.RetentionTag = o.TriggerOption.RetentionTagOverride
		}
	}
	return in, nil
}

// restoreRequestWire is AzureBackupRecoveryPointBasedRestoreRequest.
type restoreRequestWire struct {
	ObjectType          string             `json:"objectType"`
	RecoveryPointID     string             `json:"recoveryPointId"`
	SourceDataStoreType string             `json:"sourceDataStoreType"`
	SourceResourceID    string             `json:"sourceResourceId,omitempty"`
	RestoreTargetInfo   *restoreTargetWire `json:"restoreTargetInfo"`
}

// restoreTargetWire is RestoreTargetInfo.
type restoreTargetWire struct {
	ObjectType      string                     `json:"objectType"`
	RecoveryOption  string                     `json:"recoveryOption"`
	RestoreLocation string                     `json:"restoreLocation,omitempty"`
	DatasourceInfo  *dataprotection.Datasource `json:"datasourceInfo"`
}

func (w restoreRequestWire) input() dataprotection.RestoreRequest {
	in := dataprotection.RestoreRequest{ObjectType: w.ObjectType, RecoveryPointID: w.RecoveryPointID, SourceDataStoreType: w.SourceDataStoreType}
	if t := w.RestoreTargetInfo; t != nil {
		in.Target = &dataprotection.RestoreTarget{ObjectType: t.ObjectType, RecoveryOption: t.RecoveryOption, RestoreLocation: t.RestoreLocation}
		if ds := t.DatasourceInfo; ds != nil {
			in.Target.DiskID, in.Target.DiskLocation = ds.ResourceID, ds.ResourceLocation
		}
	}
	return in
}

// decodeRestore decodes a restore request (the body of restore).
func decodeRestore(body []byte) (dataprotection.RestoreRequest, error) {
	var w restoreRequestWire
	if err := decodeDP(body, &w); err != nil {
		return dataprotection.RestoreRequest{}, err
	}
	return w.input(), nil
}

// decodeValidateRestore decodes {"restoreRequestObject": {...}}.
func decodeValidateRestore(body []byte) (dataprotection.RestoreRequest, error) {
	var w struct {
		RestoreRequestObject *restoreRequestWire `json:"restoreRequestObject"`
	}
	if err := decodeDP(body, &w); err != nil {
		return dataprotection.RestoreRequest{}, err
	}
	if w.RestoreRequestObject == nil {
		return dataprotection.RestoreRequest{}, resource.Errorf(resource.KindBadRequest, dataprotection.CodeInvalidInput, "restoreRequestObject is required.").WithTarget("restoreRequestObject")
	}
	return w.RestoreRequestObject.input(), nil
}
