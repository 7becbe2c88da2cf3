package rbac

import (
	"fmt"
	"slices"
	"strings"

	"coffer/internal/odata"
)

// AssignmentFilter is a parsed role assignment list $filter. The zero value
// is "no filter".
type AssignmentFilter struct {
	// AtScope (atScope()) keeps assignments at or above the listed scope;
	// without it a list returns assignments at, above and below it.
	AtScope bool
	// PrincipalID (principalId eq '{id}') keeps the principal's assignments.
	PrincipalID string
	// AssignedTo (assignedTo('{id}')) keeps the principal's assignments;
	// Azure adds its groups' assignments, which Coffer does not model.
	AssignedTo string
}

// ParseAssignmentFilter parses the $filter of a role assignment list:
// "atScope()", "principalId eq '{id}'", "assignedTo('{id}')", and
// conjunctions of atScope() with one of the others joined by "and".
// Keywords are case-insensitive; an empty string is no filter.
func ParseAssignmentFilter(s string) (AssignmentFilter, error) {
	var f AssignmentFilter
	terms, err := parseFilter(s)
	if err != nil {
		return f, err
	}
	seen := map[string]bool{}
	for _, t := range terms {
		key := strings.ToLower(t.name)
		if seen[key] {
			return AssignmentFilter{}, fmt.Errorf("%w: %q: %s given twice", ErrInvalidFilter, s, t.name)
		}
		seen[key] = true
		switch {
		case key == "atscope" && t.call && t.arg == nil:
			f.AtScope = true
		case key == "principalid" && !t.call && t.arg != nil && *t.arg != "":
			f.PrincipalID = *t.arg
		case key == "assignedto" && t.call && t.arg != nil && *t.arg != "":
			f.AssignedTo = *t.arg
		default:
			return AssignmentFilter{}, fmt.Errorf("%w: %q: unsupported term %s", ErrInvalidFilter, s, t.name)
		}
	}
	if f.PrincipalID != "" && f.AssignedTo != "" {
		return AssignmentFilter{}, fmt.Errorf("%w: %q: principalId and assignedTo cannot be combined", ErrInvalidFilter, s)
	}
	return f, nil
}

// String returns the filter in canonical $filter syntax ("" for none).
func (f AssignmentFilter) String() string {
	var parts []string
	if f.AtScope {
		parts = append(parts, "atScope()")
	}
	if f.PrincipalID != "" {
		parts = append(parts, "principalId eq "+odata.Quote(f.PrincipalID))
	}
	if f.AssignedTo != "" {
		parts = append(parts, "assignedTo("+odata.Quote(f.AssignedTo)+")")
	}
	return strings.Join(parts, " and ")
}

// Match reports whether a belongs in a list at listScope under the filter.
func (f AssignmentFilter) Match(a Assignment, listScope string) bool {
	if f.PrincipalID != "" && !strings.EqualFold(a.PrincipalID, f.PrincipalID) {
		return false
	}
	if f.AssignedTo != "" && !strings.EqualFold(a.PrincipalID, f.AssignedTo) {
		return false
	}
	if ScopeContains(a.Scope, listScope) {
		return true
	}
	return !f.AtScope && ScopeContains(listScope, a.Scope)
}

// FilterAssignments returns the assignments a list at listScope returns
// under f, in their original order.
func FilterAssignments(assignments []Assignment, listScope string, f AssignmentFilter) []Assignment {
	var out []Assignment
	for _, a := range assignments {
		if f.Match(a, listScope) {
			out = append(out, a)
		}
	}
	return out
}

// RoleDefinitionFilter is a parsed role definition list $filter:
// "roleName eq '{name}'", "type eq 'BuiltInRole'|'CustomRole'", or both
// joined by "and". The zero value is "no filter".
type RoleDefinitionFilter struct {
	RoleName string
	Type     string
}

