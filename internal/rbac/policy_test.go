package rbac

import (
	"testing"
)

const (
	sub     = "a925f2f7-5c63-4b7b-8799-25a5f97bc3b2"
	sub2    = "11111111-2222-3333-4444-555555555555"
	alice   = "ce2ce14e-85d7-4629-bdbc-454d0519d987"
	bob     = "0b5fe924-9a61-425c-96af-cfe6e287ca2d"
	vault   = "9f1c2d3e-4b5a-4c6d-8e7f-a0b1c2d3e4f5"
	nobody  = "00000000-0000-0000-0000-000000000001"
	unknown = "deadbeef-0000-4000-8000-000000000000"
)

var (
	subScope   = "/subscriptions/" + sub
	rgScope    = subScope + "/resourceGroups/rg"
	rg2Scope   = subScope + "/resourceGroups/rg2"
	snapRG     = subScope + "/resourceGroups/snapshots"
	restoreRG  = subScope + "/resourceGroups/restored"
	diskID     = rgScope + "/providers/Microsoft.Compute/disks/d1"
	disk2ID    = rgScope + "/providers/Microsoft.Compute/disks/d2"
	snapshotID = snapRG + "/providers/Microsoft.Compute/snapshots/s1"
	vaultID    = rgScope + "/providers/Microsoft.DataProtection/backupVaults/v1"
	instanceID = vaultID + "/backupInstances/bi1"
)

func assign(name, principal, role, scope string) Assignment {
	return Assignment{Name: name, PrincipalID: principal, RoleDefinitionID: role, Scope: scope}
}

