package rbac

import (
	"slices"
	"strings"
)

// Policy is everything an access decision needs: role definitions and role
// assignments. It is plain data; build one per decision or cache it and
// rebuild when assignments change. A nil *Policy denies everything.
type Policy struct {
	// Roles holds role definitions by lower-case GUID (custom roles, or
	// replacements). Built-in roles are always known, whether or not they
	// are in the map; an entry here takes precedence.
	Roles map[string]RoleDefinition
	// Assignments are the role assignments in force. Assignments whose scope
	// is invalid or whose role is unknown are ignored.
	Assignments []Assignment
}

// NewPolicy returns a Policy over the given assignments and custom role
// definitions (built-in roles need not be passed).
func NewPolicy(assignments []Assignment, roles ...RoleDefinition) *Policy {
	p := &Policy{Assignments: assignments}
	if len(roles) > 0 {
		p.Roles = make(map[string]RoleDefinition, len(roles))
		for _, r := range roles {
			p.Roles[strings.ToLower(r.ID)] = r
		}
	}
	return p
}

// Role returns the role definition with the given ID (any form
// ParseRoleDefinitionID accepts): from p.Roles, else the built-ins.
func (p *Policy) Role(id string) (RoleDefinition, bool) {
	guid, err := ParseRoleDefinitionID(id)
	if err != nil {
		return RoleDefinition{}, false
	}
	if p != nil {
		if d, ok := p.Roles[guid]; ok {
			return d, true
		}
	}
	return builtinByID(guid)
}

// Grant is one assignment that permits an action, with the role and the
// pattern in the role's (data)actions that matched.
type Grant struct {
	Assignment Assignment
	Role       RoleDefinition
	Pattern    string
}

// Exclusion is an assignment whose role would have permitted the action but
// whose notActions (or notDataActions) subtract it.
type Exclusion struct {
	Assignment Assignment
	Role       RoleDefinition
	NotPattern string
}

// Decision explains an access decision: Allowed is true when Grants is
// non-empty. Excluded lists roles that matched but removed the action; they
// did not deny anything another role grants.
type Decision struct {
	Allowed  bool
	Grants   []Grant
	Excluded []Exclusion
}

// Allowed reports whether principalID may perform the control-plane action at
// scope: some assignment to the principal at scope or above it has a role
// whose actions, minus that role's notActions, include the action.
func (p *Policy) Allowed(principalID, action, scope string) bool {
	return p.decide(principalID, action, scope, false, true).Allowed
}

// AllowedData is Allowed for data actions (dataActions minus notDataActions).
func (p *Policy) AllowedData(principalID, dataAction, scope string) bool {
	return p.decide(principalID, dataAction, scope, true, true).Allowed
}

// Explain returns every assignment that grants the control-plane action, and
// the ones whose notActions removed it.
func (p *Policy) Explain(principalID, action, scope string) Decision {
	return p.decide(principalID, action, scope, false, false)
}

// ExplainData is Explain for data actions.
func (p *Policy) ExplainData(principalID, dataAction, scope string) Decision {
	return p.decide(principalID, dataAction, scope, true, false)
}

func (p *Policy) decide(principalID, action, scope string, data, firstOnly bool) Decision {
	var dec Decision
	if p == nil || principalID == "" || action == "" {
		return dec
	}
	target, err := ParseScope(scope)
	if err != nil {
		return dec
	}
	for _, a := range p.Assignments {
		if !strings.EqualFold(a.PrincipalID, principalID) {
			continue
		}
		at, err := ParseScope(a.Scope)
		if err != nil || !at.Contains(target) {
			continue
		}
		role, ok := p.Role(a.RoleDefinitionID)
		if !ok {
			continue
		}
		granted, pat, ex := role.grants(action, data)
		switch {
		case granted:
			dec.Allowed = true
			dec.Grants = append(dec.Grants, Grant{Assignment: a, Role: role, Pattern: pat})
			if firstOnly {
				return dec
			}
		case ex != "":
			dec.Excluded = append(dec.Excluded, Exclusion{Assignment: a, Role: role, NotPattern: ex})
		}
	}
	return dec
}

