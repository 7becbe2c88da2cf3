package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"coffer/internal/testenv"
)

// azCLI runs Debian's Azure CLI with a configuration directory of its own.
type azCLI struct {
	t   *testing.T
	bin string
	env []string
}

// azEnv is the environment of an az run: its own configuration directory,
// the server's CA, no telemetry or colour.
func azEnv(configDir, caFile string) []string {
	return append(os.Environ(), "AZURE_CONFIG_DIR="+configDir, "REQUESTS_CA_BUNDLE="+caFile,
		"AZURE_CORE_COLLECT_TELEMETRY=false", "AZURE_CORE_NO_COLOR=true", "AZURE_CORE_ONLY_SHOW_ERRORS=true")
}

// newAzCLI registers env's server (TLS) as the cloud "coffer" in a new
// Azure CLI configuration and makes it the active cloud (no one is logged
// in yet).
func newAzCLI(t *testing.T, env *Env) *azCLI {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, env.Server.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &azCLI{t: t, bin: testenv.NeedProgram(t, "az"), env: azEnv(filepath.Join(dir, "az"), ca)}
	a.run("cloud", "register", "-n", "coffer", "--endpoint-resource-manager", env.Endpoint+"/")
	a.run("cloud", "set", "-n", "coffer")
	return a
}

// run runs az, failing the test if it fails, and returns its output.
func (a *azCLI) run(args ...string) string {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.bin, args...)
	cmd.Env = a.env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		a.t.Fatalf("az %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// json runs az and decodes its JSON output into v.
func (a *azCLI) json(v any, args ...string) {
	a.t.Helper()
	out := a.run(args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		a.t.Fatalf("az %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (a *azCLI) login(clientID, secret string) {
	a.t.Helper()
	a.run("login", "--service-principal", "-u", clientID, "-p="+secret, "--tenant", "adfs", "-o", "none") // -p=: a secret may start with a dash
}

// TestAzureCLI registers Coffer as a custom cloud in the Azure CLI (the way
// Azure Stack Hub is registered), logs in with the admin service principal
// through the AD FS-style authority, and manages resource groups, disks
// and snapshots with `az`. (The README's section on the Azure CLI, backups
// and restores through az rest included, runs in TestReadmeAzureCLI.)
func TestAzureCLI(t *testing.T) {
	env := Start(t, Options{TLS: true})
	az := newAzCLI(t, env)
	az.login(env.Admin.ClientID, env.Admin.ClientSecret)
	var acct struct{ ID, TenantID string }
	if az.json(&acct, "account", "show", "-o", "json"); acct.ID != env.Admin.SubscriptionID {
		t.Fatalf("az account show: %+v", acct)
	}
	az.run("group", "create", "-n", "az-rg", "-l", "local", "--tags", "made=by-az")
	var groups []struct {
		Name string
		Tags map[string]string
	}
	if az.json(&groups, "group", "list", "-o", "json"); len(groups) != 1 || groups[0].Name != "az-rg" || groups[0].Tags["made"] != "by-az" {
		t.Fatalf("az group list: %+v", groups)
	}
	var disk struct {
		ID         string
		DiskSizeGB int
	}
	if az.json(&disk, "disk", "create", "-g", "az-rg", "-n", "d1", "--size-gb", "2", "-l", "local", "-o", "json"); disk.DiskSizeGB != 2 {
		t.Fatalf("az disk create: %+v", disk)
	}
	var snap struct {
		Name         string
		CreationData struct{ SourceResourceID string }
	}
	az.json(&snap, "snapshot", "create", "-g", "az-rg", "-n", "s1", "--source", "d1", "-l", "local", "-o", "json")
	if !strings.EqualFold(snap.CreationData.SourceResourceID, disk.ID) {
		t.Fatalf("az snapshot create: %+v, want the source %s", snap, disk.ID)
	}
	var snaps []struct{ Name string }
	if az.json(&snaps, "snapshot", "list", "-g", "az-rg", "-o", "json"); len(snaps) != 1 || snaps[0].Name != "s1" {
		t.Fatalf("az snapshot list: %+v", snaps)
	}
	az.run("group", "delete", "-n", "az-rg", "--yes")
	if _, err := env.Client("").GetGroup(context.Background(), "az-rg"); err == nil {
		t.Fatal("group still exists after az group delete")
	}
}
