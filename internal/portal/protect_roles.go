package portal

import (
	"fmt"
	"strings"

	"coffer/internal/authorization"
	"coffer/internal/identity"
	"coffer/internal/rbac"
)

// Role assignments a vault's identity needs, as "Add missing roles"
// (Configure protection) and "Grant permissions" (Recover) make them for
// a principal who may assign roles, and as the role assignment template
// lists them for one who may not.

// Scope levels "Add missing roles" can assign at, as Azure's portal
// offers them (and `coffer protect --permissions-scope` takes them).
var roleLevels = []struct {
	Value, Name string
	Level       rbac.Level
}{
	{"Resource", "Resource", rbac.LevelResource},
	{"ResourceGroup", "Resource group", rbac.LevelResourceGroup},
	{"Subscription", "Subscription", rbac.LevelSubscription},
}

// roleLevel returns the level a form names (Resource when unknown).
func roleLevel(value string) (string, rbac.Level) {
	for _, l := range roleLevels {
		if strings.EqualFold(l.Value, value) {
			return l.Value, l.Level
		}
	}
	return roleLevels[0].Value, roleLevels[0].Level
}

// roleGrant is one role assignment to make: a required role, at the scope
// the chosen level widens its required scope to.
type roleGrant struct {
	Role        string // role name
	RoleID      string // role GUID
	Scope       string // where it is required
	AssignAt    string // where it is assigned
	PrincipalID string
}

// grantsFor widens each requirement's scope to level; requirements that
// widen to the same role at the same scope become one grant.
func grantsFor(principalID string, missing []rbac.Requirement, level rbac.Level) []roleGrant {
	var out []roleGrant
	for _, m := range missing {
		at := m.Scope
		if sc, err := rbac.ParseScope(m.Scope); err == nil {
			at = sc.Ancestor(level)
		}
		dup := false
		for _, g := range out {
			dup = dup || (rbac.SameRoleDefinition(g.RoleID, m.RoleID) && rbac.ScopeEqual(g.AssignAt, at))
		}
		if !dup {
			out = append(out, roleGrant{Role: m.RoleName(), RoleID: m.RoleID, Scope: m.Scope, AssignAt: at, PrincipalID: principalID})
		}
	}
	return out
}

// grantNeeds are what making the grants needs of the signed-in
// principal: roleAssignments/write at each scope.
func grantNeeds(gs []roleGrant) []authorization.Need {
	out := make([]authorization.Need, len(gs))
	for i, g := range gs {
		out[i] = Need(rbac.ActionRoleAssignmentsWrite, g.AssignAt)
	}
	return out
}

// command is the `coffer role assignment create` command of a grant.
func (g roleGrant) command() *CLI {
	return Command("role", "assignment", "create").Flag("assignee", g.PrincipalID).Flag("role", g.Role).Flag("scope", g.AssignAt)
}

// assignRoles makes the grants as the signed-in principal, after the
// decision point allowed every one of them (a forced request is refused as
// the API refuses a role assignment PUT). It returns the assignments made.
func (rq *Request) assignRoles(gs []roleGrant) ([]rbac.Assignment, error) {
	if err := rq.Require(grantNeeds(gs)...); err != nil {
		return nil, err
	}
	var made []rbac.Assignment
	for _, g := range gs {
		a, _, err := rq.p.cfg.Authz.PutAssignment(rq.Context(), g.AssignAt, identity.NewGUID(), authorization.AssignmentInput{
			RoleDefinitionID: g.RoleID, PrincipalID: g.PrincipalID, PrincipalType: rbac.PrincipalServicePrincipal,
			Description: "Assigned from the Coffer portal for " + g.Role + " at " + g.Scope,
		}, rq.Principal.ID)
		if err != nil {
			return made, fmt.Errorf("assign %s at %s: %w", g.Role, g.AssignAt, err)
		}
		made = append(made, a)
	}
	return made, nil
}

// roleTemplate is the role assignment template: a shell script of `coffer
// role assignment create` commands, for someone who may assign roles.
func roleTemplate(purpose string, gs []roleGrant) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&b, "# Role assignments %s.\n", purpose)
	b.WriteString("# Run by a principal that may assign roles at these scopes (Owner or User Access Administrator),\n")
	b.WriteString("# signed in with `coffer login`. Then validate again.\n")
	b.WriteString("set -e\n")
	for _, g := range gs {
		b.WriteString(g.command().String())
		b.WriteString("\n")
	}
	return b.String()
}
