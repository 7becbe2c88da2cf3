package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"coffer/internal/rbac"
	"coffer/internal/testenv"
)

// TestReadmeAzureCLI runs the README's section "The Azure CLI" as it is
// written, with Debian's az against `serve --tls` whose data directory is
// ./coffer-data, as there: the first ```sh block (cloud, login, groups, a
// disk) as one sh script; then the test writes the disk through the SAS of
// `az disk grant-access`; then the second block (vault and the
// subscription's vaults, policy, validation refused then passed, role
// assignments through az rest with atScope() and principalId eq, protect,
// backup, recovery points, restore, jobs, and the restore role removed
// with `az role assignment delete --ids`) as another script. Only the
// server's address and the admin's credentials are put in for the README's
// placeholders. What the script printed must show each step's answer, and
// the restored disk must be the source byte for byte (by hash).
func TestReadmeAzureCLI(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sec, err := readmeSection(string(b), "The Azure CLI")
	if err != nil {
		t.Fatal(err)
	}
	blocks := fencedBlocks(sec, "sh")
	if len(blocks) != 2 {
		t.Fatalf("the README's Azure CLI section has %d sh blocks, want 2 (set up; back up and restore)", len(blocks))
	}
	for _, p := range []string{"sh", "sed", "az"} {
		testenv.NeedProgram(t, p)
	}
	dir := t.TempDir()
	e := startDP(t, Options{DataDir: filepath.Join(dir, "coffer-data")})
	// What the first block exports stays set in the reader's shell for the
	// second.
	env := azEnv(filepath.Join(t.TempDir(), "az"), filepath.Join(dir, "coffer-data", "tls", "ca.pem"))
	az := &azCLI{t: t, bin: testenv.NeedProgram(t, "az"), env: env}
	run := func(script string) (string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-eu", "-c", script)
		cmd.Dir, cmd.Env = dir, env
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("sh -eu: %v\n%s\n--- stdout:\n%s--- stderr:\n%s", err, script, stdout.String(), stderr.String())
		}
		t.Logf("%s--- stdout:\n%s--- stderr:\n%s", script, stdout.String(), stderr.String())
		return stdout.String(), stderr.String()
	}

	fill := map[string]string{"https://127.0.0.1:7480/": e.Endpoint + "/", "<clientId>": e.Admin.ClientID, "<clientSecret>": e.Admin.ClientSecret}
	setup := blocks[0]
	for k, v := range fill {
		if !strings.Contains(setup, k) {
			t.Fatalf("the README's Azure CLI set-up no longer has %s:\n%s", k, setup)
		}
		setup = strings.ReplaceAll(setup, k, v)
	}
	run(setup)

	// The README leaves writing the disk to the reader: through the SAS
	// of az disk grant-access.
	sas := strings.TrimSpace(az.run("disk", "grant-access", "-g", "prod", "-n", "data", "--access-level", "Write",
		"--duration-in-seconds", "3600", "--query", "accessSas", "-o", "tsv"))
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7) ^ 0x5c
	}
	for _, off := range []int64{0, 300 << 20} {
		if err := e.c.PutPages(e.ctx, sas, off, buf); err != nil {
			t.Fatal(err)
		}
	}
	az.run("disk", "revoke-access", "-g", "prod", "-n", "data")
	want := e.hash(t, "prod", "data")

	out, errOut := run(blocks[1])
	sub := "/subscriptions/" + e.sub
	lines := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, l := range []string{
		"refused", // validation before the roles
		// atScope() at prod: the admin's Owner role on the subscription.
		sub + "/providers/Microsoft.Authorization/roleDefinitions/" + rbac.RoleOwner,
		// principalId eq: the vault identity's two roles, on the disk and
		// the snapshots' group.
		sub + "/resourceGroups/prod/providers/Microsoft.Compute/disks/data", sub + "/resourceGroups/snaps",
		"Backup\tCompleted", "Restore\tCompleted", "ValidateForBackup\tFailed", "ValidateForBackup\tCompleted",
	} {
		if !lines[l] {
			t.Errorf("the script printed no line %q", l)
		}
	}
	if !strings.Contains(out, sub+"/resourceGroups/backup/providers/Microsoft.DataProtection/backupVaults/vault1") {
		t.Errorf("the subscription's vaults do not include vault1")
	}
	// atScope() leaves out the disk's role, below prod; principalId eq
	// leaves out the admin's role on the subscription.
	if strings.Contains(out, rbac.RoleDiskBackupReader) || lines[sub] {
		t.Errorf("atScope() or principalId eq listed too much")
	}
	if !strings.Contains(errOut, "UserErrorMissingRequiredPermissions") {
		t.Errorf("validation before the roles did not fail with UserErrorMissingRequiredPermissions")
	}
	if got := e.hash(t, "restored", "data-restored"); got != want {
		t.Errorf("restored disk hash %s, want %s (the source at its recovery point)", got, want)
	}
	// az role assignment delete --ids removed the vault identity's role on
	// the restore's target group: nothing is left at that scope.
	as, err := e.c.ListRoleAssignments(e.ctx, "/subscriptions/"+e.sub+"/resourceGroups/restored", "atScope()")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if strings.EqualFold(a.Properties.Scope, "/subscriptions/"+e.sub+"/resourceGroups/restored") {
			t.Errorf("a role assignment is left on the restore's target group: %+v", a)
		}
	}
}
