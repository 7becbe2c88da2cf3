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

// python is Debian's interpreter, which has the python3-azure modules
// (another python3 may come first on PATH).
const python = "/usr/bin/python3"

// needPythonAzure skips (or, when required, fails) a test unless Debian's
// python3 with the Azure SDK modules named by imports is present.
func needPythonAzure(t *testing.T, imports ...string) {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		testenv.Missing(t, "python3-azure", python+" is missing")
	}
	script := "import " + strings.Join(imports, ", ")
	if out, err := exec.Command(python, "-c", script).CombinedOutput(); err != nil {
		testenv.Missing(t, "python3-azure", python+" lacks the Azure SDK modules (Debian's python3-azure): "+strings.TrimSpace(string(out)))
	}
}

// runPython runs script with Debian's python3 against env (TLS): the
// script finds ENDPOINT, TENANT, CLIENT_ID, SECRET and SUBSCRIPTION in its
// environment, with REQUESTS_CA_BUNDLE pointing at the server's CA. It
// returns the script's standard output.
func runPython(t *testing.T, env *Env, script string) string {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, env.Server.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", script)
	cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+ca, "ENDPOINT="+env.Endpoint, "TENANT="+env.Admin.TenantID,
		"CLIENT_ID="+env.Admin.ClientID, "SECRET="+env.Admin.ClientSecret, "SUBSCRIPTION="+env.Admin.SubscriptionID)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s%s", err, out, stderr.String())
	}
	return string(out)
}

// pythonClient is the preamble of a script: a DataProtection client
// authenticated against Coffer as the admin service principal.
const pythonClient = `
import os
from azure.identity import ClientSecretCredential
from azure.mgmt.dataprotection import DataProtectionClient
ep = os.environ["ENDPOINT"]
cred = ClientSecretCredential(os.environ["TENANT"], os.environ["CLIENT_ID"], os.environ["SECRET"],
                              authority=ep, instance_discovery=False)
dp = DataProtectionClient(cred, os.environ["SUBSCRIPTION"], base_url=ep, credential_scopes=[ep + "/.default"])
`

// TestPythonSDKVaultsInSubscription: the Python SDK's
// backup_vaults.get_in_subscription lists the vaults of every group.
func TestPythonSDKVaultsInSubscription(t *testing.T) {
	needPythonAzure(t, "azure.identity", "azure.mgmt.dataprotection")
	e := startDP(t, Options{})
	e.Server.API.PageSize = 1
	e.group(t, "rg-a", "local")
	e.group(t, "rg-b", "local")
	e.vault(t, "rg-a", "vault-a", "local")
	e.vault(t, "rg-b", "vault-b", "local")
	out := runPython(t, e.Env, pythonClient+`
print(",".join(sorted(v.name for v in dp.backup_vaults.get_in_subscription())))
`)
	if got := strings.TrimSpace(out); got != "vault-a,vault-b" {
		t.Fatalf("get_in_subscription: %q, want vault-a,vault-b", got)
	}
}
