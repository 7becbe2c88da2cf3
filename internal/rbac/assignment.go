package rbac

import (
	"fmt"
	"strings"
	"time"

	"coffer/internal/resource"
)

// Principal types accepted in a role assignment's principalType.
const (
	PrincipalUser             = "User"
	PrincipalGroup            = "Group"
	PrincipalServicePrincipal = "ServicePrincipal"
	PrincipalForeignGroup     = "ForeignGroup"
	PrincipalDevice           = "Device"
)

var principalTypes = []string{PrincipalUser, PrincipalGroup, PrincipalServicePrincipal, PrincipalForeignGroup, PrincipalDevice}

// Assignment grants a role to a principal at a scope.
type Assignment struct {
	Name             string // GUID; the last segment of the resource ID
	Scope            string // normalised scope, caller's casing
	RoleDefinitionID string // bare role GUID, lower case
	PrincipalID      string
	PrincipalType    string // User, Group, ServicePrincipal, ForeignGroup, Device, or empty
	Description      string
	Condition        string // stored and echoed; not evaluated
	ConditionVersion string
	// DelegatedManagedIdentityResourceID is stored and echoed only.
	DelegatedManagedIdentityResourceID string
	CreatedOn                          time.Time
	UpdatedOn                          time.Time
	CreatedBy                          string
	UpdatedBy                          string
}

// ID returns the assignment's resource ID.
func (a Assignment) ID() string { return AssignmentResourceID(a.Scope, a.Name) }

// ValidateAssignmentName checks that a role assignment name is a GUID, as ARM
// requires.
func ValidateAssignmentName(name string) error {
	if !IsGUID(name) {
		return fmt.Errorf("%w: %q is not a GUID", ErrInvalidAssignmentName, name)
	}
	return nil
}

// NormalizePrincipalType returns the canonical spelling of a principal type
// (matched case-insensitively); the empty string stays empty.
func NormalizePrincipalType(t string) (string, error) {
	if t == "" {
		return "", nil
	}
	for _, c := range principalTypes {
		if strings.EqualFold(c, t) {
			return c, nil
		}
	}
	return "", fmt.Errorf("%w: %q", ErrInvalidPrincipalType, t)
}

// RoleLookup finds a role definition by GUID; *Policy implements it, and so
// does any store-backed catalogue.
type RoleLookup interface {
	Role(id string) (RoleDefinition, bool)
}

// ValidateAssignment checks a new or replacing role assignment the way ARM
// does on PUT and returns it normalised (scope, role GUID, principal type):
// the name is a GUID, the scope valid, the principal ID a GUID, the principal
// type known, the role definition exists (in roles, or built in when roles is
// nil) and is assignable at the scope.
func ValidateAssignment(a Assignment, roles RoleLookup) (Assignment, error) {
	if err := ValidateAssignmentName(a.Name); err != nil {
		return Assignment{}, err
	}
	scope, err := NormalizeScope(a.Scope)
	if err != nil {
		return Assignment{}, fmt.Errorf("validate role assignment %s: %w", a.Name, err)
	}
	a.Scope = scope
	if !IsGUID(a.PrincipalID) {
		return Assignment{}, fmt.Errorf("%w: %q: the principal ID must be a GUID", ErrInvalidPrincipalID, a.PrincipalID)
	}
	if a.PrincipalType, err = NormalizePrincipalType(a.PrincipalType); err != nil {
		return Assignment{}, err
	}
	if err := resource.CheckText("properties.description", a.Description); err != nil {
		return Assignment{}, err
	}
	if err := resource.CheckText("properties.condition", a.Condition); err != nil {
		return Assignment{}, err
	}
	guid, err := ParseRoleDefinitionID(a.RoleDefinitionID)
	if err != nil {
		return Assignment{}, err
	}
	a.RoleDefinitionID = guid
	var def RoleDefinition
	var ok bool
	if roles != nil {
		def, ok = roles.Role(guid)
	} else {
		def, ok = builtinByID(guid)
	}
	if !ok {
		return Assignment{}, fmt.Errorf("%w: the specified role definition with ID '%s' does not exist", ErrUnknownRole, guid)
	}
	if !def.AssignableAt(scope) {
		return Assignment{}, fmt.Errorf("%w: role %q (%s) at %s", ErrScopeNotAssignable, def.RoleName, guid, scope)
	}
	return a, nil
}

// SameGrant reports whether a and b assign the same role to the same
// principal at the same scope (names and descriptions aside).
func SameGrant(a, b Assignment) bool {
	return strings.EqualFold(a.PrincipalID, b.PrincipalID) &&
		SameRoleDefinition(a.RoleDefinitionID, b.RoleDefinitionID) &&
		ScopeEqual(a.Scope, b.Scope)
}

// FindDuplicate returns the assignment in existing that grants the same role
// to the same principal at the same scope as a under a different name. ARM
// answers such a PUT with 409 RoleAssignmentExists; DuplicateError wraps
// ErrAssignmentExists for that.
func FindDuplicate(existing []Assignment, a Assignment) (Assignment, bool) {
	for _, e := range existing {
		if strings.EqualFold(e.Name, a.Name) {
			continue
		}
		if SameGrant(e, a) {
			return e, true
		}
	}
	return Assignment{}, false
}

// DuplicateError returns an error wrapping ErrAssignmentExists naming the
// existing assignment.
func DuplicateError(existing Assignment) error {
	return fmt.Errorf("%w: %s", ErrAssignmentExists, existing.ID())
}

// CheckUpdate checks a PUT over an existing assignment with the same name:
// ARM lets the description (and condition) change but not the principal,
// role or scope (409 RoleAssignmentUpdateNotPermitted).
func CheckUpdate(existing, updated Assignment) error {
	if !SameGrant(existing, updated) {
		return fmt.Errorf("%w: %s", ErrAssignmentUpdateNotPermitted, existing.ID())
	}
	return nil
}
