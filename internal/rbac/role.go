package rbac

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Role types as they appear in a role definition's properties.type.
const (
	BuiltInRole = "BuiltInRole"
	CustomRole  = "CustomRole"
)

// GUIDs of the built-in roles Coffer ships (the same in every Azure tenant).
const (
	RoleOwner                   = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
	RoleContributor             = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	RoleReader                  = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	RoleUserAccessAdministrator = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
	RoleDiskBackupReader        = "3e5e47e6-65f7-47ef-90b5-e5dd4d455f24"
	RoleDiskSnapshotContributor = "7efff54f-a5b4-42b5-a1c5-5411624893ce"
	RoleDiskRestoreOperator     = "b50d9833-a0cb-478e-945f-707fcc997c13"
	RoleBackupContributor       = "5e467623-bb1f-42f4-a55d-6e525e11384b"
	RoleBackupOperator          = "00c29273-979b-4161-815c-10b084fb9324"
	RoleBackupReader            = "a795c7a0-d4a2-40c1-ae25-d81f01202912"
)

// Permission is one entry of a role definition's permissions list. The JSON
// tags are the ARM wire names.
type Permission struct {
	Actions        []string `json:"actions"`
	NotActions     []string `json:"notActions"`
	DataActions    []string `json:"dataActions"`
	NotDataActions []string `json:"notDataActions"`
}

// RoleDefinition is a role: a named set of permissions. ID is the bare GUID
// (lower case); the resource ID is built by RoleDefinitionResourceID.
type RoleDefinition struct {
	ID               string
	RoleName         string
	Description      string
	RoleType         string // BuiltInRole or CustomRole
	Permissions      []Permission
	AssignableScopes []string
	CreatedOn        time.Time
	UpdatedOn        time.Time
	CreatedBy        string
	UpdatedBy        string
}

// grants reports whether the role's effective actions (actions minus
// notActions, per permission entry) include action; data selects the
// dataActions/notDataActions lists. It returns the granting pattern, or the
// notActions pattern that removed it.
func (d RoleDefinition) grants(action string, data bool) (granted bool, pattern, excludedBy string) {
	for _, p := range d.Permissions {
		allow, deny := p.Actions, p.NotActions
		if data {
			allow, deny = p.DataActions, p.NotDataActions
		}
		pat, ok := matchAny(allow, action)
		if !ok {
			continue
		}
		if ex, hit := matchAny(deny, action); hit {
			excludedBy = ex
			continue
		}
		return true, pat, ""
	}
	return false, "", excludedBy
}

// Grants reports whether the role, assigned at some scope, permits the
// control-plane action at that scope.
func (d RoleDefinition) Grants(action string) bool {
	ok, _, _ := d.grants(action, false)
	return ok
}

// GrantsData reports whether the role permits the data action.
func (d RoleDefinition) GrantsData(action string) bool {
	ok, _, _ := d.grants(action, true)
	return ok
}

// AssignableAt reports whether one of the role's assignableScopes contains
// scope.
func (d RoleDefinition) AssignableAt(scope string) bool {
	for _, s := range d.AssignableScopes {
		if ScopeContains(s, scope) {
			return true
		}
	}
	return false
}

// Clone returns a deep copy of d, so callers may modify slices freely.
func (d RoleDefinition) Clone() RoleDefinition {
	c := d
	c.AssignableScopes = slices.Clone(d.AssignableScopes)
	c.Permissions = make([]Permission, len(d.Permissions))
	for i, p := range d.Permissions {
		c.Permissions[i] = Permission{
			Actions:        slices.Clone(p.Actions),
			NotActions:     slices.Clone(p.NotActions),
			DataActions:    slices.Clone(p.DataActions),
			NotDataActions: slices.Clone(p.NotDataActions),
		}
	}
	return c
}

// builtinJSON holds the built-in role definitions, copied from the Azure
// built-in roles reference (MicrosoftDocs/azure-docs,
// articles/role-based-access-control/built-in-roles/): privileged.md (Owner,
// Contributor, User Access Administrator; ms.date 07/01/2026), general.md
// (Reader; 02/23/2026), compute.md (Disk Backup Reader, Disk Snapshot
// Contributor, Disk Restore Operator) and storage.md (Backup Contributor,
// Backup Operator, Backup Reader; 07/01/2026). Action lists are verbatim,
// including the duplicate entries Azure itself returns.
//
//go:embed builtin_roles.json
var builtinJSON []byte

type builtinRecord struct {
	Name             string       `json:"name"`
	RoleName         string       `json:"roleName"`
	RoleType         string       `json:"roleType"`
	Description      string       `json:"description"`
	AssignableScopes []string     `json:"assignableScopes"`
	Permissions      []Permission `json:"permissions"`
}

var builtins = mustLoadBuiltins(builtinJSON)

func mustLoadBuiltins(data []byte) []RoleDefinition {
	var recs []builtinRecord
	if err := json.Unmarshal(data, &recs); err != nil {
		panic(fmt.Sprintf("rbac: decode builtin_roles.json: %v", err))
	}
	out := make([]RoleDefinition, 0, len(recs))
	for _, r := range recs {
		if !IsGUID(r.Name) {
			panic(fmt.Sprintf("rbac: builtin role %q: bad GUID %q", r.RoleName, r.Name))
		}
		out = append(out, RoleDefinition{
			ID:               strings.ToLower(r.Name),
			RoleName:         r.RoleName,
			Description:      r.Description,
			RoleType:         r.RoleType,
			Permissions:      r.Permissions,
			AssignableScopes: r.AssignableScopes,
		})
	}
	return out
}

// BuiltInRoles returns copies of the built-in role definitions, in a fixed
// order.
func BuiltInRoles() []RoleDefinition {
	out := make([]RoleDefinition, len(builtins))
	for i, d := range builtins {
		out[i] = d.Clone()
	}
	return out
}

// BuiltInRoleByID returns the built-in role with the given ID (GUID or any
// role definition ID form).
func BuiltInRoleByID(id string) (RoleDefinition, bool) {
	d, ok := builtinByID(id)
	if !ok {
		return RoleDefinition{}, false
	}
	return d.Clone(), true
}

func builtinByID(id string) (RoleDefinition, bool) {
	guid, err := ParseRoleDefinitionID(id)
	if err != nil {
		return RoleDefinition{}, false
	}
	for _, d := range builtins {
		if d.ID == guid {
			return d, true
		}
	}
	return RoleDefinition{}, false
}

// BuiltInRoleByName returns the built-in role whose roleName equals name,
// ignoring case.
func BuiltInRoleByName(name string) (RoleDefinition, bool) {
	for _, d := range builtins {
		if strings.EqualFold(d.RoleName, name) {
			return d.Clone(), true
		}
	}
	return RoleDefinition{}, false
}
