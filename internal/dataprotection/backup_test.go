package dataprotection_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"coffer/internal/capacity"
	"coffer/internal/dataprotection"
	"coffer/internal/rbac"
	"coffer/internal/resource"
)

// TestBackupRules covers on-demand backups (checklist 24-30): rule and tag
// names, one backup of a disk at a time, ten a day, and the failures of a
// backup job when the vault identity lost its roles or the disk is gone,
// which also show in the instance's protection status.
func TestBackupRules(t *testing.T) {
	e := newEnv(t, t0)
	s := e.standard(true)
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))

	if _, err := e.backupNow(s.bi, "NoSuchRule", "Default"); code(err) != dataprotection.CodeInvalidBackupRule {
		t.Fatalf("wrong rule: %v", err)
	}
	if _, err := e.backupNow(s.bi, "BackupHourly", "Yearly"); code(err) != dataprotection.CodeInvalidRetentionTag {
		t.Fatalf("wrong tag: %v", err)
	}
	j1, err := e.backupNow(s.bi, "BackupHourly", "Default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.backupNow(s.bi, "BackupHourly", "Default"); code(err) != dataprotection.CodeMaxConcurrentOperations {
		t.Fatalf("second concurrent backup: %v", err)
	}
	e.drain()
	j := e.job(j1)
	if j.Properties.Status != "Completed" || j.Properties.Operation != "Backup" || !j.Properties.IsUserTriggered ||
		j.Properties.ExtendedInfo.AdditionalDetails["RetentionTag"] != "Default" {
		t.Fatalf("job: %+v", j.Properties)
	}
	rps := e.rps(s.bi)
	if len(rps) != 1 || rps[0].Properties.RetentionTagName != "Default" || e.disks.snapshotCount() != 1 {
		t.Fatalf("recovery points: %+v, %d snapshots", rps, e.disks.snapshotCount())
	}
	if exp, _ := time.Parse(time.RFC3339, rps[0].Properties.ExpiryTime); !exp.Equal(t0.Add(7 * 24 * time.Hour)) {
		t.Fatalf("expiry %s", rps[0].Properties.ExpiryTime)
	}
	for i := 1; i < dataprotection.MaxAdhocBackupsPerDay; i++ {
		e.clk.Advance(time.Minute)
		if _, err := e.backupNow(s.bi, "BackupHourly", "Default"); err != nil {
			t.Fatalf("backup %d: %v", i+1, err)
		}
		e.drain()
	}
	if _, err := e.backupNow(s.bi, "BackupHourly", "Default"); code(err) != dataprotection.CodeAdhocLimit {
		t.Fatalf("11th backup of the day: %v", err)
	}
	e.clk.Set(t0.Add(24 * time.Hour).Truncate(24 * time.Hour))

	fails := []struct {
		name   string
		break_ func()
		fix    func()
		code   string
	}{
		{"Disk Backup Reader revoked", func() { e.unassign(s.principal, rbac.RoleDiskBackupReader) },
			func() { e.assign(s.principal, rbac.RoleDiskBackupReader, s.disk.String()) }, dataprotection.CodeDiskOrMSIPermissions},
		{"Disk Snapshot Contributor revoked", func() { e.unassign(s.principal, rbac.RoleDiskSnapshotContributor) },
			func() { e.assign(s.principal, rbac.RoleDiskSnapshotContributor, s.snapRG.String()) }, dataprotection.CodeSnapshotRGOrMSIPermissions},
		{"disk deleted", func() {
			e.disks.mu.Lock()
			e.disks.saved = e.disks.disks[s.disk.Key()]
			delete(e.disks.disks, s.disk.Key())
			e.disks.mu.Unlock()
		}, func() {
			e.disks.mu.Lock()
			e.disks.disks[s.disk.Key()] = e.disks.saved
			e.disks.mu.Unlock()
		}, dataprotection.CodeManagedDiskNotFound},
	}
	for _, f := range fails {
		f.break_()
		id, err := e.backupNow(s.bi, "BackupHourly", "Default")
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		e.drain()
		j := e.job(id)
		if j.Properties.Status != "Failed" || len(j.Properties.ErrorDetails) != 1 || j.Properties.ErrorDetails[0].Code != f.code {
			t.Fatalf("%s: job %+v", f.name, j.Properties)
		}
		bi, _ := e.svc.GetInstance(e.ctx, s.bi)
		if bi.Properties.CurrentProtectionState != dataprotection.StateProtectionError || bi.Properties.ProtectionStatus.ErrorDetails == nil ||
			bi.Properties.ProtectionStatus.ErrorDetails.Code != f.code {
			t.Fatalf("%s: protection status %+v", f.name, bi.Properties.ProtectionStatus)
		}
		f.fix()
		if id, err = e.backupNow(s.bi, "BackupHourly", "Default"); err != nil {
			t.Fatal(err)
		}
		e.drain()
		bi, _ = e.svc.GetInstance(e.ctx, s.bi)
		if e.job(id).Properties.Status != "Completed" || bi.Properties.CurrentProtectionState != dataprotection.StateConfigured ||
			bi.Properties.ProtectionStatus.ErrorDetails != nil {
			t.Fatalf("%s: after fixing: %+v", f.name, bi.Properties)
		}
	}
	// A transient Compute failure is retried and, past the delivery
	// limit, fails the job cleanly.
	e.disks.fail = errors.New("compute unavailable")
	id, err := e.backupNow(s.bi, "BackupHourly", "Default")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		e.drain()
		e.clk.Advance(time.Minute)
	}
	if j := e.job(id); j.Properties.Status != "Failed" || j.Properties.ErrorDetails[0].Code != "InternalError" {
		t.Fatalf("job after repeated transient failures: %+v", j.Properties)
	}
	e.disks.fail = nil
}

