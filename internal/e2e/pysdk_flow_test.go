package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPythonSDKDataProtection runs testdata/python/dataprotection_flow.py
// with Debian's python3-azure against `serve --tls`: the how-to pages'
// whole flow (groups, a disk written through its SAS, vault, policy,
// validate refused then passed, role assignments created and listed with
// atScope() and principalId eq, protect, backup, recovery points, restore,
// jobs, the restore role revoked), each step checked by the script. Then
// the restored disk must be the source disk, byte for byte (by hash).
func TestPythonSDKDataProtection(t *testing.T) {
	needPythonAzure(t, "azure.identity", "azure.mgmt.dataprotection", "azure.mgmt.compute", "azure.mgmt.authorization",
		"azure.mgmt.resource", "azure.storage.blob")
	script, err := os.ReadFile(filepath.Join("testdata", "python", "dataprotection_flow.py"))
	if err != nil {
		t.Fatal(err)
	}
	e := startDP(t, Options{})
	out := runPython(t, e.Env, string(script))
	var disks struct{ Source, Restored string }
	if err := json.Unmarshal([]byte(out), &disks); err != nil {
		t.Fatalf("the script's output: %v\n%s", err, out)
	}
	want := "/subscriptions/" + e.sub + "/resourceGroups/rg-restore/providers/Microsoft.Compute/disks/restored1"
	if !strings.EqualFold(disks.Restored, want) {
		t.Fatalf("restored disk %q, want %q", disks.Restored, want)
	}
	src, restored := e.hash(t, "rg-disks", "data1"), e.hash(t, "rg-restore", "restored1")
	if src != restored {
		t.Fatalf("restored disk hash %s, want %s (the source at its recovery point)", restored, src)
	}
}

// TestReadmePython runs the README's Python set-up (the section "The
// Python SDK") as written, with the server's address and the admin's
// credentials put in, and lists the subscription's vaults with the client
// it builds.
func TestReadmePython(t *testing.T) {
	needPythonAzure(t, "azure.identity", "azure.mgmt.dataprotection")
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sec, err := readmeSection(string(b), "The Python SDK")
	if err != nil {
		t.Fatal(err)
	}
	blocks := fencedBlocks(sec, "python")
	if len(blocks) != 1 {
		t.Fatalf("the README's Python section has %d python blocks, want 1", len(blocks))
	}
	const addr = `"https://127.0.0.1:7480"`
	if !strings.Contains(blocks[0], addr) {
		t.Fatalf("the README's Python set-up no longer has %s:\n%s", addr, blocks[0])
	}
	e := startDP(t, Options{})
	e.group(t, "rg-py", "local")
	e.vault(t, "rg-py", "vault-py", "local")
	script := `import os
tenant_id, client_id, client_secret = os.environ["TENANT"], os.environ["CLIENT_ID"], os.environ["SECRET"]
subscription_id = os.environ["SUBSCRIPTION"]
` + strings.Replace(blocks[0], addr, `os.environ["ENDPOINT"]`, 1) + `
print(",".join(v.name for v in dp.backup_vaults.get_in_subscription()))
`
	if got := strings.TrimSpace(runPython(t, e.Env, script)); got != "vault-py" {
		t.Fatalf("the README's client lists %q, want vault-py", got)
	}
}
