package rbac

import (
	"errors"
	"testing"
)

func TestParseRoleDefinitionID(t *testing.T) {
	const g = "3e5e47e6-65f7-47ef-90b5-e5dd4d455f24"
	ok := []string{
		g,
		"3E5E47E6-65F7-47EF-90B5-E5DD4D455F24",
		"/providers/Microsoft.Authorization/roleDefinitions/" + g,
		"providers/Microsoft.Authorization/roleDefinitions/" + g,
		"/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleDefinitions/" + g,
		"/SUBSCRIPTIONS/" + sub + "/PROVIDERS/microsoft.authorization/ROLEDEFINITIONS/" + g,
		"subscriptions/" + sub + "/providers/Microsoft.Authorization/roleDefinitions/" + g,
		rgScope + "/providers/Microsoft.Authorization/roleDefinitions/" + g,
	}
	for _, s := range ok {
		got, err := ParseRoleDefinitionID(s)
		if err != nil || got != g {
			t.Errorf("ParseRoleDefinitionID(%q) = %q, %v; want %q", s, got, err, g)
		}
	}
	bad := []string{
		"",
		"Owner",
		"{" + g + "}",
		g[:35],
		g + "0",
		"3e5e47e6x65f7-47ef-90b5-e5dd4d455f24",
		"/providers/Microsoft.Authorization/roleDefinitions/",
		"/providers/Microsoft.Authorization/roleDefinitions/" + g + "/x",
		"/providers/Microsoft.Authorization/roleAssignments/" + g,
		"/subscriptions//providers/Microsoft.Authorization/roleDefinitions/" + g,
		diskID + "/providers/Microsoft.Authorization/roleDefinitions/" + g,
	}
	for _, s := range bad {
		if got, err := ParseRoleDefinitionID(s); !errors.Is(err, ErrInvalidRoleDefinitionID) {
			t.Errorf("ParseRoleDefinitionID(%q) = %q, %v; want ErrInvalidRoleDefinitionID", s, got, err)
		}
	}
	if !SameRoleDefinition(g, "/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/"+g) || SameRoleDefinition(g, RoleOwner) || SameRoleDefinition("x", "x") {
		t.Error("SameRoleDefinition disagrees")
	}
}

func TestResourceIDs(t *testing.T) {
	if got, want := RoleDefinitionResourceID(sub, RoleOwner), "/subscriptions/"+sub+"/providers/Microsoft.Authorization/roleDefinitions/"+RoleOwner; got != want {
		t.Errorf("RoleDefinitionResourceID = %q, want %q", got, want)
	}
	if got, want := RoleDefinitionResourceID("", RoleOwner), "/providers/Microsoft.Authorization/roleDefinitions/"+RoleOwner; got != want {
		t.Errorf("RoleDefinitionResourceID(tenant) = %q, want %q", got, want)
	}
	const name = "05c5a614-a7d6-4502-b150-c2fb455033ff"
	for _, scope := range []string{"/", subScope, rgScope, diskID} {
		id := AssignmentResourceID(scope, name)
		gotScope, gotName, err := ParseAssignmentResourceID(id)
		if err != nil || !ScopeEqual(gotScope, scope) || gotName != name {
			t.Errorf("ParseAssignmentResourceID(%q) = %q, %q, %v", id, gotScope, gotName, err)
		}
	}
	if _, _, err := ParseAssignmentResourceID(rgScope + "/providers/Microsoft.Authorization/roleAssignments/not-a-guid"); !errors.Is(err, ErrInvalidAssignmentName) {
		t.Errorf("bad name error = %v, want ErrInvalidAssignmentName", err)
	}
	if _, _, err := ParseAssignmentResourceID("/subscriptions//providers/Microsoft.Authorization/roleAssignments/" + name); !errors.Is(err, ErrInvalidScope) {
		t.Errorf("bad scope error = %v, want ErrInvalidScope", err)
	}
	if _, _, err := ParseAssignmentResourceID(diskID); !errors.Is(err, ErrInvalidScope) {
		t.Errorf("not an assignment ID: error = %v, want ErrInvalidScope", err)
	}
}

// TestParseIDsNonASCII: characters whose lower case has another length in
// bytes do not shift where the IDs are cut (found by FuzzResourceIDs:
// ParseAssignmentResourceID panicked with slice bounds out of range, and
// so did ParseRoleDefinitionID).
func TestParseIDsNonASCII(t *testing.T) {
	for _, s := range []string{"\x80/providers/MiCrosoft.AuthoriZAtion/roleAssignments/", "ȺȺȺ/providers/Microsoft.Authorization/roleAssignments/",
		"/subscriptions/ȺȺ/providers/Microsoft.Authorization/roleAssignments/05c5a614-a7d6-4502-b150-c2fb455033ff"} {
		if scope, name, err := ParseAssignmentResourceID(s); err == nil {
			t.Errorf("ParseAssignmentResourceID(%q) = %q, %q", s, scope, name)
		}
	}
	for _, s := range []string{"\x80/providers/Microsoft.Authorization/roleDefinitions/", "ȺȺȺ/providers/Microsoft.Authorization/roleDefinitions/",
		"/subscriptions/İ/providers/Microsoft.Authorization/roleDefinitions/" + RoleReader} {
		if guid, err := ParseRoleDefinitionID(s); err == nil {
			t.Errorf("ParseRoleDefinitionID(%q) = %q", s, guid)
		}
	}
}
