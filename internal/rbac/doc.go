// Package rbac is Coffer's role-based access control: Azure's built-in role
// definitions (real GUIDs and action lists), role assignments at scopes, and
// the pure decision function Allowed(principal, action, scope).
//
// The package is data plus functions. It does no I/O: callers load role
// assignments from the metadata store, build a Policy, and ask it. The rules
// follow Azure Resource Manager:
//
//   - An assignment applies at its scope and at every scope below it. Scopes
//     are compared by path segment and case-insensitively, so
//     /subscriptions/A/resourceGroups/rg contains
//     /subscriptions/a/resourcegroups/RG/providers/Microsoft.Compute/disks/d
//     but not /subscriptions/a/resourceGroups/rg2; "/" contains every scope.
//   - Action strings match case-insensitively; "*" in a pattern matches any
//     run of characters, "/" included ("*", "*/read", "Microsoft.Compute/*",
//     "Microsoft.Authorization/*/read").
//   - A role's effective permissions are its actions minus its notActions.
//     NotActions are not deny rules: they never take away what another role
//     assignment grants.
//   - Control-plane actions and data actions are separate: "*" in actions
//     grants no data action.
//
// Role assignment conditions (ABAC), deny assignments, group membership and
// management-group scopes are not modelled.
package rbac
