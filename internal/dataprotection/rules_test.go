package dataprotection_test

import (
	"strings"
	"testing"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/rbac"
	"coffer/internal/resource"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// TestConfigureProtectionRules runs one case per rule of configuring
// protection (checklist items 3-4, 15-21), through validateForBackup and
// through PUT + configure, and checks Azure's code.
func TestConfigureProtectionRules(t *testing.T) {
	cases := []struct {
		name string
		// setup changes the standard setup and returns the instance body.
		setup func(e *env, s *standard) map[string]any
		code  string
		// detail codes expected in the error's details (missing roles).
		details []string
	}{
		{name: "valid", code: ""},
		{name: "disk does not exist", code: dataprotection.CodeManagedDiskNotFound, setup: func(e *env, s *standard) map[string]any {
			return biJSON(diskID(subA, "rg-disks", "nope"), "local", s.policy, s.snapRG.String())
		}},
		{name: "unsupported datasource type", code: dataprotection.CodeDiskTypeNotSupported, setup: func(e *env, s *standard) map[string]any {
			id := resource.MustParse("/subscriptions/" + subA + "/resourceGroups/rg-disks/providers/Microsoft.Storage/storageAccounts/acct")
			return biJSON(id, "local", s.policy, s.snapRG.String())
		}},
		{name: "unsupported disk (ADE)", code: dataprotection.CodeDiskTypeNotSupported, setup: func(e *env, s *standard) map[string]any {
			d := diskID(subA, "rg-disks", "ade")
			e.disks.add(d, "local", "Premium_LRS", make([]byte, 512))
			e.disks.disks[d.Key()].info.Unsupported = "the disk is encrypted with Azure Disk Encryption"
			return biJSON(d, "local", s.policy, s.snapRG.String())
		}},
		{name: "vault and disk in different regions", code: dataprotection.CodeLocationMismatch, setup: func(e *env, s *standard) map[string]any {
			d := diskID(subA, "rg-disks", "east-disk")
			e.disks.add(d, "east", "StandardSSD_LRS", make([]byte, 512))
			e.assign(s.principal, rbac.RoleDiskBackupReader, d.String())
			return biJSON(d, "east", s.policy, s.snapRG.String())
		}},
		{name: "snapshot group not given", code: dataprotection.CodeOperationalStoreParamsMissing, setup: func(e *env, s *standard) map[string]any {
			return biJSON(s.disk, "local", s.policy, "")
		}},
		{name: "snapshot group not a group ID", code: dataprotection.CodeInvalidOperationalStoreRG, setup: func(e *env, s *standard) map[string]any {
			return biJSON(s.disk, "local", s.policy, "/subscriptions/"+subA)
		}},
		{name: "snapshot group does not exist", code: dataprotection.CodeSnapshotRGNotFound, setup: func(e *env, s *standard) map[string]any {
			return biJSON(s.disk, "local", s.policy, "/subscriptions/"+subA+"/resourceGroups/rg-missing")
		}},
		{name: "snapshot group in another subscription", code: dataprotection.CodeSnapshotRGSubscriptionMismatch, setup: func(e *env, s *standard) map[string]any {
			rg := e.group(subB, "rg-snaps-b", "local")
			return biJSON(s.disk, "local", s.policy, rg.String())
		}},
		{name: "snapshot group is the disk's group", code: dataprotection.CodeInvalidOperationalStoreRG, setup: func(e *env, s *standard) map[string]any {
			return biJSON(s.disk, "local", s.policy, s.disk.GroupScope().String())
		}},
		{name: "no roles", code: dataprotection.CodeMissingRequiredPermissions,
			details: []string{dataprotection.CodeDiskOrMSIPermissions, dataprotection.CodeSnapshotRGOrMSIPermissions},
			setup: func(e *env, s *standard) map[string]any {
				e.unassign(s.principal, rbac.RoleDiskBackupReader)
				e.unassign(s.principal, rbac.RoleDiskSnapshotContributor)
				return nil
			}},
		{name: "no Disk Snapshot Contributor", code: dataprotection.CodeMissingRequiredPermissions,
			details: []string{dataprotection.CodeSnapshotRGOrMSIPermissions},
			setup: func(e *env, s *standard) map[string]any {
				e.unassign(s.principal, rbac.RoleDiskSnapshotContributor)
				return nil
			}},
		{name: "Owner is not the named roles", code: dataprotection.CodeMissingRequiredPermissions,
			details: []string{dataprotection.CodeDiskOrMSIPermissions, dataprotection.CodeSnapshotRGOrMSIPermissions},
			setup: func(e *env, s *standard) map[string]any {
				e.unassign(s.principal, rbac.RoleDiskBackupReader)
				e.unassign(s.principal, rbac.RoleDiskSnapshotContributor)
				e.assign(s.principal, rbac.RoleOwner, "/subscriptions/"+subA)
				return nil
			}},
		{name: "inherited roles count", code: "", setup: func(e *env, s *standard) map[string]any {
			e.unassign(s.principal, rbac.RoleDiskBackupReader)
			e.unassign(s.principal, rbac.RoleDiskSnapshotContributor)
			e.assign(s.principal, rbac.RoleDiskBackupReader, s.disk.GroupScope().String())
			e.assign(s.principal, rbac.RoleDiskSnapshotContributor, "/subscriptions/"+subA)
			return nil
		}},
		{name: "disk in another subscription than the vault", code: "", setup: func(e *env, s *standard) map[string]any {
			e.group(subB, "rg-b", "local")
			rg := e.group(subB, "rg-b-snaps", "local")
			d := diskID(subB, "rg-b", "disk-b")
			e.disks.add(d, "local", "Standard_LRS", make([]byte, 512))
			e.assign(s.principal, rbac.RoleDiskBackupReader, d.String())
			e.assign(s.principal, rbac.RoleDiskSnapshotContributor, rg.String())
			return biJSON(d, "local", s.policy, rg.String())
		}},
		{name: "already protected by another vault", code: dataprotection.CodeDatasourceAlreadyProtected, setup: func(e *env, s *standard) map[string]any {
			v2, p2 := e.vault(subA, "rg-vault", "vault2", "local", true)
			pol2 := e.policy(v2, "P", dataprotection.DefaultPolicyTemplate())
			e.assign(p2, rbac.RoleDiskBackupReader, s.disk.String())
			e.assign(p2, rbac.RoleDiskSnapshotContributor, s.snapRG.String())
			e.protect(dataprotection.InstanceID(v2, "other"), biJSON(s.disk, "local", pol2, s.snapRG.String()))
			return nil
		}},
		{name: "Premium SSD v2 with a 4-hourly policy", code: dataprotection.CodeBackupFrequencyNotSupportedForDiskSKU, setup: func(e *env, s *standard) map[string]any {
			d := diskID(subA, "rg-disks", "pv2")
			e.disks.add(d, "local", "PremiumV2_LRS", make([]byte, 512))
			return biJSON(d, "local", s.policy, s.snapRG.String())
		}},
		{name: "Ultra disk with a 12-hourly policy", code: "", setup: func(e *env, s *standard) map[string]any {
			d := diskID(subA, "rg-disks", "ultra")
			e.disks.add(d, "local", "UltraSSD_LRS", make([]byte, 512))
			e.assign(s.principal, rbac.RoleDiskBackupReader, d.String())
			p, err := dataprotection.BuildDiskPolicy(dataprotection.DiskPolicyOptions{Hours: 12, Retention: "30d"})
			if err != nil {
				t.Fatal(err)
			}
			return biJSON(d, "local", e.policy(s.vault, "P12", p), s.snapRG.String())
		}},
		{name: "vault without identity", code: dataprotection.CodeVaultIdentityMissing, setup: func(e *env, s *standard) map[string]any {
			none := dataprotection.IdentityNone
			v, err := e.svc.PatchVault(e.ctx, dataprotection.Caller{}, s.vault, dataprotection.VaultPatch{IdentityType: &none})
			if err != nil || v.Identity.PrincipalID != "" {
				t.Fatalf("disable identity: %v %+v", err, v.Identity)
			}
			return nil
		}},
		{name: "policy of another vault", code: dataprotection.CodePolicyNotFound, setup: func(e *env, s *standard) map[string]any {
			v2, _ := e.vault(subA, "rg-vault", "vault2", "local", true)
			return biJSON(s.disk, "local", e.policy(v2, "P", dataprotection.DefaultPolicyTemplate()), s.snapRG.String())
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, t0)
			s := e.standard(true)
			body := biJSON(s.disk, "local", s.policy, s.snapRG.String())
			if c.setup != nil {
				if b := c.setup(e, &s); b != nil {
					body = b
				}
			}
			_, err := e.svc.ValidateForBackup(e.ctx, s.vault, instance(body))
			if got := code(err); got != c.code {
				t.Fatalf("validateForBackup: code %q, want %q (%v)", got, c.code, err)
			}
			if c.details != nil {
				var got []string
				for _, d := range resource.AsError(err).Details {
					got = append(got, d.Code)
				}
				if strings.Join(got, ",") != strings.Join(c.details, ",") {
					t.Fatalf("details %v, want %v", got, c.details)
				}
			}
			// The same through PUT + configure (missing roles fail the
			// configuration, other errors the PUT).
			err = e.tryProtect(s.bi, body)
			if got := code(err); got != c.code {
				t.Fatalf("protect: code %q, want %q (%v)", got, c.code, err)
			}
			bi, gerr := e.svc.GetInstance(e.ctx, s.bi)
			switch {
			case c.code == "":
				if gerr != nil || bi.Properties.CurrentProtectionState != dataprotection.StateConfigured {
					t.Fatalf("instance: %v %+v", gerr, bi.Properties)
				}
			case dataprotection.IsPermissionError(err):
				if gerr != nil || bi.Properties.CurrentProtectionState != dataprotection.StateConfiguringFailed ||
					bi.Properties.ProtectionErrorDetails == nil || bi.Properties.ProtectionErrorDetails.Code != c.code {
					t.Fatalf("instance after failed configuration: %v %+v", gerr, bi.Properties)
				}
			default:
				if gerr == nil {
					t.Fatalf("instance stored after a refused PUT: %+v", bi.Properties)
				}
			}
		})
	}
}