func TestAllowed(t *testing.T) {
	dataRole := RoleDefinition{
		ID: "c0ffee00-0000-4000-8000-000000000001", RoleName: "Blob Data Reader (test)", RoleType: CustomRole,
		AssignableScopes: []string{"/"},
		Permissions: []Permission{{
			Actions:        []string{"Microsoft.Storage/storageAccounts/blobServices/containers/read"},
			DataActions:    []string{"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"},
			NotDataActions: []string{"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"},
		}},
	}
	wildRole := RoleDefinition{
		ID: "c0ffee00-0000-4000-8000-000000000002", RoleName: "Wildcards (test)", RoleType: CustomRole,
		AssignableScopes: []string{"/"},
		Permissions: []Permission{{
			Actions: []string{"Microsoft.Compute/disks/*", "Microsoft.Network/*/read", "*/beginGetAccess/action"},
		}},
	}
	noDiskWrite := RoleDefinition{
		ID: "c0ffee00-0000-4000-8000-000000000003", RoleName: "All but disk write (test)", RoleType: CustomRole,
		AssignableScopes: []string{"/"},
		Permissions:      []Permission{{Actions: []string{"*"}, NotActions: []string{"Microsoft.Compute/disks/write"}}},
	}
	twoBlocks := RoleDefinition{
		ID: "c0ffee00-0000-4000-8000-000000000004", RoleName: "Two blocks (test)", RoleType: CustomRole,
		AssignableScopes: []string{"/"},
		Permissions: []Permission{
			{Actions: []string{"Microsoft.Compute/*"}, NotActions: []string{"Microsoft.Compute/snapshots/*"}},
			{Actions: []string{"Microsoft.Compute/snapshots/read"}},
		},
	}

	p := NewPolicy([]Assignment{
		// alice: Owner on rg, Reader on the subscription.
		assign("00000000-0000-4000-8000-00000000000a", alice, RoleOwner, rgScope),
		assign("00000000-0000-4000-8000-00000000000b", alice, RoleReader, subScope),
		// bob: Contributor on the subscription (upper-case GUID, mixed-case scope),
		// plus a custom role whose notActions remove disk write.
		assign("00000000-0000-4000-8000-00000000000c", bob, "B24988AC-6180-42A0-AB88-20F7382DD24C", "/SUBSCRIPTIONS/"+sub+"/"),
		assign("00000000-0000-4000-8000-00000000000d", bob, "/subscriptions/"+sub+"/providers/Microsoft.Authorization/roleDefinitions/"+noDiskWrite.ID, rg2Scope),
		assign("00000000-0000-4000-8000-00000000000e", bob, dataRole.ID, rg2Scope),
		// vault identity: the disk backup roles.
		assign("00000000-0000-4000-8000-000000000010", vault, RoleDiskBackupReader, diskID),
		assign("00000000-0000-4000-8000-000000000011", vault, "/providers/Microsoft.Authorization/roleDefinitions/"+RoleDiskSnapshotContributor, snapRG),
		assign("00000000-0000-4000-8000-000000000012", vault, RoleDiskRestoreOperator, restoreRG),
		// an assignment to a role nobody defined is ignored.
		assign("00000000-0000-4000-8000-000000000013", nobody, unknown, "/"),
		// an assignment with a bad scope is ignored.
		assign("00000000-0000-4000-8000-000000000014", nobody, RoleOwner, "subscriptions//x"),
	}, dataRole, wildRole, noDiskWrite, twoBlocks)

	// Per-role principals for the built-in backup roles, at the subscription.
	rolePrincipal := map[string]string{
		RoleBackupContributor:       "10000000-0000-4000-8000-000000000001",
		RoleBackupOperator:          "10000000-0000-4000-8000-000000000002",
		RoleBackupReader:            "10000000-0000-4000-8000-000000000003",
		RoleUserAccessAdministrator: "10000000-0000-4000-8000-000000000004",
		wildRole.ID:                 "10000000-0000-4000-8000-000000000005",
		twoBlocks.ID:                "10000000-0000-4000-8000-000000000006",
		RoleOwner:                   "10000000-0000-4000-8000-000000000007",
		dataRole.ID:                 "10000000-0000-4000-8000-000000000008",
	}
	i := 0x100
	for role, principal := range rolePrincipal {
		i++
		name := "20000000-0000-4000-8000-" + sprintf12(i)
		p.Assignments = append(p.Assignments, assign(name, principal, role, subScope))
	}
	bc, bo, br := rolePrincipal[RoleBackupContributor], rolePrincipal[RoleBackupOperator], rolePrincipal[RoleBackupReader]
	uaa, wild, two := rolePrincipal[RoleUserAccessAdministrator], rolePrincipal[wildRole.ID], rolePrincipal[twoBlocks.ID]
	subOwner, reader := rolePrincipal[RoleOwner], rolePrincipal[dataRole.ID]

	const (
		diskRead        = "Microsoft.Compute/disks/read"
		diskWrite       = "Microsoft.Compute/disks/write"
		diskDelete      = "Microsoft.Compute/disks/delete"
		diskBeginAccess = "Microsoft.Compute/disks/beginGetAccess/action"
		snapWrite       = "Microsoft.Compute/snapshots/write"
		snapRead        = "Microsoft.Compute/snapshots/read"
		snapDelete      = "Microsoft.Compute/snapshots/delete"
		snapBeginAccess = "Microsoft.Compute/snapshots/beginGetAccess/action"
		rgRead          = "Microsoft.Resources/subscriptions/resourceGroups/read"
		raWrite         = ActionRoleAssignmentsWrite
		raRead          = ActionRoleAssignmentsRead
		vaultWrite      = "Microsoft.DataProtection/backupVaults/write"
		vaultRead       = "Microsoft.DataProtection/backupVaults/read"
		vaultDelete     = "Microsoft.DataProtection/backupVaults/delete"
		policyWrite     = "Microsoft.DataProtection/backupVaults/backupPolicies/write"
		policyRead      = "Microsoft.DataProtection/backupVaults/backupPolicies/read"
		policyDelete    = "Microsoft.DataProtection/backupVaults/backupPolicies/delete"
		biWrite         = "Microsoft.DataProtection/backupVaults/backupInstances/write"
		biDelete        = "Microsoft.DataProtection/backupVaults/backupInstances/delete"
		biRead          = "Microsoft.DataProtection/backupVaults/backupInstances/read"
		biBackup        = "Microsoft.DataProtection/backupVaults/backupInstances/backup/action"
		biRestore       = "Microsoft.DataProtection/backupVaults/backupInstances/restore/action"
		biValidateRest  = "Microsoft.DataProtection/backupVaults/backupInstances/validateRestore/action"
		rpRead          = "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints/read"
		validateBackup  = "Microsoft.DataProtection/backupVaults/validateForBackup/action"
		blobRead        = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
		blobDelete      = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"
	)

	tests := []struct {
		name      string
		policy    *Policy
		principal string
		action    string
		scope     string
		data      bool
		want      bool
	}{
		// Inheritance.
		{"owner at rg: rg itself", p, alice, diskWrite, rgScope, false, true},
		{"owner at rg: disk below", p, alice, diskWrite, diskID, false, true},
		{"owner at rg: nested child resource", p, alice, biBackup, instanceID, false, true},
		{"owner at rg: not the subscription", p, alice, diskWrite, subScope, false, false},
		{"owner at rg: not sibling rg2", p, alice, diskWrite, rg2Scope, false, false},
		{"owner at rg: not a disk in rg2", p, alice, diskWrite, rg2Scope + "/providers/Microsoft.Compute/disks/d1", false, false},
		{"owner at rg: not rg prefix 'rg2' by string", p, alice, diskWrite, subScope + "/resourceGroups/rgx", false, false},
		{"reader at sub: read anywhere below", p, alice, diskRead, rg2Scope + "/providers/Microsoft.Compute/disks/x", false, true},
		{"reader at sub: no write in rg2", p, alice, diskWrite, rg2Scope, false, false},
		{"reader at sub: nothing in another subscription", p, alice, diskRead, "/subscriptions/" + sub2, false, false},
		{"reader at sub: not the root", p, alice, diskRead, "/", false, false},

		// Case-insensitivity.
		{"scope case", p, alice, diskWrite, "/SUBSCRIPTIONS/" + sub + "/RESOURCEGROUPS/RG/providers/microsoft.compute/DISKS/D1", false, true},
		{"scope trailing slash", p, alice, diskWrite, rgScope + "/", false, true},
		{"scope without leading slash", p, alice, diskWrite, rgScope[1:], false, true},
		{"action case", p, alice, "MICROSOFT.COMPUTE/DISKS/WRITE", diskID, false, true},
		{"principal case", p, "CE2CE14E-85D7-4629-BDBC-454D0519D987", diskWrite, diskID, false, true},
		{"upper-case role GUID and scope in assignment", p, bob, diskWrite, diskID, false, true},

		// notActions: Contributor vs Owner.
		{"contributor can write disks", p, bob, diskWrite, diskID, false, true},
		{"contributor cannot write role assignments", p, bob, raWrite, diskID, false, false},
		{"contributor cannot delete role assignments", p, bob, ActionRoleAssignmentsDelete, rgScope, false, false},
		{"contributor cannot elevateAccess", p, bob, "Microsoft.Authorization/elevateAccess/Action", subScope, false, false},
		{"contributor can read role assignments", p, bob, raRead, subScope, false, true},
		{"owner can write role assignments", p, alice, raWrite, diskID, false, true},
		{"owner at sub can write role assignments", p, subOwner, raWrite, subScope, false, true},
		{"user access admin can write role assignments", p, uaa, raWrite, subScope, false, true},
		{"user access admin reads anything", p, uaa, diskRead, diskID, false, true},
		{"user access admin cannot write disks", p, uaa, diskWrite, diskID, false, false},

		// Multiple roles: one role's notActions never cancel another's actions.
		{"notActions of custom role do not cancel contributor", p, bob, diskWrite, rg2Scope + "/providers/Microsoft.Compute/disks/x", false, true},
		{"contributor notActions do not cancel custom '*'", p, bob, raWrite, rg2Scope, false, true},
		{"contributor notActions still apply outside rg2", p, bob, raWrite, rgScope, false, false},
		{"permission blocks are separate", p, two, snapRead, snapshotID, false, true},
		{"first block's notActions", p, two, snapWrite, snapshotID, false, false},
		{"first block grants disks", p, two, diskWrite, diskID, false, true},

		// Wildcards.
		{"'*' matches everything (owner)", p, subOwner, "Some.Provider/any/thing/action", rgScope, false, true},
		{"'*/read' matches reads", p, alice, "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints/read", instanceID, false, true},
		{"'*/read' does not match write", p, alice, "Microsoft.Network/virtualNetworks/write", rg2Scope, false, false},
		{"'*/read' does not match readX", p, alice, "Microsoft.Compute/disks/readX", rg2Scope, false, false},
		{"'Microsoft.Compute/disks/*' matches write", p, wild, diskWrite, diskID, false, true},
		{"'Microsoft.Compute/disks/*' matches deep action", p, wild, diskBeginAccess, diskID, false, true},
		{"'Microsoft.Compute/disks/*' not snapshots", p, wild, snapWrite, snapshotID, false, false},
		{"'Microsoft.Compute/disks/*' not 'disksX'", p, wild, "Microsoft.Compute/disksX/write", diskID, false, false},
		{"'Microsoft.Network/*/read' crosses slashes", p, wild, "Microsoft.Network/virtualNetworks/subnets/read", rgScope, false, true},
		{"'Microsoft.Network/*/read' not write", p, wild, "Microsoft.Network/virtualNetworks/write", rgScope, false, false},
		{"'*/beginGetAccess/action' on snapshots", p, wild, snapBeginAccess, snapshotID, false, true},
		{"'Microsoft.Authorization/*/read' (Disk Backup Reader)", p, vault, raRead, diskID, false, true},
		{"'Microsoft.Authorization/*/read' is not write", p, vault, raWrite, diskID, false, false},

		// Data actions vs actions.
		{"data action granted by dataActions", p, bob, blobRead, rg2Scope, true, true},
		{"notDataActions subtract", p, bob, blobDelete, rg2Scope, true, false},
		{"data action is not a control-plane action", p, reader, blobRead, rg2Scope, false, false},
		{"data role: data action at the subscription", p, reader, blobRead, subScope, true, true},
		{"data role: control-plane write not granted", p, reader, diskWrite, diskID, false, false},
		{"owner '*' grants no data action", p, alice, blobRead, rgScope, true, false},
		{"contributor '*' grants no data action", p, bob, blobRead, rgScope, true, false},
		{"control-plane action of data role", p, bob, "Microsoft.Storage/storageAccounts/blobServices/containers/read", rg2Scope, false, true},

		// Unknown, empty, nil.
		{"unknown principal", p, "ffffffff-ffff-4fff-8fff-ffffffffffff", diskRead, diskID, false, false},
		{"empty principal", p, "", diskRead, diskID, false, false},
		{"empty action", p, alice, "", diskID, false, false},
		{"invalid scope", p, alice, diskRead, "/subscriptions//x", false, false},
		{"empty scope", p, alice, diskRead, "", false, false},
		{"management group scope", p, alice, diskRead, "/providers/Microsoft.Management/managementGroups/mg", false, false},
		{"unknown role ID in assignment is ignored", p, nobody, diskRead, diskID, false, false},
		{"assignment with invalid scope is ignored", p, nobody, diskRead, subScope, false, false},
		{"nil policy", nil, alice, diskRead, diskID, false, false},
		{"nil policy data", nil, alice, blobRead, diskID, true, false},
		{"empty policy", &Policy{}, alice, diskRead, diskID, false, false},
		{"zero policy uses built-ins", &Policy{Assignments: []Assignment{assign("30000000-0000-4000-8000-000000000001", alice, RoleReader, "/")}}, alice, diskRead, diskID, false, true},
		{"root assignment covers everything", &Policy{Assignments: []Assignment{assign("30000000-0000-4000-8000-000000000001", alice, RoleOwner, "/")}}, alice, raWrite, "/subscriptions/" + sub2, false, true},

		// What Coffer's disk backup needs, role by role.
		{"Disk Backup Reader: disks/read on the disk", p, vault, diskRead, diskID, false, true},
		{"Disk Backup Reader: beginGetAccess on the disk", p, vault, diskBeginAccess, diskID, false, true},
		{"Disk Backup Reader: not on another disk", p, vault, diskBeginAccess, disk2ID, false, false},
		{"Disk Backup Reader: cannot write the disk", p, vault, diskWrite, diskID, false, false},
		{"Disk Backup Reader: cannot endGetAccess", p, vault, "Microsoft.Compute/disks/endGetAccess/action", diskID, false, false},
		{"Disk Snapshot Contributor: snapshots/write in snapshot RG", p, vault, snapWrite, snapshotID, false, true},
		{"Disk Snapshot Contributor: snapshots/write at the RG", p, vault, snapWrite, snapRG, false, true},
		{"Disk Snapshot Contributor: snapshots/read and delete", p, vault, snapDelete, snapshotID, false, true},
		{"Disk Snapshot Contributor: snapshot beginGetAccess", p, vault, snapBeginAccess, snapshotID, false, true},
		{"Disk Snapshot Contributor: resourceGroups/read", p, vault, rgRead, snapRG, false, true},
		{"Disk Snapshot Contributor: not in the disk's RG", p, vault, snapWrite, rgScope + "/providers/Microsoft.Compute/snapshots/s", false, false},
		{"Disk Snapshot Contributor: no disk write", p, vault, diskWrite, snapRG + "/providers/Microsoft.Compute/disks/x", false, false},
		{"Disk Restore Operator: disks/write in target RG", p, vault, diskWrite, restoreRG + "/providers/Microsoft.Compute/disks/new", false, true},
		{"Disk Restore Operator: resourceGroups/read", p, vault, rgRead, restoreRG, false, true},
		{"Disk Restore Operator: no disk delete", p, vault, diskDelete, restoreRG + "/providers/Microsoft.Compute/disks/new", false, false},
		{"Disk Restore Operator: not in other RGs", p, vault, diskWrite, rg2Scope + "/providers/Microsoft.Compute/disks/new", false, false},
		{"vault identity cannot assign roles", p, vault, raWrite, snapRG, false, false},

		{"Backup Reader: reads vaults", p, br, vaultRead, vaultID, false, true},
		{"Backup Reader: reads recovery points", p, br, rpRead, instanceID, false, true},
		{"Backup Reader: reads policies", p, br, policyRead, vaultID + "/backupPolicies/p", false, true},
		{"Backup Reader: cannot backup", p, br, biBackup, instanceID, false, false},
		{"Backup Reader: cannot restore", p, br, biRestore, instanceID, false, false},
		{"Backup Reader: cannot configure protection", p, br, biWrite, instanceID, false, false},
		{"Backup Reader: cannot write policies", p, br, policyWrite, vaultID + "/backupPolicies/p", false, false},
		{"Backup Reader: cannot read disks", p, br, diskRead, diskID, false, false},

		{"Backup Operator: trigger backup", p, bo, biBackup, instanceID, false, true},
		{"Backup Operator: restore", p, bo, biRestore, instanceID, false, true},
		{"Backup Operator: validate restore", p, bo, biValidateRest, instanceID, false, true},
		{"Backup Operator: validate for backup", p, bo, validateBackup, vaultID, false, true},
		{"Backup Operator: configure protection", p, bo, biWrite, instanceID, false, true},
		{"Backup Operator: cannot create vaults", p, bo, vaultWrite, vaultID, false, false},
		{"Backup Operator: cannot delete vaults", p, bo, vaultDelete, vaultID, false, false},
		{"Backup Operator: cannot remove backup", p, bo, biDelete, instanceID, false, false},
		{"Backup Operator: cannot write policies", p, bo, policyWrite, vaultID + "/backupPolicies/p", false, false},
		{"Backup Operator: cannot delete policies", p, bo, policyDelete, vaultID + "/backupPolicies/p", false, false},
		{"Backup Operator: cannot assign roles", p, bo, raWrite, subScope, false, false},

		{"Backup Contributor: write vaults", p, bc, vaultWrite, vaultID, false, true},
		{"Backup Contributor: write and delete policies", p, bc, policyDelete, vaultID + "/backupPolicies/p", false, true},
		{"Backup Contributor: remove backup", p, bc, biDelete, instanceID, false, true},
		{"Backup Contributor: trigger backup", p, bc, biBackup, instanceID, false, true},
		{"Backup Contributor: restore", p, bc, biRestore, instanceID, false, true},
		{"Backup Contributor: cannot delete vaults", p, bc, vaultDelete, vaultID, false, false},
		{"Backup Contributor: cannot assign roles", p, bc, raWrite, subScope, false, false},
		{"Backup Contributor: cannot snapshot disks", p, bc, snapWrite, snapshotID, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got bool
			if tc.data {
				got = AllowedData(tc.policy, tc.principal, tc.action, tc.scope)
			} else {
				got = Allowed(tc.policy, tc.principal, tc.action, tc.scope)
			}
			if got != tc.want {
				t.Errorf("Allowed(%s, %q, %q) data=%v = %v, want %v", tc.principal, tc.action, tc.scope, tc.data, got, tc.want)
			}
			// Explain must agree with Allowed.
			var dec Decision
			if tc.data {
				dec = tc.policy.ExplainData(tc.principal, tc.action, tc.scope)
			} else {
				dec = tc.policy.Explain(tc.principal, tc.action, tc.scope)
			}
			if dec.Allowed != tc.want || (len(dec.Grants) > 0) != tc.want {
				t.Errorf("Explain: Allowed=%v with %d grants, want %v", dec.Allowed, len(dec.Grants), tc.want)
			}
		})
	}
}