// ParseRoleDefinitionFilter parses a role definition list $filter.
func ParseRoleDefinitionFilter(s string) (RoleDefinitionFilter, error) {
	var f RoleDefinitionFilter
	terms, err := parseFilter(s)
	if err != nil {
		return f, err
	}
	seen := map[string]bool{}
	for _, t := range terms {
		key := strings.ToLower(t.name)
		if seen[key] || t.call || t.arg == nil || *t.arg == "" {
			return RoleDefinitionFilter{}, fmt.Errorf("%w: %q: unsupported term %s", ErrInvalidFilter, s, t.name)
		}
		seen[key] = true
		switch key {
		case "rolename":
			f.RoleName = *t.arg
		case "type":
			f.Type = *t.arg
		default:
			return RoleDefinitionFilter{}, fmt.Errorf("%w: %q: unsupported term %s", ErrInvalidFilter, s, t.name)
		}
	}
	return f, nil
}

// String returns the filter in canonical $filter syntax ("" for none).
func (f RoleDefinitionFilter) String() string {
	var parts []string
	if f.RoleName != "" {
		parts = append(parts, "roleName eq "+odata.Quote(f.RoleName))
	}
	if f.Type != "" {
		parts = append(parts, "type eq "+odata.Quote(f.Type))
	}
	return strings.Join(parts, " and ")
}

// Match reports whether d passes the filter (names and types compared
// case-insensitively).
func (f RoleDefinitionFilter) Match(d RoleDefinition) bool {
	if f.RoleName != "" && !strings.EqualFold(d.RoleName, f.RoleName) {
		return false
	}
	if f.Type != "" && !strings.EqualFold(d.RoleType, f.Type) {
		return false
	}
	return true
}

// ListRoleDefinitions returns the role definitions visible at scope that
// pass f: the built-in roles (in their fixed order) then p's custom roles
// assignable at scope, sorted by name. A nil p lists built-ins only.
func ListRoleDefinitions(p *Policy, scope string, f RoleDefinitionFilter) []RoleDefinition {
	var out []RoleDefinition
	seen := map[string]bool{}
	for _, d := range builtins {
		if p != nil {
			if o, ok := p.Roles[d.ID]; ok {
				d = o
			}
		}
		seen[d.ID] = true
		if f.Match(d) {
			out = append(out, d.Clone())
		}
	}
	if p == nil {
		return out
	}
	var custom []RoleDefinition
	for id, d := range p.Roles {
		if seen[strings.ToLower(id)] || !d.AssignableAt(scope) || !f.Match(d) {
			continue
		}
		custom = append(custom, d.Clone())
	}
	slices.SortFunc(custom, func(a, b RoleDefinition) int {
		if c := strings.Compare(strings.ToLower(a.RoleName), strings.ToLower(b.RoleName)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return append(out, custom...)
}

// filterTerm is one term of a $filter conjunction: name(arg) / name() when
// call is set, else name eq arg.
type filterTerm struct {
	name string
	call bool
	arg  *string
}

// parseFilter parses a conjunction of terms, each name() or name('arg') or
// name eq value (see package odata for the syntax); anything else — or,
// not, other operators, several arguments — is ErrInvalidFilter.
func parseFilter(s string) ([]filterTerm, error) {
	e, err := odata.Parse(s)
	var exprs []odata.Expr
	if err == nil {
		exprs, err = odata.Conjuncts(e)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %s", ErrInvalidFilter, s, odata.Reason(err))
	}
	terms := make([]filterTerm, 0, len(exprs))
	for _, x := range exprs {
		switch x := x.(type) {
		case *odata.Call:
			t := filterTerm{name: x.Name, call: true}
			switch {
			case len(x.Args) == 1 && x.Args[0].Quoted:
				t.arg = &x.Args[0].Text
			case len(x.Args) > 0:
				return nil, fmt.Errorf("%w: %q: %s takes no argument or one quoted string", ErrInvalidFilter, s, x.Name)
			}
			terms = append(terms, t)
		case *odata.Compare:
			if x.Op != odata.Eq {
				return nil, fmt.Errorf("%w: %q: %s takes eq, not %s", ErrInvalidFilter, s, x.Name, x.Op)
			}
			terms = append(terms, filterTerm{name: x.Name, arg: &x.Value.Text})
		}
	}
	return terms, nil
}
