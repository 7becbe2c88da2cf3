package rbac

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"coffer/internal/resource"
)

func TestValidateAssignment(t *testing.T) {
	good := Assignment{
		Name: "05c5a614-a7d6-4502-b150-c2fb455033ff", Scope: rgScope + "/",
		RoleDefinitionID: "/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleDefinitions/" + strings.ToUpper(RoleDiskRestoreOperator),
		PrincipalID:      alice, PrincipalType: "serviceprincipal",
	}
	got, err := ValidateAssignment(good, nil)
	if err != nil {
		t.Fatalf("ValidateAssignment(good): %v", err)
	}
	if got.Scope != rgScope || got.RoleDefinitionID != RoleDiskRestoreOperator || got.PrincipalType != PrincipalServicePrincipal {
		t.Errorf("ValidateAssignment normalised to %+v", got)
	}
	custom := RoleDefinition{ID: "c0ffee00-0000-4000-8000-000000000001", RoleName: "Custom", RoleType: CustomRole, AssignableScopes: []string{rg2Scope}}
	p := NewPolicy(nil, custom)
	mod := func(f func(*Assignment)) Assignment { a := good; f(&a); return a }
	tests := []struct {
		name  string
		a     Assignment
		roles RoleLookup
		want  error
	}{
		{"name not a GUID", mod(func(a *Assignment) { a.Name = "my-assignment" }), nil, ErrInvalidAssignmentName},
		{"bad scope", mod(func(a *Assignment) { a.Scope = "/subscriptions//rg" }), nil, ErrInvalidScope},
		{"management group", mod(func(a *Assignment) { a.Scope = "/providers/Microsoft.Management/managementGroups/x" }), nil, ErrUnsupportedScope},
		{"principal missing", mod(func(a *Assignment) { a.PrincipalID = "" }), nil, ErrInvalidPrincipalID},
		{"principal not GUID", mod(func(a *Assignment) { a.PrincipalID = "alice" }), nil, ErrInvalidPrincipalID},
		{"principal type", mod(func(a *Assignment) { a.PrincipalType = "Robot" }), nil, ErrInvalidPrincipalType},
		{"role ID malformed", mod(func(a *Assignment) { a.RoleDefinitionID = "Owner" }), nil, ErrInvalidRoleDefinitionID},
		{"role unknown", mod(func(a *Assignment) { a.RoleDefinitionID = unknown }), nil, ErrUnknownRole},
		{"custom role unknown without lookup", mod(func(a *Assignment) { a.RoleDefinitionID = custom.ID }), nil, ErrUnknownRole},
		{"custom role outside assignable scopes", mod(func(a *Assignment) { a.RoleDefinitionID = custom.ID }), p, ErrScopeNotAssignable},
		{"custom role in scope", mod(func(a *Assignment) { a.RoleDefinitionID = custom.ID; a.Scope = rg2Scope }), p, nil},
		{"built-in via nil *Policy", good, (*Policy)(nil), nil},
	}
	for _, tc := range tests {
		_, err := ValidateAssignment(tc.a, tc.roles)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: ValidateAssignment error = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestFindDuplicateAndCheckUpdate(t *testing.T) {
	existing := []Assignment{
		assign("00000000-0000-4000-8000-000000000001", alice, RoleDiskBackupReader, diskID),
		assign("00000000-0000-4000-8000-000000000002", alice, RoleReader, rgScope),
	}
	dup := assign("00000000-0000-4000-8000-0000000000ff", strings.ToUpper(alice),
		"/subscriptions/"+sub+"/providers/Microsoft.Authorization/roleDefinitions/"+RoleDiskBackupReader, strings.ToLower(diskID)+"/")
	got, ok := FindDuplicate(existing, dup)
	if !ok || got.Name != existing[0].Name {
		t.Fatalf("FindDuplicate = %+v, %v; want the first assignment", got, ok)
	}
	err := DuplicateError(got)
	if !errors.Is(err, ErrAssignmentExists) {
		t.Errorf("DuplicateError = %v, not ErrAssignmentExists", err)
	}
	ae := ErrorFor(err)
	if ae.Code != "RoleAssignmentExists" || ae.Message != "The role assignment already exists." || ae.Kind != resource.KindConflict {
		t.Errorf("ErrorFor(duplicate) = %+v", ae)
	}
	// Same name is an update, not a duplicate.
	same := existing[0]
	same.Description = "new"
	if _, ok := FindDuplicate(existing, same); ok {
		t.Error("FindDuplicate reported an assignment as its own duplicate")
	}
	for _, other := range []Assignment{
		assign("00000000-0000-4000-8000-0000000000ff", bob, RoleDiskBackupReader, diskID),
		assign("00000000-0000-4000-8000-0000000000ff", alice, RoleDiskSnapshotContributor, diskID),
		assign("00000000-0000-4000-8000-0000000000ff", alice, RoleDiskBackupReader, disk2ID),
		assign("00000000-0000-4000-8000-0000000000ff", alice, RoleDiskBackupReader, rgScope),
	} {
		if d, ok := FindDuplicate(existing, other); ok {
			t.Errorf("FindDuplicate(%+v) = %+v, want none", other, d)
		}
	}
	if err := CheckUpdate(existing[0], same); err != nil {
		t.Errorf("CheckUpdate(description change) = %v", err)
	}
	moved := existing[0]
	moved.Scope = disk2ID
	if err := CheckUpdate(existing[0], moved); !errors.Is(err, ErrAssignmentUpdateNotPermitted) {
		t.Errorf("CheckUpdate(scope change) = %v, want ErrAssignmentUpdateNotPermitted", err)
	}
	if c := ErrorFor(CheckUpdate(existing[0], moved)).Code; c != "RoleAssignmentUpdateNotPermitted" {
		t.Errorf("code = %q", c)
	}
}

func TestErrorFor(t *testing.T) {
	if ErrorFor(nil) != nil {
		t.Error("ErrorFor(nil) != nil")
	}
	tests := []struct {
		err  error
		code string
	}{
		{ErrInvalidAssignmentName, "InvalidRoleAssignmentId"},
		{ErrInvalidRoleDefinitionID, "InvalidRoleDefinitionId"},
		{ErrUnknownRole, "RoleDefinitionDoesNotExist"},
		{ErrRoleDefinitionNotFound, "RoleDefinitionDoesNotExist"},
		{ErrInvalidPrincipalID, "InvalidPrincipalId"},
		{ErrInvalidScope, "InvalidScope"},
		{ErrInvalidFilter, "InvalidFilter"},
		{errors.New("boom"), "InternalServerError"},
	}
	for _, tc := range tests {
		e := ErrorFor(tc.err)
		if e.Code != tc.code || !errors.Is(e, tc.err) {
			t.Errorf("ErrorFor(%v) = %s (wraps: %v), want %s", tc.err, e.Code, errors.Is(e, tc.err), tc.code)
		}
	}
}

func TestWireShapes(t *testing.T) {
	d, _ := BuiltInRoleByID(RoleDiskBackupReader)
	b, err := MarshalRoleDefinition(d, sub)
	if err != nil {
		t.Fatal(err)
	}
	var rd map[string]any
	if err := json.Unmarshal(b, &rd); err != nil {
		t.Fatal(err)
	}
	if rd["id"] != "/subscriptions/"+sub+"/providers/Microsoft.Authorization/roleDefinitions/"+RoleDiskBackupReader ||
		rd["name"] != RoleDiskBackupReader || rd["type"] != "Microsoft.Authorization/roleDefinitions" {
		t.Errorf("role definition envelope = %s", b)
	}
	props := rd["properties"].(map[string]any)
	if props["roleName"] != "Disk Backup Reader" || props["type"] != "BuiltInRole" || props["description"] == "" {
		t.Errorf("role definition properties = %s", b)
	}
	perms := props["permissions"].([]any)[0].(map[string]any)
	for _, k := range []string{"actions", "notActions", "dataActions", "notDataActions"} {
		if _, ok := perms[k].([]any); !ok {
			t.Errorf("permissions.%s = %v, want a JSON array", k, perms[k])
		}
	}
	if _, ok := props["createdOn"]; ok {
		t.Errorf("zero createdOn emitted: %s", b)
	}

	created := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("x", 3600))
	a := Assignment{
		Name: "05c5a614-a7d6-4502-b150-c2fb455033ff", Scope: rgScope, RoleDefinitionID: RoleDiskRestoreOperator,
		PrincipalID: alice, PrincipalType: PrincipalUser, CreatedOn: created, UpdatedOn: created,
	}
	b, err = MarshalAssignment(a, sub)
	if err != nil {
		t.Fatal(err)
	}
	var ra struct {
		ID, Name, Type string
		Properties     map[string]any
	}
	if err := json.Unmarshal(b, &ra); err != nil {
		t.Fatal(err)
	}
	if ra.ID != rgScope+"/providers/Microsoft.Authorization/roleAssignments/"+a.Name || ra.Name != a.Name || ra.Type != "Microsoft.Authorization/roleAssignments" {
		t.Errorf("assignment envelope = %s", b)
	}
	want := map[string]any{
		"roleDefinitionId": "/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleDefinitions/" + RoleDiskRestoreOperator,
		"principalId":      alice, "principalType": "User", "scope": rgScope,
		"createdOn": "2026-03-01T11:00:00Z", "updatedOn": "2026-03-01T11:00:00Z",
	}
	for k, v := range want {
		if ra.Properties[k] != v {
			t.Errorf("properties.%s = %v, want %v", k, ra.Properties[k], v)
		}
	}
}