func sprintf12(i int) string {
	const hex = "0123456789abcdef"
	b := []byte("000000000000")
	for k := len(b) - 1; k >= 0 && i > 0; k-- {
		b[k] = hex[i%16]
		i /= 16
	}
	return string(b)
}

func TestExplain(t *testing.T) {
	p := NewPolicy([]Assignment{
		assign("00000000-0000-4000-8000-000000000001", bob, RoleContributor, subScope),
		assign("00000000-0000-4000-8000-000000000002", bob, RoleReader, rgScope),
		assign("00000000-0000-4000-8000-000000000003", bob, RoleOwner, diskID),
	})
	dec := p.Explain(bob, ActionRoleAssignmentsWrite, diskID)
	if !dec.Allowed || len(dec.Grants) != 1 || dec.Grants[0].Role.RoleName != "Owner" || dec.Grants[0].Pattern != "*" {
		t.Fatalf("Explain(roleAssignments/write on disk) = %+v, want one grant by Owner via '*'", dec)
	}
	if len(dec.Excluded) != 1 || dec.Excluded[0].Role.RoleName != "Contributor" || dec.Excluded[0].NotPattern != "Microsoft.Authorization/*/Write" {
		t.Errorf("Explain excluded = %+v, want Contributor via Microsoft.Authorization/*/Write", dec.Excluded)
	}
	dec = p.Explain(bob, ActionRoleAssignmentsWrite, rgScope)
	if dec.Allowed || len(dec.Excluded) != 1 {
		t.Errorf("Explain(roleAssignments/write on rg) = %+v, want denied with one exclusion", dec)
	}
	dec = p.Explain(bob, "Microsoft.Compute/disks/read", diskID)
	if got := len(dec.Grants); got != 3 {
		t.Errorf("Explain(disks/read) grants = %d, want 3 (Contributor, Reader, Owner)", got)
	}
}

