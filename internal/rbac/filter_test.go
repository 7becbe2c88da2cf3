package rbac

import (
	"errors"
	"testing"
)

func TestParseAssignmentFilter(t *testing.T) {
	tests := []struct {
		in   string
		want AssignmentFilter
		err  bool
	}{
		{"", AssignmentFilter{}, false},
		{"   ", AssignmentFilter{}, false},
		{"atScope()", AssignmentFilter{AtScope: true}, false},
		{" ATSCOPE ( ) ", AssignmentFilter{AtScope: true}, false},
		{"principalId eq '" + alice + "'", AssignmentFilter{PrincipalID: alice}, false},
		{"principalId eq " + alice, AssignmentFilter{PrincipalID: alice}, false},
		{"PrincipalID EQ '" + alice + "'", AssignmentFilter{PrincipalID: alice}, false},
		{"assignedTo('" + alice + "')", AssignmentFilter{AssignedTo: alice}, false},
		{"atScope() and assignedTo('" + alice + "')", AssignmentFilter{AtScope: true, AssignedTo: alice}, false},
		{"atScope() AND principalId eq '" + alice + "'", AssignmentFilter{AtScope: true, PrincipalID: alice}, false},
		{"principalId eq 'it''s'", AssignmentFilter{PrincipalID: "it's"}, false},

		{"atScope", AssignmentFilter{}, true},
		{"atScope(", AssignmentFilter{}, true},
		{"atScope('x')", AssignmentFilter{}, true},
		{"atScope() and", AssignmentFilter{}, true},
		{"atScope() or atScope()", AssignmentFilter{}, true},
		{"atScope() and atScope()", AssignmentFilter{}, true},
		{"principalId eq", AssignmentFilter{}, true},
		{"principalId eq ''", AssignmentFilter{}, true},
		{"principalId eq 'x", AssignmentFilter{}, true},
		{"principalId ne 'x'", AssignmentFilter{}, true},
		{"principalId('x')", AssignmentFilter{}, true},
		{"assignedTo()", AssignmentFilter{}, true},
		{"assignedTo eq 'x'", AssignmentFilter{}, true},
		{"roleName eq 'Owner'", AssignmentFilter{}, true},
		{"principalId eq 'a' and assignedTo('a')", AssignmentFilter{}, true},
		{"principalId eq 'a' extra", AssignmentFilter{}, true},
	}
	for _, tc := range tests {
		got, err := ParseAssignmentFilter(tc.in)
		if tc.err {
			if !errors.Is(err, ErrInvalidFilter) {
				t.Errorf("ParseAssignmentFilter(%q) = %+v, %v; want ErrInvalidFilter", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseAssignmentFilter(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestFilterAssignments(t *testing.T) {
	all := []Assignment{
		assign("00000000-0000-4000-8000-000000000001", alice, RoleOwner, "/"),
		assign("00000000-0000-4000-8000-000000000002", alice, RoleReader, subScope),
		assign("00000000-0000-4000-8000-000000000003", bob, RoleReader, rgScope),
		assign("00000000-0000-4000-8000-000000000004", bob, RoleReader, diskID),
		assign("00000000-0000-4000-8000-000000000005", alice, RoleReader, rg2Scope),
		assign("00000000-0000-4000-8000-000000000006", alice, RoleReader, "/subscriptions/"+sub2),
	}
	names := func(as []Assignment) string {
		var s []byte
		for _, a := range as {
			s = append(s, a.Name[len(a.Name)-1])
		}
		return string(s)
	}
	tests := []struct {
		scope, filter, want string
	}{
		{rgScope, "", "1234"},                           // at, above and below
		{rgScope, "atScope()", "123"},                   // at or above
		{diskID, "atScope()", "1234"},                   // the disk and everything above it
		{rgScope, "principalId eq '" + bob + "'", "34"}, // at, above, below, for bob
		{subScope, "principalId eq '" + alice + "'", "125"},
		{subScope, "atScope() and assignedTo('" + alice + "')", "12"},
		{"/", "atScope()", "1"},
		{"/", "", "123456"},
	}
	for _, tc := range tests {
		f, err := ParseAssignmentFilter(tc.filter)
		if err != nil {
			t.Fatalf("ParseAssignmentFilter(%q): %v", tc.filter, err)
		}
		if got := names(FilterAssignments(all, tc.scope, f)); got != tc.want {
			t.Errorf("FilterAssignments(%s, %q) = %q, want %q", tc.scope, tc.filter, got, tc.want)
		}
	}
}

func TestRoleDefinitionFilter(t *testing.T) {
	tests := []struct {
		in    string
		want  RoleDefinitionFilter
		err   bool
		count int // built-ins matched
	}{
		{"", RoleDefinitionFilter{}, false, 10},
		{"roleName eq 'Disk Backup Reader'", RoleDefinitionFilter{RoleName: "Disk Backup Reader"}, false, 1},
		{"roleName eq 'disk backup reader'", RoleDefinitionFilter{RoleName: "disk backup reader"}, false, 1},
		{"type eq 'BuiltInRole'", RoleDefinitionFilter{Type: "BuiltInRole"}, false, 10},
		{"type eq 'CustomRole'", RoleDefinitionFilter{Type: "CustomRole"}, false, 0},
		{"roleName eq 'Owner' and type eq 'BuiltInRole'", RoleDefinitionFilter{RoleName: "Owner", Type: "BuiltInRole"}, false, 1},
		{"roleName eq 'Nope'", RoleDefinitionFilter{RoleName: "Nope"}, false, 0},
		{"roleName eq", RoleDefinitionFilter{}, true, 0},
		{"roleName('x')", RoleDefinitionFilter{}, true, 0},
		{"atScope()", RoleDefinitionFilter{}, true, 0},
		{"roleName eq 'a' and roleName eq 'b'", RoleDefinitionFilter{}, true, 0},
	}
	for _, tc := range tests {
		got, err := ParseRoleDefinitionFilter(tc.in)
		if tc.err {
			if !errors.Is(err, ErrInvalidFilter) {
				t.Errorf("ParseRoleDefinitionFilter(%q) = %+v, %v; want ErrInvalidFilter", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRoleDefinitionFilter(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if n := len(ListRoleDefinitions(nil, subScope, got)); n != tc.count {
			t.Errorf("ListRoleDefinitions(%q) = %d roles, want %d", tc.in, n, tc.count)
		}
	}

	custom := RoleDefinition{ID: "c0ffee00-0000-4000-8000-000000000001", RoleName: "Custom", RoleType: CustomRole,
		AssignableScopes: []string{rgScope}, Permissions: []Permission{{Actions: []string{"*/read"}}}}
	p := NewPolicy(nil, custom)
	f, _ := ParseRoleDefinitionFilter("type eq 'CustomRole'")
	if got := ListRoleDefinitions(p, diskID, f); len(got) != 1 || got[0].RoleName != "Custom" {
		t.Errorf("custom role at disk scope = %+v, want [Custom]", got)
	}
	if got := ListRoleDefinitions(p, rg2Scope, f); len(got) != 0 {
		t.Errorf("custom role outside its assignable scope listed: %+v", got)
	}
}
