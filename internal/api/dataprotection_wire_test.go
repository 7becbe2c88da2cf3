package api

import (
	"strings"
	"testing"

	"coffer/internal/dataprotection"
	"coffer/internal/resource"
)

// dataProtectionDecoders are the DataProtection body decoders, for the
// fuzz target of every request body.
var dataProtectionDecoders = map[string]func([]byte) error{
	"vault":             func(b []byte) error { _, err := decodeVault(b); return err },
	"vault patch":       func(b []byte) error { _, err := decodeVaultPatch(b); return err },
	"policy":            func(b []byte) error { _, err := decodePolicy(b); return err },
	"backup instance":   func(b []byte) error { _, err := decodeInstance(b); return err },
	"validateForBackup": func(b []byte) error { _, err := decodeValidateForBackup(b); return err },
	"backup":            func(b []byte) error { _, err := decodeBackupRequest(b); return err },
	"restore":           func(b []byte) error { _, err := decodeRestore(b); return err },
	"validateRestore":   func(b []byte) error { _, err := decodeValidateRestore(b); return err },
}

// TestDecodeDataProtectionShape: a body that is not JSON of the right shape
// is a 400 InvalidRequestContent that says where, without Go's type names;
// a missing envelope object is Azure Backup's invalid-input error naming it.
func TestDecodeDataProtectionShape(t *testing.T) {
	for _, body := range []string{
		``, `{`, `[]`, `{"properties": 5}`, `{"properties": {"policyRules": {}}}`,
		`{"properties": {"policyRules": [5]}}`, `{"properties": {"policyRules": [{"objectType": "AzureBackupRule", "name": 5}]}}`,
		`{"properties": {"policyRules": [{"objectType": "AzureRetentionRule", "lifecycles": {}}]}}`, `{} x`,
	} {
		_, err := decodePolicy([]byte(body))
		if e := resource.AsError(err); e == nil || e.Code != "InvalidRequestContent" || e.Kind != resource.KindBadRequest {
			t.Errorf("decodePolicy(%s) = %v, want 400 InvalidRequestContent", body, err)
		}
	}
	for body, want := range map[string]string{
		`{"properties": {"policyRules": [{"objectType": "AzureBackupRule", "name": 5}]}}`: "a JSON number is not valid at properties.policyRules[0].name",
		`{"properties": {"storageSettings": [{"type": 7}]}}`:                              "a JSON number is not valid at properties.storageSettings.type",
		`{"location": true}`: "a JSON bool is not valid at location",
	} {
		_, perr := decodePolicy([]byte(body))
		_, verr := decodeVault([]byte(body))
		err := verr
		if strings.Contains(body, "policyRules") {
			err = perr
		}
		e := resource.AsError(err)
		if e == nil || !strings.Contains(e.Message, want) || strings.Contains(e.Message, "Go struct") {
			t.Errorf("%s: %v, want a message with %q", body, err, want)
		}
	}
	for what, decode := range map[string]func() error{
		"backupInstance":       func() error { _, err := decodeValidateForBackup([]byte(`{}`)); return err },
		"restoreRequestObject": func() error { _, err := decodeValidateRestore([]byte(`{"restoreRequestObject": null}`)); return err },
	} {
		if e := resource.AsError(decode()); e == nil || e.Code != dataprotection.CodeInvalidInput || e.Target != what {
			t.Errorf("missing %s: %v, want %s at %s", what, e, dataprotection.CodeInvalidInput, what)
		}
	}
}

// TestDecodeDataProtectionInputs: the wire shapes land in the typed inputs,
// property names matched case-insensitively as Azure's clients send them.
func TestDecodeDataProtectionInputs(t *testing.T) {
	v, err := decodeVault([]byte(`{"location":"West US","tags":{"a":"b"},"identity":{"type":"systemassigned"},` +
		`"properties":{"storageSettings":[{"datastoreType":"VaultStore","type":"LocallyRedundant"}],"featureSettings":{"x":1},"replicatedRegions":["east"]}}`))
	if err != nil || v.Location != "West US" || v.Tags["a"] != "b" || v.IdentityType != "systemassigned" || len(v.StorageSettings) != 1 ||
		string(v.FeatureSettings) != `{"x":1}` || len(v.ReplicatedRegions) != 1 {
		t.Errorf("vault input = %+v %v", v, err)
	}
	p, err := decodeVaultPatch([]byte(`{"identity":{"type":""},"properties":{"securitySettings":null}}`))
	if err != nil || p.IdentityType == nil || *p.IdentityType != "" || p.Tags != nil || string(p.SecuritySettings) != "null" || p.FeatureSettings != nil {
		t.Errorf("vault patch = %+v %v", p, err)
	}
	b, err := decodeBackupRequest([]byte(`{"BackupRuleOptions":{"RuleName":"BackupHourly","TriggerOption":{"RetentionTagOverride":"Default"}}}`))
	if err != nil || b != (dataprotection.BackupRequest{RuleName: "BackupHourly", RetentionTag: "Default"}) {
		t.Errorf("backup request = %+v %v", b, err)
	}
	if b, err := decodeBackupRequest([]byte(`{}`)); err != nil || b != (dataprotection.BackupRequest{}) {
		t.Errorf("empty backup request = %+v %v", b, err)
	}
	r, err := decodeValidateRestore([]byte(`{"restoreRequestObject":{"objectType":"AzureBackupRecoveryPointBasedRestoreRequest","recoveryPointId":"rp",` +
		`"sourceDataStoreType":"OperationalStore","restoreTargetInfo":{"objectType":"RestoreTargetInfo","recoveryOption":"FailIfExists",` +
		`"restoreLocation":"local","datasourceInfo":{"resourceId":"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/new","resourceLocation":"west"}}}}`))
	if err != nil || r.RecoveryPointID != "rp" || r.Target == nil || r.Target.DiskID != "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/new" ||
		r.Target.DiskLocation != "west" || r.Target.RestoreLocation != "local" || r.Target.RecoveryOption != "FailIfExists" {
		t.Errorf("restore request = %+v %+v %v", r, r.Target, err)
	}
	if r, err := decodeRestore([]byte(`{"recoveryPointId":"rp","restoreTargetInfo":{}}`)); err != nil || r.Target == nil || r.Target.DiskID != "" {
		t.Errorf("restore without datasourceInfo = %+v %v", r, err)
	}
	if r, err := decodeRestore([]byte(`{"recoveryPointId":"rp"}`)); err != nil || r.Target != nil {
		t.Errorf("restore without target = %+v %v", r, err)
	}
	in, err := decodeInstance([]byte(`{"tags":{"t":"1"},"properties":{"friendlyName":"f","dataSourceInfo":{"resourceId":"d"},"policyInfo":{"policyId":"p"}}}`))
	if err != nil || in.Tags["t"] != "1" || in.Properties.FriendlyName != "f" || in.Properties.DataSourceInfo.ResourceID != "d" || in.Properties.PolicyInfo.PolicyID != "p" {
		t.Errorf("instance input = %+v %v", in, err)
	}
}