// HoldsWithin reports whether principalID holds a role assignment (of a
// known role) at scope or at a scope below it: what makes a subscription
// show in its list although it may not read the subscription itself.
func (p *Policy) HoldsWithin(principalID, scope string) bool {
	if p == nil || principalID == "" {
		return false
	}
	outer, err := ParseScope(scope)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(p.Assignments, func(a Assignment) bool {
		if !strings.EqualFold(a.PrincipalID, principalID) {
			return false
		}
		if _, ok := p.Role(a.RoleDefinitionID); !ok {
			return false
		}
		at, err := ParseScope(a.Scope)
		return err == nil && outer.Contains(at)
	})
}

// CanAssign reports whether principalID may create role assignments at scope
// (Microsoft.Authorization/roleAssignments/write).
func (p *Policy) CanAssign(principalID, scope string) bool {
	return p.Allowed(principalID, ActionRoleAssignmentsWrite, scope)
}

// MissingActions returns the actions in actions that principalID may not
// perform at scope, in order.
func (p *Policy) MissingActions(principalID, scope string, actions ...string) []string {
	var missing []string
	for _, a := range actions {
		if !p.Allowed(principalID, a, scope) {
			missing = append(missing, a)
		}
	}
	return missing
}

// Requirement is a role that must be assigned at (or above) a scope, e.g.
// Disk Backup Reader on the disk for a vault's identity.
type Requirement struct {
	RoleID string // role GUID (any role definition ID form)
	Scope  string
}

// RoleName returns the name of the required role, or its ID if unknown.
func (r Requirement) RoleName() string {
	if d, ok := builtinByID(r.RoleID); ok {
		return d.RoleName
	}
	return r.RoleID
}

// MissingRoles returns the requirements that no assignment of the role to
// principalID at the requirement's scope or above satisfies, in order. An
// assignment of a different role (even Owner) does not satisfy a
// requirement: Azure Backup's validation asks for the named roles.
func (p *Policy) MissingRoles(principalID string, reqs []Requirement) []Requirement {
	var missing []Requirement
	for _, r := range reqs {
		if !p.hasRoleAt(principalID, r.RoleID, r.Scope) {
			missing = append(missing, r)
		}
	}
	return missing
}

func (p *Policy) hasRoleAt(principalID, roleID, scope string) bool {
	if p == nil || principalID == "" {
		return false
	}
	target, err := ParseScope(scope)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(p.Assignments, func(a Assignment) bool {
		if !strings.EqualFold(a.PrincipalID, principalID) || !SameRoleDefinition(a.RoleDefinitionID, roleID) {
			return false
		}
		at, err := ParseScope(a.Scope)
		return err == nil && at.Contains(target)
	})
}

// BackupRequirements are the roles a backup vault's identity needs to back
// up a disk: Disk Backup Reader on the disk and Disk Snapshot Contributor on
// the snapshot resource group.
func BackupRequirements(diskID, snapshotResourceGroupID string) []Requirement {
	return []Requirement{
		{RoleID: RoleDiskBackupReader, Scope: diskID},
		{RoleID: RoleDiskSnapshotContributor, Scope: snapshotResourceGroupID},
	}
}

// RestoreRequirements are the roles a backup vault's identity needs to
// restore a disk: Disk Restore Operator on the target resource group.
func RestoreRequirements(targetResourceGroupID string) []Requirement {
	return []Requirement{{RoleID: RoleDiskRestoreOperator, Scope: targetResourceGroupID}}
}

// Allowed is the nil-safe package form of (*Policy).Allowed.
func Allowed(p *Policy, principalID, action, scope string) bool {
	return p.Allowed(principalID, action, scope)
}

// AllowedData is the nil-safe package form of (*Policy).AllowedData.
func AllowedData(p *Policy, principalID, dataAction, scope string) bool {
	return p.AllowedData(principalID, dataAction, scope)
}

// CanAssign is the nil-safe package form of (*Policy).CanAssign.
func CanAssign(p *Policy, principalID, scope string) bool {
	return p.CanAssign(principalID, scope)
}
