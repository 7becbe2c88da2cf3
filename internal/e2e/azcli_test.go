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

// TestAzureCLI registers Coffer as a custom cloud in the Azure CLI (the way
// Azure Stack Hub is registered), logs in with the admin service principal
// through the AD FS-style authority, and manages resource groups with `az`.
func TestAzureCLI(t *testing.T) {
	az := testenv.NeedProgram(t, "az")
	env := Start(t, Options{TLS: true})
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, env.Server.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, az, args...)
		cmd.Env = append(os.Environ(), "AZURE_CONFIG_DIR="+filepath.Join(dir, "az"), "REQUESTS_CA_BUNDLE="+ca,
			"AZURE_CORE_COLLECT_TELEMETRY=false", "AZURE_CORE_NO_COLOR=true")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("az %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("cloud", "register", "-n", "coffer", "--endpoint-resource-manager", env.Endpoint+"/")
	run("cloud", "set", "-n", "coffer")
	run("login", "--service-principal", "-u", env.Admin.ClientID, "-p", env.Admin.ClientSecret, "--tenant", "adfs")
	var acct struct{ ID, TenantID string }
	if err := json.Unmarshal([]byte(run("account", "show", "-o", "json")), &acct); err != nil || acct.ID != env.Admin.SubscriptionID {
		t.Fatalf("az account show: %+v %v", acct, err)
	}
	run("group", "create", "-n", "az-rg", "-l", "local", "--tags", "made=by-az")
	var groups []struct {
		Name string
		Tags map[string]string
	}
	if err := json.Unmarshal([]byte(run("group", "list", "-o", "json")), &groups); err != nil || len(groups) != 1 ||
		groups[0].Name != "az-rg" || groups[0].Tags["made"] != "by-az" {
		t.Fatalf("az group list: %+v %v", groups, err)
	}
	run("group", "delete", "-n", "az-rg", "--yes")
	if _, err := env.Client("").GetGroup(context.Background(), "az-rg"); err == nil {
		t.Fatal("group still exists after az group delete")
	}
}
