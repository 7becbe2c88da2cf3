package dataprotection

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"coffer/internal/resource"
)

// FuzzDecodeBodies feeds arbitrary request bodies to the decoders of
// vault, backup instance, restore and validation requests, and to the
// vault's storage-settings check: they must not panic and must refuse
// only with an ARM client error (400 and a code). (The service-level
// handling of the same bodies is fuzzed end to end by e2e's
// FuzzAPIRequest; policies by FuzzDecodePolicy.)
func FuzzDecodeBodies(f *testing.F) {
	for _, s := range []string{
		`{"location":"local","identity":{"type":"SystemAssigned"},"properties":{"storageSettings":[{"datastoreType":"VaultStore","type":"LocallyRedundant"}]}}`,
		`{"location":"local","properties":{"storageSettings":[{"datastoreType":"x","type":"GeoRedundant"},{}]}}`,
		`{"properties":{"objectType":"BackupInstance","dataSourceInfo":{"resourceID":"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d"},` +
			`"policyInfo":{"policyId":"p","policyParameters":{"dataStoreParametersList":[{"objectType":"AzureOperationalStoreParameters","resourceGroupId":"/subscriptions/s/resourceGroups/snaps"}]}}}}`,
		`{"objectType":"AzureBackupRecoveryPointBasedRestoreRequest","recoveryPointId":"rp","sourceDataStoreType":"OperationalStore",` +
			`"restoreTargetInfo":{"objectType":"RestoreTargetInfo","recoveryOption":"FailIfExists","datasourceInfo":{"resourceID":"x"}}}`,
		`{"backupInstance":null}`, `{"restoreRequestObject":{"restoreTargetInfo":{}}}`, `[]`, `{"properties":[]}`, ``,
	} {
		f.Add([]byte(s))
	}
	clientError := func(t *testing.T, what string, err error) {
		t.Helper()
		if err == nil {
			return
		}
		if e := resource.AsError(err); e == nil || e.Kind != resource.KindBadRequest || e.Code == "" {
			t.Fatalf("%s: %v is not an ARM 400", what, err)
		}
	}
	var s Service
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := decodeVault(body)
		clientError(t, "vault", err)
		if err == nil {
			_, err := s.checkStorage(v.Properties.StorageSettings)
			clientError(t, "vault storage settings", err)
		}
		_, err = decodeInstance(body)
		clientError(t, "backup instance", err)
		var restore RestoreRequest
		_ = json.Unmarshal(body, &restore)
		var validate struct {
			BackupInstance       *Instance       `json:"backupInstance"`
			RestoreRequestObject *RestoreRequest `json:"restoreRequestObject"`
		}
		_ = json.Unmarshal(body, &validate)
	})
}

// FuzzRPFilter feeds arbitrary recovery point $filter values to
// ParseRPFilter: it refuses with 400 InvalidFilter, or returns a window
// that a filter written from it parses to again.
func FuzzRPFilter(f *testing.F) {
	for _, s := range []string{"", "startDate eq '2021-08-01T00:00:00Z' and endDate eq '2021-08-31T00:00:00Z'",
		"startDate ge '2021-08-01' AND endDate le '2021-08-31 10:00:00 PM'", "startDate eq '2021-08-01T00:00:00.123+05:30'",
		"endDate eq 2021-08-01T00:00:00", url.QueryEscape("startDate eq '2021-08-01T00:00:00Z'"), "startDate eq", "foo eq 'x'", "startDate xx '2021-01-01'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseRPFilter(s)
		if err != nil {
			if e := resource.AsError(err); e == nil || e.Kind != resource.KindBadRequest || e.Code != "InvalidFilter" {
				t.Fatalf("ParseRPFilter(%q): %v, want 400 InvalidFilter", s, err)
			}
			return
		}
		var clauses []string
		if !w.Start.IsZero() {
			clauses = append(clauses, "startDate eq '"+w.Start.Format(time.RFC3339Nano)+"'")
		}
		if !w.End.IsZero() {
			clauses = append(clauses, "endDate eq '"+w.End.Format(time.RFC3339Nano)+"'")
		}
		again, err := ParseRPFilter(strings.Join(clauses, " and "))
		if err != nil || !again.Start.Equal(w.Start) || !again.End.Equal(w.End) {
			t.Fatalf("ParseRPFilter(%q) = %+v, which does not round-trip: %+v, %v", s, w, again, err)
		}
	})
}