// TestInstanceLifecycleRules: the snapshot group is immutable, a policy in
// use and a vault holding instances cannot be deleted.
func TestInstanceLifecycleRules(t *testing.T) {
	e := newEnv(t, t0)
	s := e.standard(true)
	e.protect(s.bi, biJSON(s.disk, "local", s.policy, s.snapRG.String()))

	other := e.group(subA, "rg-snaps-2", "local")
	e.assign(s.principal, rbac.RoleDiskSnapshotContributor, other.String())
	if err := e.tryProtect(s.bi, biJSON(s.disk, "local", s.policy, other.String())); code(err) != dataprotection.CodeSnapshotRGImmutable {
		t.Fatalf("change snapshot group: %v", err)
	}
	// Same group with other casing is not a change; a new policy is.
	p2 := e.policy(s.vault, "Daily", mustBuild(t, dataprotection.DiskPolicyOptions{Retention: "30d"}))
	if err := e.tryProtect(s.bi, biJSON(s.disk, "local", p2, strings.ToLower(s.snapRG.String()))); err != nil {
		t.Fatalf("change policy: %v", err)
	}
	if _, err := e.svc.DeletePolicy(e.ctx, p2); code(err) != dataprotection.CodePolicyInUse {
		t.Fatalf("delete used policy: %v", err)
	}
	if existed, err := e.svc.DeletePolicy(e.ctx, s.policy); err != nil || !existed {
		t.Fatalf("delete unused policy: %v %v", existed, err)
	}
	if _, err := e.svc.DeleteVault(e.ctx, s.vault); code(err) != dataprotection.CodeVaultNotEmpty {
		t.Fatalf("delete vault with instances: %v", err)
	}
	if _, err := e.svc.SetProtection(e.ctx, s.bi, dataprotection.StopProtection, dataprotection.ChangeNote{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetProtection(e.ctx, s.bi, dataprotection.SuspendBackups, dataprotection.ChangeNote{}); code(err) != dataprotection.CodeInvalidState {
		t.Fatalf("suspend a stopped instance: %v", err)
	}
	if _, err := e.backupNow(s.bi, "BackupIntervals", "Default"); code(err) != dataprotection.CodeInvalidState {
		t.Fatalf("backup of a stopped instance: %v", err)
	}
	jobID, err := e.svc.StartDeleteInstance(e.ctx, s.bi, dataprotection.ChangeNote{})
	if err != nil {
		t.Fatal(err)
	}
	e.drain()
	if j := e.job(jobID); j.Properties.Status != "Completed" {
		t.Fatalf("delete job: %+v", j.Properties)
	}
	if existed, err := e.svc.DeleteVault(e.ctx, s.vault); err != nil || !existed {
		t.Fatalf("delete empty vault: %v", err)
	}
}

func mustBuild(t *testing.T, o dataprotection.DiskPolicyOptions) dataprotection.BackupPolicy {
	t.Helper()
	p, err := dataprotection.BuildDiskPolicy(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
