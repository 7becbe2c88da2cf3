package api

import (
	"net/http"
	"testing"

	"coffer/internal/compute"
	"coffer/internal/rbac"
	"coffer/internal/resource"
)

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		body   string
		ok     bool
		target string
	}{
		{`{"location":"local","tags":{"a":"b"}}`, true, ""},
		{`{"location":"local","unknownField":{"x":[1,2]}}`, true, ""}, // unknown fields are ignored, as ARM does
		{`{"location":5}`, false, "location"},
		{`{"tags":{"a":5}}`, false, "tags"},
		{`{"location":"x"`, false, ""},
		{`[]`, false, ""},
		{``, false, ""},
		{`{} {}`, false, ""},
	}
	for _, tt := range tests {
		var in groupWire
		err := DecodeJSON([]byte(tt.body), &in)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", tt.body, err, tt.ok)
			continue
		}
		if err != nil {
			e := resource.AsError(err)
			if e == nil || e.Code != "InvalidRequestContent" || e.Kind != resource.KindBadRequest {
				t.Errorf("%s: error %v is not a 400 InvalidRequestContent", tt.body, err)
			}
			if e != nil && e.Target != tt.target {
				t.Errorf("%s: target %q, want %q", tt.body, e.Target, tt.target)
			}
		}
	}
}

