package rbac

import (
	"fmt"
	"strings"
)

const (
	authorizationProviders = "/providers/Microsoft.Authorization"
	roleDefinitionsPath    = authorizationProviders + "/roleDefinitions/"
	roleAssignmentsPath    = authorizationProviders + "/roleAssignments/"

	// RoleDefinitionType and RoleAssignmentType are the ARM resource types.
	RoleDefinitionType = "Microsoft.Authorization/roleDefinitions"
	RoleAssignmentType = "Microsoft.Authorization/roleAssignments"
)

// IsGUID reports whether s is a GUID in the 8-4-4-4-12 hex form ARM uses
// (either case, no braces).
func IsGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// ParseRoleDefinitionID accepts a bare GUID,
// /providers/Microsoft.Authorization/roleDefinitions/{guid}, or the same
// under any scope (normally /subscriptions/{sub}/providers/…), with or
// without the leading slash, and returns the GUID in lower case. The
// tenant and subscription forms of one role are therefore equal.
func ParseRoleDefinitionID(s string) (string, error) {
	if IsGUID(s) {
		return strings.ToLower(s), nil
	}
	p := s
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	i := lastIndexFold(p, roleDefinitionsPath)
	if i < 0 {
		return "", fmt.Errorf("%w: %q", ErrInvalidRoleDefinitionID, s)
	}
	guid := p[i+len(roleDefinitionsPath):]
	if !IsGUID(guid) {
		return "", fmt.Errorf("%w: %q: %q is not a GUID", ErrInvalidRoleDefinitionID, s, guid)
	}
	if prefix := p[:i]; prefix != "" {
		sc, err := ParseScope(prefix)
		if err != nil || sc.Level == LevelResource {
			return "", fmt.Errorf("%w: %q: bad scope %q", ErrInvalidRoleDefinitionID, s, prefix)
		}
	}
	return strings.ToLower(guid), nil
}

// SameRoleDefinition reports whether a and b name the same role in any of
// the forms ParseRoleDefinitionID accepts.
func SameRoleDefinition(a, b string) bool {
	ga, err := ParseRoleDefinitionID(a)
	if err != nil {
		return false
	}
	gb, err := ParseRoleDefinitionID(b)
	return err == nil && ga == gb
}

// RoleDefinitionResourceID returns the role definition's resource ID:
// /subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid},
// or the tenant form /providers/Microsoft.Authorization/roleDefinitions/{guid}
// when subscriptionID is empty.
func RoleDefinitionResourceID(subscriptionID, guid string) string {
	if subscriptionID == "" {
		return roleDefinitionsPath + guid
	}
	return "/subscriptions/" + subscriptionID + roleDefinitionsPath + guid
}

// AssignmentResourceID returns
// {scope}/providers/Microsoft.Authorization/roleAssignments/{name}.
func AssignmentResourceID(scope, name string) string {
	return strings.TrimSuffix(scope, "/") + roleAssignmentsPath + name
}

// ParseAssignmentResourceID splits a role assignment resource ID into its
// scope (normalised) and name. The name must be a GUID.
func ParseAssignmentResourceID(id string) (scope, name string, err error) {
	p := id
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	i := lastIndexFold(p, roleAssignmentsPath)
	if i < 0 {
		return "", "", fmt.Errorf("%w: %q is not a role assignment ID", ErrInvalidScope, id)
	}
	name = p[i+len(roleAssignmentsPath):]
	if err := ValidateAssignmentName(name); err != nil {
		return "", "", err
	}
	prefix := p[:i]
	if prefix == "" {
		prefix = RootScope
	}
	scope, err = NormalizeScope(prefix)
	if err != nil {
		return "", "", fmt.Errorf("parse role assignment ID %q: %w", id, err)
	}
	return scope, name, nil
}

// lastIndexFold is strings.LastIndex ignoring ASCII case. It compares byte
// for byte, so the index is valid in s (lower-casing s first would change
// the length of some non-ASCII characters and shift it).
func lastIndexFold(s, sub string) int {
	for i := len(s) - len(sub); i >= 0; i-- {
		if equalFoldASCII(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if !foldEq(a[i], b[i]) {
			return false
		}
	}
	return true
}