// TestRestoreRules covers restore (checklist 31-38): the request's shape,
// original location, region, target group, Disk Restore Operator, an
// existing name, revoked roles on the snapshot group, a deleted snapshot,
// ten a day; and a restore to another subscription, byte-identical.
func TestRestoreRules(t *testing.T) {
	e := newEnv(t, t0)
	s := e.standard(true)
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
	hash1 := e.disks.hash(s.disk)
	if _, err := e.backupNow(s.bi, "BackupHourly", "Default"); err != nil {
		t.Fatal(err)
	}
	e.drain()
	e.disks.write(s.disk, 100, []byte("changed after the backup"))
	rp := e.rps(s.bi)[0].Name
	target := e.group(subA, "rg-restore", "local")
	e.assign(s.principal, rbac.RoleDiskRestoreOperator, target.String())
	e.group(subB, "rg-restore-b", "local")
	tgt := func(name string) string { return diskID(subA, "rg-restore", name).String() }

	req := func(rp, disk, loc string) dataprotection.RestoreRequest {
		return dataprotection.RestoreRequest{ObjectType: "AzureBackupRecoveryPointBasedRestoreRequest", RecoveryPointID: rp,
			SourceDataStoreType: "OperationalStore", Target: &dataprotection.RestoreTarget{ObjectType: "RestoreTargetInfo",
				RecoveryOption: "FailIfExists", RestoreLocation: loc, DiskID: disk, DiskLocation: loc}}
	}
	cases := []struct {
		name  string
		body  dataprotection.RestoreRequest
		setup func()
		undo  func()
		code  string
	}{
		{name: "item-level target", code: dataprotection.CodeUnsupportedRestoreRequest, body: func() dataprotection.RestoreRequest {
			b := req(rp, tgt("x"), "local")
			b.Target.ObjectType = "ItemLevelRestoreTargetInfo"
			return b
		}()},
		{name: "time-based request", code: dataprotection.CodeUnsupportedRestoreRequest, body: func() dataprotection.RestoreRequest {
			b := req(rp, tgt("x"), "local")
			b.ObjectType = "AzureBackupRecoveryTimeBasedRestoreRequest"
			return b
		}()},
		{name: "vault store", code: dataprotection.CodeUnsupportedRestoreRequest, body: func() dataprotection.RestoreRequest {
			b := req(rp, tgt("x"), "local")
			b.SourceDataStoreType = "VaultStore"
			return b
		}()},
		{name: "recovery option", code: dataprotection.CodeInvalidInput, body: func() dataprotection.RestoreRequest {
			b := req(rp, tgt("x"), "local")
			b.Target.RecoveryOption = "OverwriteIfExists"
			return b
		}()},
		{name: "original location", code: dataprotection.CodeOriginalLocationRestore, body: req(rp, s.disk.String(), "local")},
		{name: "unknown recovery point", code: dataprotection.CodeRecoveryPointNotFound, body: req("0123", tgt("x"), "local")},
		{name: "other region", code: dataprotection.CodeRestoreLocationMismatch, body: req(rp, tgt("x"), "east")},
		{name: "target group missing", code: dataprotection.CodeRestoreTargetRGNotFound, body: req(rp, diskID(subA, "rg-nope", "x").String(), "local")},
		{name: "no Disk Restore Operator", code: dataprotection.CodeNotEnoughPermissionOnTargetRG, body: req(rp, diskID(subB, "rg-restore-b", "x").String(), "local")},
		{name: "name exists", code: dataprotection.CodeSameNameDiskExists, body: req(rp, tgt("taken"), "local"),
			setup: func() { e.disks.add(diskID(subA, "rg-restore", "taken"), "local", "Standard_LRS", []byte{1}) }},
		{name: "snapshot group roles revoked", code: dataprotection.CodeSnapshotRGOrMSIPermissions, body: req(rp, tgt("x"), "local"),
			setup: func() { e.unassign(s.principal, rbac.RoleDiskSnapshotContributor) },
			undo:  func() { e.assign(s.principal, rbac.RoleDiskSnapshotContributor, s.snapRG.String()) }},
		{name: "snapshot deleted", code: dataprotection.CodeDiskSnapshotNotFound, body: req(rp, tgt("x"), "local"),
			setup: func() {
				e.disks.mu.Lock()
				for k, v := range e.disks.snaps {
					e.disks.savedSnap, e.disks.savedKey = v, k
					delete(e.disks.snaps, k)
				}
				e.disks.mu.Unlock()
			},
			undo: func() {
				e.disks.mu.Lock()
				e.disks.snaps[e.disks.savedKey] = e.disks.savedSnap
				e.disks.mu.Unlock()
			}},
		{name: "valid", code: "", body: req(rp, tgt("x"), "local")},
	}
	for _, c := range cases {
		if c.setup != nil {
			c.setup()
		}
		_, err := e.svc.ValidateRestore(e.ctx, s.bi, c.body)
		if got := code(err); got != c.code {
			t.Errorf("%s: validate: code %q, want %q (%v)", c.name, got, c.code, err)
		}
		if _, err := e.svc.Restore(e.ctx, s.bi, c.body); c.code != "" && code(err) != c.code {
			t.Errorf("%s: restore: code %q, want %q (%v)", c.name, code(err), c.code, err)
		}
		if c.undo != nil {
			c.undo()
		}
	}
	// The valid restore ran: the new disk has the bytes of the point.
	e.drain()
	if got := e.disks.hash(diskID(subA, "rg-restore", "x")); got != hash1 {
		t.Fatalf("restored disk hash %s, want %s", got, hash1)
	}
	// Cross-subscription restore with the role there.
	e.assign(s.principal, rbac.RoleDiskRestoreOperator, "/subscriptions/"+subB)
	id, err := e.svc.Restore(e.ctx, s.bi, req(rp, diskID(subB, "rg-restore-b", "x").String(), "local"))
	if err != nil {
		t.Fatal(err)
	}
	e.drain()
	if j := e.job(id); j.Properties.Status != "Completed" || j.Properties.ExtendedInfo.SourceRecoverPoint.ID != rp {
		t.Fatalf("restore job: %+v", j.Properties)
	}
	if got := e.disks.hash(diskID(subB, "rg-restore-b", "x")); got != hash1 {
		t.Fatalf("cross-subscription restore hash %s, want %s", got, hash1)
	}
	for i := 2; i < dataprotection.MaxRestoresPerDay; i++ {
		if _, err := e.svc.Restore(e.ctx, s.bi, req(rp, tgt(fmt.Sprintf("r%d", i)), "local")); err != nil {
			t.Fatalf("restore %d: %v", i, err)
		}
		e.drain()
	}
	if _, err := e.svc.Restore(e.ctx, s.bi, req(rp, tgt("r11"), "local")); code(err) != dataprotection.CodeRestoreLimit {
		t.Fatalf("11th restore of the day: %v", err)
	}
	_ = resource.ID{}
}