// FuzzDecodeRequestBodies feeds arbitrary bytes to DecodeJSON into every
// typed input a handler decodes, and to the conversions that follow: they
// must never panic, and must fail only with ARM client errors.
func FuzzDecodeRequestBodies(f *testing.F) {
	for _, s := range []string{`{"location":"local","tags":{"a":"b"}}`, `{"properties":{"roleDefinitionId":"x","principalId":"y"}}`,
		`{"properties":{"displayName":"d","workload":"Production"}}`, `null`, `{"tags":null}`, "\x00", `{"a":` + "\"\\ud800\"}",
		`{"location":"local","sku":{"name":"Premium_LRS"},"properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":4}}`,
		`{"location":"local","properties":{"creationData":{"createOption":"Copy","sourceResourceId":"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d"},"incremental":true}}`,
		`{"location":"local","properties":{"creationData":{"createOption":"Upload","uploadSizeBytes":1049088},"diskSizeGB":0}}`,
		`{"access":"Write","durationInSeconds":3600,"fileFormat":"VHDX"}`, `{"access":"read","durationInSeconds":-1}`,
		`{"properties":{"diskSizeGB":-5,"burstingEnabled":"yes"}}`,
		// DataProtection: vault, instance, restore, validation and backup bodies.
		`{"location":"local","identity":{"type":"SystemAssigned"},"properties":{"storageSettings":[{"datastoreType":"VaultStore","type":"LocallyRedundant"}]}}`,
		`{"location":"local","properties":{"storageSettings":[{"datastoreType":"x","type":"GeoRedundant"},{}]}}`,
		`{"properties":{"objectType":"BackupInstance","dataSourceInfo":{"resourceID":"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d"},` +
			`"policyInfo":{"policyId":"p","policyParameters":{"dataStoreParametersList":[{"objectType":"AzureOperationalStoreParameters","resourceGroupId":"/subscriptions/s/resourceGroups/snaps"}]}}}}`,
		`{"objectType":"AzureBackupRecoveryPointBasedRestoreRequest","recoveryPointId":"rp","sourceDataStoreType":"OperationalStore",` +
			`"restoreTargetInfo":{"objectType":"RestoreTargetInfo","recoveryOption":"FailIfExists","datasourceInfo":{"resourceID":"x"}}}`,
		`{"backupInstance":null}`, `{"restoreRequestObject":{"restoreTargetInfo":{}}}`, `[]`, `{"properties":[]}`,
		`{"backupRuleOptions":{"ruleName":"BackupHourly","triggerOption":{"retentionTagOverride":"Default"}}}`,
		`{"properties":{"policyRules":[null,{"objectType":"AzureBackupRule","trigger":{"objectType":"x"}},{"objectType":"azureretentionrule","lifecycles":[{}]}]}}`,
		`{"identity":{"type":"None"},"properties":{"featureSettings":null}}`,
		// Lower-casing changes this ID's length in bytes; cutting the
		// lower-case copy's index out of the original panicked.
		`{"properties":{"roleDefinitionId":"ȺȺȺ/providers/Microsoft.Authorization/roleDefinitions/","principalId":"05c5a614-a7d6-4502-b150-c2fb455033ff"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var g groupWire
		wantARM400(t, "group body", DecodeJSON(body, &g))
		var tags struct {
			Tags map[string]string `json:"tags"`
		}
		if err := DecodeJSON(body, &tags); err == nil {
			if err := resource.CheckTags(tags.Tags); err != nil && resource.AsError(err) == nil {
				t.Fatalf("tags: non-ARM error %v", err)
			}
		}
		in, err := decodeAssignment(body)
		wantARM400(t, "assignment body", err)
		if err == nil {
			_, err := rbac.ValidateAssignment(rbac.Assignment{Name: "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", Scope: "/subscriptions/s",
				RoleDefinitionID: in.RoleDefinitionID, PrincipalID: in.PrincipalID, PrincipalType: in.PrincipalType}, nil)
			if err != nil && rbac.ErrorFor(err) == nil {
				t.Fatalf("assignment: unmapped error %v", err)
			}
		}
		for what, decode := range dataProtectionDecoders {
			wantARM400(t, what, decode(body))
		}
		decodeInput(t, "disk", body, func(d diskWire) error { _, err := d.input(); return err })
		decodeInput(t, "snapshot", body, func(sn snapshotWire) error { _, err := sn.input(); return err })
		decodeInput(t, "grant", body, func(g grantAccessData) error { _, err := compute.ParseAccess(g.Access); return err })
	})
}

// decodeInput decodes body into a T with DecodeJSON, then converts it to
// the domain's input; each step may fail only with an ARM 400.
func decodeInput[T any](t *testing.T, what string, body []byte, convert func(T) error) {
	t.Helper()
	var v T
	if err := DecodeJSON(body, &v); err != nil {
		wantARM400(t, what+" body", err)
		return
	}
	wantARM400(t, what+" input", convert(v))
}

func wantARM400(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	e := resource.AsError(err)
	if e == nil || StatusOf(e.Kind) != http.StatusBadRequest || e.Code == "" || e.Message == "" {
		t.Fatalf("%s: %v is not an ARM 400", what, err)
	}
}

func TestRouterCaseInsensitive(t *testing.T) {
	s := &Server{}
	s.Handle(Route{Method: "GET", Pattern: "/subscriptions/{sub}/resourceGroups/{rg}", Anonymous: true},
		Route{Method: "GET", Pattern: "{scope...}/providers/Microsoft.Authorization/roleAssignments/{name}", Anonymous: true},
		Route{Method: "GET", Pattern: "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Authorization/roleAssignments/special", Anonymous: true})
	rt, vars, _ := s.lookup("GET", splitPath("/SUBSCRIPTIONS/Abc/resourcegroups/MyRG"))
	if rt == nil || vars["sub"] != "Abc" || vars["rg"] != "MyRG" {
		t.Fatalf("case-insensitive match failed: %v %v", rt, vars)
	}
	rt, vars, _ = s.lookup("GET", splitPath("/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d/providers/microsoft.authorization/roleassignments/x"))
	if rt == nil || vars["scope"] != "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d" || vars["name"] != "x" {
		t.Fatalf("scope capture: %v %v", rt, vars)
	}
	rt, vars, _ = s.lookup("GET", splitPath("/providers/Microsoft.Authorization/roleAssignments/x"))
	if rt == nil || vars["scope"] != "/" {
		t.Fatalf("root scope capture: %v %v", rt, vars)
	}
	rt, _, _ = s.lookup("GET", splitPath("/subscriptions/s/resourceGroups/g/providers/Microsoft.Authorization/roleAssignments/special"))
	if rt == nil || rt.Pattern != "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Authorization/roleAssignments/special" {
		t.Fatalf("most specific route must win, got %v", rt)
	}
	if rt, _, other := s.lookup("DELETE", splitPath("/subscriptions/s/resourceGroups/g")); rt != nil || !other {
		t.Fatal("wrong method must report another method matched")
	}
}