func TestCanAssign(t *testing.T) {
	p := NewPolicy([]Assignment{
		assign("00000000-0000-4000-8000-000000000001", alice, RoleOwner, subScope),
		assign("00000000-0000-4000-8000-000000000002", bob, RoleContributor, subScope),
		assign("00000000-0000-4000-8000-000000000003", vault, RoleUserAccessAdministrator, rgScope),
	})
	tests := []struct {
		principal, scope string
		want             bool
	}{
		{alice, subScope, true},
		{alice, diskID, true},
		{alice, "/", false},
		{bob, subScope, false},
		{bob, diskID, false},
		{vault, rgScope, true},
		{vault, subScope, false},
		{vault, rg2Scope, false},
	}
	for _, tc := range tests {
		if got := CanAssign(p, tc.principal, tc.scope); got != tc.want {
			t.Errorf("CanAssign(%s, %s) = %v, want %v", tc.principal, tc.scope, got, tc.want)
		}
	}
	if CanAssign(nil, alice, subScope) {
		t.Error("CanAssign(nil policy) = true, want false")
	}
}

func TestMissingRoles(t *testing.T) {
	reqs := append(BackupRequirements(diskID, snapRG), RestoreRequirements(restoreRG)...)
	tests := []struct {
		name        string
		assignments []Assignment
		want        []string // role names missing, in order
	}{
		{"none", nil, []string{"Disk Backup Reader", "Disk Snapshot Contributor", "Disk Restore Operator"}},
		{"all at exact scopes", []Assignment{
			assign("00000000-0000-4000-8000-000000000001", vault, RoleDiskBackupReader, diskID),
			assign("00000000-0000-4000-8000-000000000002", vault, RoleDiskSnapshotContributor, snapRG),
			assign("00000000-0000-4000-8000-000000000003", vault, RoleDiskRestoreOperator, restoreRG),
		}, nil},
		{"all at the subscription (above)", []Assignment{
			assign("00000000-0000-4000-8000-000000000001", vault, "/subscriptions/"+sub+"/providers/Microsoft.Authorization/roleDefinitions/"+RoleDiskBackupReader, subScope),
			assign("00000000-0000-4000-8000-000000000002", vault, strings2Upper(RoleDiskSnapshotContributor), subScope),
			assign("00000000-0000-4000-8000-000000000003", vault, RoleDiskRestoreOperator, "/"),
		}, nil},
		{"reader on the rg covers the disk; snapshot role below the RG does not count", []Assignment{
			assign("00000000-0000-4000-8000-000000000001", vault, RoleDiskBackupReader, rgScope),
			assign("00000000-0000-4000-8000-000000000002", vault, RoleDiskSnapshotContributor, snapshotID),
		}, []string{"Disk Snapshot Contributor", "Disk Restore Operator"}},
		{"wrong principal and sibling scope", []Assignment{
			assign("00000000-0000-4000-8000-000000000001", alice, RoleDiskBackupReader, diskID),
			assign("00000000-0000-4000-8000-000000000002", vault, RoleDiskSnapshotContributor, rg2Scope),
			assign("00000000-0000-4000-8000-000000000003", vault, RoleDiskRestoreOperator, restoreRG),
		}, []string{"Disk Backup Reader", "Disk Snapshot Contributor"}},
		{"owner is not a named role", []Assignment{
			assign("00000000-0000-4000-8000-000000000001", vault, RoleOwner, subScope),
		}, []string{"Disk Backup Reader", "Disk Snapshot Contributor", "Disk Restore Operator"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := NewPolicy(tc.assignments).MissingRoles(vault, reqs)
			var names []string
			for _, r := range got {
				names = append(names, r.RoleName())
			}
			if !equalStrings(names, tc.want) {
				t.Errorf("MissingRoles = %q, want %q", names, tc.want)
			}
		})
	}
	var nilPolicy *Policy
	if got := nilPolicy.MissingRoles(vault, reqs); len(got) != len(reqs) {
		t.Errorf("nil policy MissingRoles = %d requirements, want %d", len(got), len(reqs))
	}
}

func TestMissingActions(t *testing.T) {
	p := NewPolicy([]Assignment{assign("00000000-0000-4000-8000-000000000001", vault, RoleDiskBackupReader, diskID)})
	got := p.MissingActions(vault, diskID, "Microsoft.Compute/disks/read", "Microsoft.Compute/disks/write", "Microsoft.Compute/disks/beginGetAccess/action")
	if want := []string{"Microsoft.Compute/disks/write"}; !equalStrings(got, want) {
		t.Errorf("MissingActions = %q, want %q", got, want)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func strings2Upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
