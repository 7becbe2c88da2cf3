package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"coffer/internal/cli"
	"coffer/internal/client"
)

// TestDataProtectionCLI walks the Azure CLI flow with the coffer CLI
// in-process: vault create, policy template and create (from flags),
// protect (refused and a table of the missing roles; the role template;
// then --grant-missing-roles at group scope), backup now, rp list, restore
// (validated, followed to the end), job list, instance stop/resume/delete.
func TestDataProtectionCLI(t *testing.T) {
	env := Start(t, Options{})
	ctx := context.Background()
	t.Setenv("COFFER_CONFIG", filepath.Join(t.TempDir(), "none.json"))
	t.Setenv("COFFER_ENDPOINT", env.Endpoint)
	t.Setenv("COFFER_TOKEN", env.Admin.Token)
	t.Setenv("COFFER_SUBSCRIPTION", env.Admin.SubscriptionID)
	run := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := cli.Main(ctx, args, &cli.Env{Stdout: &out, Stderr: &errb}); code != wantCode {
			t.Fatalf("coffer %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}
	c := env.Client("")
	for _, g := range []string{"rg-disks", "rg-snaps", "rg-vault", "rg-restore"} {
		if _, err := c.CreateGroup(ctx, g, "local", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreateDisk(ctx, "rg-disks", "data1", client.DiskSpec{Location: "local", SizeGB: 1}, true); err != nil {
		t.Fatal(err)
	}

	out, _ := run(0, "vault", "create", "-g", "rg-vault", "-n", "v1", "-o", "json")
	var v client.Vault
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.PrincipalID() == "" {
		t.Fatalf("vault create: %v %s", err, out)
	}
	out, _ = run(0, "policy", "template")
	var tpl map[string]any
	if err := json.Unmarshal([]byte(out), &tpl); err != nil || tpl["name"] != "DiskPolicy" {
		t.Fatalf("policy template: %v %s", err, out)
	}
	// The schedule starts in 2099 so that no scheduled backup joins the
	// on-demand one counted below, whatever the time of day.
	out, _ = run(0, "policy", "create", "-g", "rg-vault", "-v", "v1", "-n", "p4h", "--hourly", "4", "--time", "02:00", "--start-date", "2099-01-01",
		"--retention", "7d", "--daily-retention", "30d", "--weekly-retention", "12w", "-o", "tsv")
	if !strings.Contains(out, "p4h\tR/2099-01-01T02:00:00+00:00/PT4H UTC") {
		t.Fatalf("policy create: %q", out)
	}
	run(1, "policy", "create", "-g", "rg-vault", "-v", "v1", "-n", "bad", "--hourly", "12", "--retention", "300d")
	if _, stderr := run(2, "policy", "create", "-g", "rg-vault", "-v", "v1", "-n", "bad", "--start-date", "2099-13-01"); !strings.Contains(stderr, "--start-date") {
		t.Fatalf("policy create with a bad --start-date: %s", stderr)
	}

	protect := []string{"protect", "-g", "rg-vault", "-v", "v1", "--disk-group", "rg-disks", "--disk-name", "data1",
		"--snapshot-group", "rg-snaps", "--policy", "p4h", "-n", "data1-bi"}
	_, stderr := run(1, protect...)
	if !strings.Contains(stderr, "Disk Backup Reader") || !strings.Contains(stderr, "Disk Snapshot Contributor") {
		t.Fatalf("protect without roles: %s", stderr)
	}
	out, _ = run(0, append(protect, "--print-role-template", "--permissions-scope", "ResourceGroup")...)
	if !strings.Contains(out, "coffer role assignment create --assignee "+v.PrincipalID()+` --role "Disk Backup Reader" --scope /subscriptions/`+env.Admin.SubscriptionID+"/resourceGroups/rg-disks\n") {
		t.Fatalf("role template: %s", out)
	}
	out, _ = run(0, append(protect, "--grant-missing-roles", "--permissions-scope", "ResourceGroup", "-o", "tsv")...)
	if !strings.Contains(out, "data1-bi\tdata1\tProtectionConfigured") {
		t.Fatalf("protect: %s", out)
	}
	out, progress := run(0, "backup", "now", "-g", "rg-vault", "-v", "v1", "-n", "data1-bi", "--rule", "Default", "-o", "tsv")
	if !strings.Contains(out, "\tBackup\tCompleted\t") || !strings.Contains(progress, "Completed 100%") {
		t.Fatalf("backup now: %s / %s", out, progress)
	}
	out, _ = run(0, "rp", "list", "-g", "rg-vault", "-v", "v1", "--instance", "data1-bi", "-o", "json")
	var rps []client.RecoveryPoint
	if err := json.Unmarshal([]byte(out), &rps); err != nil || len(rps) != 1 || rps[0].Properties.RetentionTagName != "Default" {
		t.Fatalf("rp list: %v %s", err, out)
	}
	// Restore needs Disk Restore Operator on the target group.
	_, stderr = run(1, "restore", "-g", "rg-vault", "-v", "v1", "--instance", "data1-bi", "--rp", rps[0].Name, "--target-group", "rg-restore", "--name", "back")
	if !strings.Contains(stderr, "UserErrorNotEnoughPermissionOnTargetRG") {
		t.Fatalf("restore without role: %s", stderr)
	}
	run(0, "role", "assignment", "create", "--assignee", v.PrincipalID(), "--role", "Disk Restore Operator", "-g", "rg-restore")
	out, _ = run(0, "restore", "-g", "rg-vault", "-v", "v1", "--instance", "data1-bi", "--rp", rps[0].Name, "--target-group", "rg-restore", "--name", "back", "-o", "tsv")
	if !strings.Contains(out, "\tRestore\tCompleted\t") {
		t.Fatalf("restore: %s", out)
	}
	if _, err := c.GetDisk(ctx, "rg-restore", "back"); err != nil {
		t.Fatalf("restored disk: %v", err)
	}
	out, _ = run(0, "job", "list", "-g", "rg-vault", "-v", "v1", "--operation", "OnDemandBackup", "-o", "tsv")
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("job list: %s", out)
	}
	out, _ = run(0, "instance", "stop", "-g", "rg-vault", "-v", "v1", "-n", "data1-bi", "-o", "tsv")
	if !strings.Contains(out, "ProtectionStopped") {
		t.Fatalf("stop: %s", out)
	}
	run(0, "instance", "resume", "-g", "rg-vault", "-v", "v1", "-n", "data1-bi")
	run(1, "policy", "delete", "-g", "rg-vault", "-v", "v1", "-n", "p4h", "--yes")
	run(1, "vault", "delete", "-g", "rg-vault", "-n", "v1", "--yes")
	run(0, "instance", "delete", "-g", "rg-vault", "-v", "v1", "-n", "data1-bi", "--yes")
	run(0, "vault", "delete", "-g", "rg-vault", "-n", "v1", "-y")
}