// A backup that would start while the data filesystem is below its free-
// space reserve (a scheduled one has no API request to refuse) fails its
// job with InsufficientStorage and a recommended action, shows in the
// instance's protection status, and commits nothing; the next backup,
// once space is back, succeeds.
func TestBackupBelowFreeSpaceReserve(t *testing.T) {
	e := newEnv(t, t0)
	s := e.standard(true)
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
	free := int64(1 << 20)
	e.svc.Space = capacity.NewMonitor(e.clk, 64<<20, "/data")
	e.svc.Space.SetStatfs(func(string) (int64, int64, error) { return free, 1 << 30, nil })

	j1, err := e.backupNow(s.bi, "BackupHourly", "Default")
	if err != nil {
		t.Fatal(err)
	}
	e.drain()
	j := e.job(j1)
	if j.Properties.Status != "Failed" || len(j.Properties.ErrorDetails) != 1 || j.Properties.ErrorDetails[0].Code != capacity.Code ||
		!j.Properties.ErrorDetails[0].IsRetryable || len(j.Properties.ErrorDetails[0].RecommendedAction) == 0 {
		t.Fatalf("backup below the reserve: %+v", j.Properties)
	}
	if n := len(e.rps(s.bi)); n != 0 || e.disks.snapshotCount() != 0 {
		t.Fatalf("a backup refused for space left %d recovery points, %d snapshots", n, e.disks.snapshotCount())
	}
	inst, _ := e.svc.GetInstance(e.ctx, s.bi)
	if ps := inst.Properties.ProtectionStatus; ps == nil || ps.ErrorDetails == nil || ps.ErrorDetails.Code != capacity.Code {
		t.Fatalf("protection status after a backup refused for space: %+v", ps)
	}

	free = 1 << 30
	e.clk.Advance(time.Minute)
	j2, err := e.backupNow(s.bi, "BackupHourly", "Default")
	if err != nil {
		t.Fatal(err)
	}
	e.drain()
	if j := e.job(j2); j.Properties.Status != "Completed" || len(e.rps(s.bi)) != 1 {
		t.Fatalf("backup once space is back: %+v", j.Properties)
	}
}

