package rbac

import (
	"strings"
	"testing"
)

// The GUID table of docs azure-api.md §3 "Built-in roles" (cross-checked there
// against the Azure built-in roles reference).
var wantBuiltins = map[string]string{
	"Owner":                     "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
	"Contributor":               "b24988ac-6180-42a0-ab88-20f7382dd24c",
	"Reader":                    "acdd72a7-3385-48ef-bd42-f606fba81ae7",
	"User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
	"Disk Backup Reader":        "3e5e47e6-65f7-47ef-90b5-e5dd4d455f24",
	"Disk Snapshot Contributor": "7efff54f-a5b4-42b5-a1c5-5411624893ce",
	"Disk Restore Operator":     "b50d9833-a0cb-478e-945f-707fcc997c13",
	"Backup Contributor":        "5e467623-bb1f-42f4-a55d-6e525e11384b",
	"Backup Operator":           "00c29273-979b-4161-815c-10b084fb9324",
	"Backup Reader":             "a795c7a0-d4a2-40c1-ae25-d81f01202912",
}

func TestBuiltInRolesMatchReference(t *testing.T) {
	roles := BuiltInRoles()
	if len(roles) != len(wantBuiltins) {
		t.Errorf("BuiltInRoles() has %d roles, want %d", len(roles), len(wantBuiltins))
	}
	ids, names := map[string]string{}, map[string]string{}
	for _, r := range roles {
		want, ok := wantBuiltins[r.RoleName]
		if !ok {
			t.Errorf("unexpected built-in role %q", r.RoleName)
		} else if r.ID != want {
			t.Errorf("role %q: ID = %s, want %s", r.RoleName, r.ID, want)
		}
		if other, dup := ids[r.ID]; dup {
			t.Errorf("roles %q and %q share GUID %s", other, r.RoleName, r.ID)
		}
		ids[r.ID] = r.RoleName
		key := strings.ToLower(r.RoleName)
		if _, dup := names[key]; dup {
			t.Errorf("role name %q used twice", r.RoleName)
		}
		names[key] = r.ID
		if r.RoleType != BuiltInRole {
			t.Errorf("role %q: type = %q, want %q", r.RoleName, r.RoleType, BuiltInRole)
		}
		if len(r.AssignableScopes) != 1 || r.AssignableScopes[0] != "/" {
			t.Errorf("role %q: assignableScopes = %q, want [/]", r.RoleName, r.AssignableScopes)
		}
		if r.Description == "" {
			t.Errorf("role %q: empty description", r.RoleName)
		}
		if len(r.Permissions) != 1 || len(r.Permissions[0].Actions) == 0 {
			t.Errorf("role %q: permissions = %+v, want one entry with actions", r.RoleName, r.Permissions)
		}
		for _, p := range r.Permissions {
			for _, list := range [][]string{p.Actions, p.NotActions, p.DataActions, p.NotDataActions} {
				if list == nil {
					t.Errorf("role %q: nil permission list (want [] for none)", r.RoleName)
				}
				for _, a := range list {
					if a == "" || strings.ContainsAny(a, " \t") {
						t.Errorf("role %q: bad action %q", r.RoleName, a)
					}
				}
			}
		}
	}
	// The constants agree with the table.
	consts := map[string]string{
		"Owner": RoleOwner, "Contributor": RoleContributor, "Reader": RoleReader,
		"User Access Administrator": RoleUserAccessAdministrator, "Disk Backup Reader": RoleDiskBackupReader,
		"Disk Snapshot Contributor": RoleDiskSnapshotContributor, "Disk Restore Operator": RoleDiskRestoreOperator,
		"Backup Contributor": RoleBackupContributor, "Backup Operator": RoleBackupOperator, "Backup Reader": RoleBackupReader,
	}
	for name, id := range consts {
		if wantBuiltins[name] != id {
			t.Errorf("constant for %q = %s, want %s", name, id, wantBuiltins[name])
		}
	}
}

func TestBuiltInRoleLookup(t *testing.T) {
	for name, id := range wantBuiltins {
		for _, form := range []string{
			id,
			strings.ToUpper(id),
			"/providers/Microsoft.Authorization/roleDefinitions/" + id,
			"/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleDefinitions/" + id,
		} {
			d, ok := BuiltInRoleByID(form)
			if !ok || d.RoleName != name {
				t.Errorf("BuiltInRoleByID(%q) = %q, %v; want %q", form, d.RoleName, ok, name)
			}
		}
		d, ok := BuiltInRoleByName(strings.ToUpper(name))
		if !ok || d.ID != id {
			t.Errorf("BuiltInRoleByName(%q) = %s, %v; want %s", name, d.ID, ok, id)
		}
	}
	if _, ok := BuiltInRoleByID(unknown); ok {
		t.Errorf("BuiltInRoleByID(unknown) found a role")
	}
	if _, ok := BuiltInRoleByName("Nope"); ok {
		t.Errorf("BuiltInRoleByName(Nope) found a role")
	}
	// Copies are independent of the package's data.
	d, _ := BuiltInRoleByID(RoleReader)
	d.Permissions[0].Actions[0] = "*"
	if again, _ := BuiltInRoleByID(RoleReader); again.Permissions[0].Actions[0] != "*/read" {
		t.Errorf("modifying a returned role changed the built-in: %q", again.Permissions[0].Actions)
	}
}

