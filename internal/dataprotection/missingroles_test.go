package dataprotection_test

import (
	"testing"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/rbac"
	"coffer/internal/resource"
)

// TestMissingRoles: a validation failure for missing roles says, as data,
// which roles the vault identity lacks at which scopes (what "Add missing
// roles" and "Grant permissions" assign), for backup and for restore, and
// stops saying it once the roles are there.
func TestMissingRoles(t *testing.T) {
	e := newEnv(t, time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC))
	s := e.standard(false)
	props := biJSON(s.disk, "local", s.policy, s.snapRG.String())

	_, err := e.svc.ValidateForBackup(e.ctx, s.vault, instance(props))
	m, ok := dataprotection.MissingRoles(err)
	if !ok || !dataprotection.IsPermissionError(err) || code(err) != dataprotection.CodeMissingRequiredPermissions {
		t.Fatalf("ValidateForBackup without roles = %v", err)
	}
	want := rbac.BackupRequirements(s.disk.String(), s.snapRG.String())
	if m.PrincipalID != s.principal || len(m.Missing) != 2 || m.Missing[0] != want[0] || m.Missing[1] != want[1] {
		t.Fatalf("missing = %+v, want %s lacking %+v", m, s.principal, want)
	}

	e.assign(s.principal, rbac.RoleDiskBackupReader, s.disk.GroupScope().String())
	_, err = e.svc.ValidateForBackup(e.ctx, s.vault, instance(props))
	if m, ok := dataprotection.MissingRoles(err); !ok || len(m.Missing) != 1 || m.Missing[0] != want[1] {
		t.Fatalf("with Disk Backup Reader on the disk's group: %v (%+v)", err, m)
	}
	e.assign(s.principal, rbac.RoleDiskSnapshotContributor, s.snapRG.String())
	if _, err := e.svc.ValidateForBackup(e.ctx, s.vault, instance(props)); err != nil {
		t.Fatalf("with both roles: %v", err)
	}

	e.protect(s.bi, props)
	if _, err := e.backupNow(s.bi, "BackupHourly", "Default"); err != nil {
		t.Fatal(err)
	}
	e.drain()
	rp := e.rps(s.bi)[0].Name
	target := e.group(subA, "rg-restore", "local")
	req := dataprotection.RestoreRequest{RecoveryPointID: rp, Target: &dataprotection.RestoreTarget{
		RecoveryOption: dataprotection.RecoveryOptionFailIfExists, DiskID: diskID(subA, "rg-restore", "restored").String()}}
	_, err = e.svc.ValidateRestore(e.ctx, s.bi, req)
	m, ok = dataprotection.MissingRoles(err)
	if !ok || code(err) != dataprotection.CodeNotEnoughPermissionOnTargetRG {
		t.Fatalf("ValidateRestore without Disk Restore Operator = %v", err)
	}
	if want := rbac.RestoreRequirements(target.String()); m.PrincipalID != s.principal || len(m.Missing) != 1 || m.Missing[0] != want[0] {
		t.Fatalf("missing = %+v, want %+v", m, want)
	}
	if e := resource.AsError(err); e == nil || e.Err == nil {
		t.Fatalf("the ARM error does not carry its cause: %#v", err)
	}
	e.assign(s.principal, rbac.RoleDiskRestoreOperator, target.String())
	if _, err := e.svc.ValidateRestore(e.ctx, s.bi, req); err != nil {
		t.Fatalf("with Disk Restore Operator: %v", err)
	}
	if _, ok := dataprotection.MissingRoles(resource.NotFound(s.bi)); ok {
		t.Error("MissingRoles of a 404 reports roles")
	}
}