// TestFailedBackupLeavesNoSnapshot: a backup job that fails takes its
// snapshot resource with it, whether it failed at once on a user error
// after the snapshot was made or after its last retry of an internal error
// that left a Failed snapshot each time.
func TestFailedBackupLeavesNoSnapshot(t *testing.T) {
	t.Run("user error after the snapshot", func(t *testing.T) {
		e := newEnv(t, t0)
		s := e.standard(true)
		e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
		e.disks.after = func(context.Context) error {
			return resource.Errorf(resource.KindBadRequest, "UserErrorInjected", "injected failure after the snapshot")
		}
		id, err := e.backupNow(s.bi, "BackupHourly", "Default")
		if err != nil {
			t.Fatal(err)
		}
		e.drain()
		if j := e.job(id); j.Properties.Status != "Failed" || len(j.Properties.ErrorDetails) == 0 ||
			j.Properties.ErrorDetails[0].Code != "UserErrorInjected" {
			t.Fatalf("job: %+v", j.Properties)
		}
		if n := e.disks.snapshotCount(); n != 0 || len(e.rps(s.bi)) != 0 {
			t.Fatalf("%d snapshots and %d recovery points after a failed backup", n, len(e.rps(s.bi)))
		}
	})
	t.Run("internal error, retried until dead", func(t *testing.T) {
		e := newEnv(t, t0)
		s := e.standard(true)
		e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))
		e.disks.fail, e.disks.failLeaves = errors.New("injected engine failure"), true
		id, err := e.backupNow(s.bi, "BackupHourly", "Default")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5 && e.job(id).Properties.Status == "InProgress"; i++ {
			e.drain()
			if n := e.disks.snapshotCount(); n != 1 && e.job(id).Properties.Status == "InProgress" {
				t.Fatalf("%d snapshots while retrying", n)
			}
			e.clk.Advance(time.Minute)
		}
		if j := e.job(id); j.Properties.Status != "Failed" {
			t.Fatalf("job after its retries: %+v", j.Properties)
		}
		if n := e.disks.snapshotCount(); n != 0 {
			t.Fatalf("%d snapshots left after the job failed", n)
		}
		// The next backup starts clean and succeeds.
		e.disks.fail = nil
		e.clk.Advance(time.Minute)
		id, err = e.backupNow(s.bi, "BackupHourly", "Default")
		if err != nil {
			t.Fatal(err)
		}
		e.drain()
		if j := e.job(id); j.Properties.Status != "Completed" || e.disks.snapshotCount() != 1 || len(e.rps(s.bi)) != 1 {
			t.Fatalf("next backup: %+v, %d snapshots", j.Properties, e.disks.snapshotCount())
		}
	})
}