// The facts the rest of Coffer relies on, stated against the data.
func TestBuiltInRoleFacts(t *testing.T) {
	tests := []struct {
		role, action string
		want         bool
	}{
		{RoleDiskBackupReader, "Microsoft.Compute/disks/read", true},
		{RoleDiskBackupReader, "Microsoft.Compute/disks/beginGetAccess/action", true},
		{RoleDiskBackupReader, "Microsoft.Compute/snapshots/write", false},
		{RoleDiskSnapshotContributor, "Microsoft.Compute/snapshots/write", true},
		{RoleDiskSnapshotContributor, "Microsoft.Compute/snapshots/endGetAccess/action", true},
		{RoleDiskSnapshotContributor, "Microsoft.Resources/subscriptions/resourceGroups/read", true},
		{RoleDiskSnapshotContributor, "Microsoft.Compute/disks/beginGetAccess/action", true},
		{RoleDiskSnapshotContributor, "Microsoft.Compute/disks/write", false},
		{RoleDiskRestoreOperator, "Microsoft.Compute/disks/write", true},
		{RoleDiskRestoreOperator, "Microsoft.Compute/disks/delete", false},
		{RoleReader, "Microsoft.DataProtection/backupVaults/read", true},
		{RoleReader, "Microsoft.DataProtection/backupVaults/write", false},
		{RoleContributor, "Microsoft.Authorization/roleAssignments/write", false},
		{RoleContributor, "Microsoft.Authorization/roleDefinitions/delete", false},
		{RoleContributor, "Microsoft.Compute/galleries/share/action", false},
		{RoleContributor, "Microsoft.DataProtection/backupVaults/delete", true},
		{RoleOwner, "Microsoft.Authorization/roleAssignments/write", true},
		{RoleUserAccessAdministrator, "Microsoft.Authorization/roleAssignments/delete", true},
		{RoleBackupContributor, "Microsoft.DataProtection/backupVaults/write", true},
		{RoleBackupContributor, "Microsoft.DataProtection/backupVaults/delete", false},
		{RoleBackupOperator, "Microsoft.DataProtection/backupVaults/backupInstances/backup/action", true},
		{RoleBackupOperator, "Microsoft.DataProtection/backupVaults/write", false},
		{RoleBackupOperator, "Microsoft.DataProtection/backupVaults/backupInstances/delete", false},
		{RoleBackupReader, "Microsoft.DataProtection/backupVaults/backupInstances/read", true},
		{RoleBackupReader, "Microsoft.DataProtection/backupVaults/backupInstances/backup/action", false},
	}
	for _, tc := range tests {
		d, ok := BuiltInRoleByID(tc.role)
		if !ok {
			t.Fatalf("no built-in role %s", tc.role)
		}
		if got := d.Grants(tc.action); got != tc.want {
			t.Errorf("%s.Grants(%q) = %v, want %v", d.RoleName, tc.action, got, tc.want)
		}
	}
}

func TestMatchAction(t *testing.T) {
	tests := []struct {
		pattern, action string
		want            bool
	}{
		{"*", "Microsoft.Compute/disks/read", true},
		{"*", "", false},
		{"", "x", false},
		{"*/read", "Microsoft.Compute/disks/read", true},
		{"*/read", "Microsoft.Compute/disks/READ", true},
		{"*/read", "Microsoft.Compute/disks/write", false},
		{"*/read", "read", false},
		{"*/read", "/read", true},
		{"Microsoft.Compute/*", "Microsoft.Compute/disks/write", true},
		{"Microsoft.Compute/*", "microsoft.compute/x", true},
		{"Microsoft.Compute/*", "Microsoft.Compute", false},
		{"Microsoft.Compute/*", "Microsoft.ComputeX/disks/write", false},
		{"Microsoft.Authorization/*/read", "Microsoft.Authorization/roleAssignments/read", true},
		{"Microsoft.Authorization/*/read", "Microsoft.Authorization/policy/assignments/read", true},
		{"Microsoft.Authorization/*/read", "Microsoft.Authorization/roleAssignments/write", false},
		{"Microsoft.Authorization/*/Write", "Microsoft.Authorization/roleAssignments/write", true},
		{"Microsoft.Compute/disks/*", "Microsoft.Compute/disks/beginGetAccess/action", true},
		{"Microsoft.Compute/disks/*", "Microsoft.Compute/disks", false},
		{"Microsoft.Compute/disks/read", "Microsoft.Compute/disks/read", true},
		{"Microsoft.Compute/disks/read", "Microsoft.Compute/disks/readx", false},
		{"*/*/action", "a/b/c/action", true},
		{"a**b", "ab", true},
		{"a*b*c", "abxbxc", true},
		{"a*b*c", "abxbx", false},
	}
	for _, tc := range tests {
		if got := MatchAction(tc.pattern, tc.action); got != tc.want {
			t.Errorf("MatchAction(%q, %q) = %v, want %v", tc.pattern, tc.action, got, tc.want)
		}
	}
}
