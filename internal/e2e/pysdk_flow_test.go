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
