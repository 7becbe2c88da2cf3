package rbac

import (
	"errors"
	"strings"
	"testing"
)

var scopeSeeds = []string{
	"/", "", "//", "/subscriptions/s", "subscriptions/S/", "/subscriptions/s/resourceGroups/rg",
	"/subscriptions/s/resourcegroups/RG/providers/Microsoft.Compute/disks/d",
	"/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/v/backupInstances/b",
	"/subscriptions/s/providers/Microsoft.Features/features/f",
	"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d/providers/Microsoft.Authorization/roleAssignments/x",
	"/providers/Microsoft.Management/managementGroups/mg", "/subscriptions//rg", "/subscriptions/s/resourceGroups/rg.",
}

func FuzzScope(f *testing.F) {
	for _, a := range scopeSeeds {
		for _, b := range scopeSeeds[:4] {
			f.Add(a, b)
		}
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		sa, errA := ParseScope(a)
		_, errB := ParseScope(b)
		ab, ba := ScopeContains(a, b), ScopeContains(b, a)
		if errA != nil && (ab || ba) {
			t.Fatalf("invalid %q (%v) takes part in containment", a, errA)
		}
		if errA != nil {
			return
		}
		if !ScopeContains(a, a) {
			t.Fatalf("ScopeContains(%q, itself) = false", a)
		}
		if !ScopeContains("/", a) {
			t.Fatalf("root does not contain %q", a)
		}
		n, err := NormalizeScope(a)
		if err != nil || n != sa.Path {
			t.Fatalf("NormalizeScope(%q) = %q, %v; ParseScope path %q", a, n, err, sa.Path)
		}
		if n2, err := NormalizeScope(n); err != nil || n2 != n {
			t.Fatalf("NormalizeScope not idempotent on %q: %q, %v", n, n2, err)
		}
		if !ScopeEqual(a, strings.ToUpper(n)) && ValidateScope(strings.ToUpper(n)) == nil {
			t.Fatalf("%q and its upper case differ", a)
		}
		if errB != nil {
			return
		}
		if ab && ba && !ScopeEqual(a, b) {
			t.Fatalf("antisymmetry: %q and %q contain each other but are not equal", a, b)
		}
		if ScopeEqual(a, b) && !(ab && ba) {
			t.Fatalf("equal scopes %q and %q do not contain each other", a, b)
		}
		// Extending a scope by a resource keeps containment one-way.
		child := strings.TrimSuffix(n, "/") + "/providers/Microsoft.Compute/disks/x"
		if ValidateScope(child) == nil && (!ScopeContains(a, child) || ScopeContains(child, a)) {
			t.Fatalf("child %q of %q: contains=%v reverse=%v", child, a, ScopeContains(a, child), ScopeContains(child, a))
		}
	})
}

func FuzzAssignmentFilter(f *testing.F) {
	for _, s := range []string{
		"", "atScope()", "principalId eq '" + alice + "'", "assignedTo('x')", "atScope() and assignedTo('a''b')",
		"principalId eq x", "roleName eq 'Owner'", "type eq 'BuiltInRole' and roleName eq 'Reader'", "atScope(", "'", "eq",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if af, err := ParseAssignmentFilter(s); err == nil {
			again, err := ParseAssignmentFilter(af.String())
			if err != nil || again != af {
				t.Fatalf("assignment filter %q → %+v → %q → %+v, %v", s, af, af.String(), again, err)
			}
			_ = af.Match(Assignment{PrincipalID: alice, Scope: subScope}, rgScope)
		}
		if rf, err := ParseRoleDefinitionFilter(s); err == nil {
			again, err := ParseRoleDefinitionFilter(rf.String())
			if err != nil || again != rf {
				t.Fatalf("role filter %q → %+v → %q → %+v, %v", s, rf, rf.String(), again, err)
			}
		}
	})
}

func FuzzMatchAction(f *testing.F) {
	f.Add("*/read", "Microsoft.Compute/disks/read")
	f.Add("Microsoft.Authorization/*/Write", "microsoft.authorization/roleassignments/write")
	f.Add("a*b*c*d", "aXbYcZd")
	f.Fuzz(func(t *testing.T, pattern, action string) {
		got := MatchAction(pattern, action)
		if pattern == "*" && action != "" && !got {
			t.Fatalf("'*' does not match %q", action)
		}
		if action != "" && isASCII(pattern) && isASCII(action) && strings.EqualFold(pattern, action) && !got {
			t.Fatalf("%q does not match itself", action)
		}
		if !strings.Contains(pattern, "*") && got && !strings.EqualFold(pattern, action) && isASCII(pattern) && isASCII(action) {
			t.Fatalf("literal %q matched different %q", pattern, action)
		}
	})
}

// FuzzResourceIDs: role definition and role assignment IDs either parse to
// a lower-case GUID (and a normalised scope) that round-trips, or are
// refused with the package's sentinel errors.
func FuzzResourceIDs(f *testing.F) {
	for _, s := range []string{RoleReader, "/providers/Microsoft.Authorization/roleDefinitions/" + RoleOwner,
		"/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleDefinitions/" + strings.ToUpper(RoleReader),
		"subscriptions/s/resourceGroups/g/providers/Microsoft.Authorization/roleDefinitions/" + RoleReader,
		"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d/providers/Microsoft.Authorization/roleAssignments/05c5a614-a7d6-4502-b150-c2fb455033ff",
		"/providers/Microsoft.Authorization/roleAssignments/05c5a614-a7d6-4502-b150-c2fb455033ff", "/providers/Microsoft.Authorization/roleDefinitions/",
		"roleDefinitions", "/subscriptions//providers/Microsoft.Authorization/roleAssignments/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if guid, err := ParseRoleDefinitionID(s); err != nil {
			if !errors.Is(err, ErrInvalidRoleDefinitionID) {
				t.Fatalf("ParseRoleDefinitionID(%q): %v", s, err)
			}
		} else {
			if !IsGUID(guid) || guid != strings.ToLower(guid) {
				t.Fatalf("ParseRoleDefinitionID(%q) = %q", s, guid)
			}
			if again, err := ParseRoleDefinitionID(RoleDefinitionResourceID("s", guid)); err != nil || again != guid || !SameRoleDefinition(s, guid) {
				t.Fatalf("ParseRoleDefinitionID(%q) = %q, which does not round-trip: %q, %v", s, guid, again, err)
			}
		}
		scope, name, err := ParseAssignmentResourceID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidScope) && !errors.Is(err, ErrUnsupportedScope) && !errors.Is(err, ErrInvalidAssignmentName) {
				t.Fatalf("ParseAssignmentResourceID(%q): %v", s, err)
			}
			return
		}
		if ValidateAssignmentName(name) != nil || ValidateScope(scope) != nil {
			t.Fatalf("ParseAssignmentResourceID(%q) = %q, %q", s, scope, name)
		}
		s2, n2, err := ParseAssignmentResourceID(AssignmentResourceID(scope, name))
		if err != nil || s2 != scope || n2 != name {
			t.Fatalf("ParseAssignmentResourceID(%q) = %q, %q, which does not round-trip: %q, %q, %v", s, scope, name, s2, n2, err)
		}
	})
}
