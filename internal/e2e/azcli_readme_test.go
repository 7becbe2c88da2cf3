package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"coffer/internal/testenv"
)

// TestReadmeAzureCLI runs the README's section "The Azure CLI" as it is
// written, with Debian's az against `serve --tls` whose data directory is
// ./coffer-data, as there: the first ```sh block (cloud, login, groups, a
// disk) as one sh script, then — once the test has written the disk — the
// second (vault, policy, validation refused then passed, role assignments
// through az rest, protect, backup, recovery points, restore, jobs, and the
// restore role removed with az role assignment delete --ids) as another.
// Only the server's address and the admin's credentials are put in for
// the README's placeholders. The restored disk must be the source byte for
// byte (by hash), and what the script printed must show each step.
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
	for _, p := range []string{"sh", "az", "sed"} {
		testenv.NeedProgram(t, p)
	}
	dir := t.TempDir()
	e := startDP(t, Options{DataDir: filepath.Join(dir, "coffer-data")})
	env := append(os.Environ(), "AZURE_CONFIG_DIR="+filepath.Join(t.TempDir(), "az"), "AZURE_CORE_COLLECT_TELEMETRY=false",
		"AZURE_CORE_NO_COLOR=true",
		// What the first block exports stays set in the reader's shell
		// for the second.
		"REQUESTS_CA_BUNDLE="+filepath.Join(dir, "coffer-data", "tls", "ca.pem"))
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

	// The README leaves writing the disk to the reader.
	e.write(t, "prod", "data", 0x5c, 0, 300<<20)
	want := e.hash(t, "prod", "data")

	out, errOut := run(blocks[1])
	vault := "/subscriptions/" + e.sub + "/resourceGroups/backup/providers/Microsoft.DataProtection/backupVaults/vault1"
	for _, s := range []string{
		vault,       // the subscription's vaults
		"refused\n", // validation before the roles
		"Backup\tCompleted", "Restore\tCompleted", "ValidateForBackup\tFailed", "ValidateForBackup\tCompleted",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("the script's output has no %q", s)
		}
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
