package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"coffer/internal/client"
)

// TestVaultKeepsMonitoringSettings: a vault created with
// monitoringSettings.azureMonitorAlertSettings.alertsForAllJobFailures
// Disabled says so on GET and in lists, and keeps it through a PATCH of
// something else; a PATCH switches it back on.
func TestVaultKeepsMonitoringSettings(t *testing.T) {
	ctx := context.Background()
	env := Start(t, Options{})
	c := env.Client("")
	createGroups(t, ctx, c, "rg-vault")
	vaultID := "/subscriptions/" + c.Subscription + "/resourceGroups/rg-vault/providers/Microsoft.DataProtection/backupVaults/quiet"
	setting := func(v string) map[string]any {
		return map[string]any{"azureMonitorAlertSettings": map[string]any{"alertsForAllJobFailures": v}}
	}
	body := map[string]any{"location": "local", "identity": map[string]any{"type": "SystemAssigned"},
		"properties": map[string]any{"storageSettings": []any{map[string]any{"datastoreType": "VaultStore", "type": "LocallyRedundant"}},
			"monitoringSettings": setting("Disabled")}}
	resp, err := c.Do(ctx, http.MethodPut, vaultID, client.DataProtectionVersion, nil, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, resp, nil); err != nil {
		t.Fatal(err)
	}
	want := func(v string) {
		t.Helper()
		var raw map[string]any
		if _, err := c.Do(ctx, http.MethodGet, vaultID, client.DataProtectionVersion, nil, nil, &raw); err != nil {
			t.Fatal(err)
		}
		if b, _ := json.Marshal(raw); !strings.Contains(string(b), `"alertsForAllJobFailures":"`+v+`"`) {
			t.Fatalf("vault: want alertsForAllJobFailures %s: %s", v, b)
		}
	}
	want("Disabled")
	var list map[string]any
	if _, err := c.Do(ctx, http.MethodGet, "/subscriptions/"+c.Subscription+"/resourceGroups/rg-vault/providers/Microsoft.DataProtection/backupVaults",
		client.DataProtectionVersion, nil, nil, &list); err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(list); !strings.Contains(string(b), `"alertsForAllJobFailures":"Disabled"`) {
		t.Fatalf("vault list: %s", b)
	}
	patch := func(p map[string]any) {
		t.Helper()
		resp, err := c.Do(ctx, http.MethodPatch, vaultID, client.DataProtectionVersion, nil, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Wait(ctx, resp, nil); err != nil {
			t.Fatal(err)
		}
	}
	patch(map[string]any{"tags": map[string]string{"team": "ops"}})
	want("Disabled")
	patch(map[string]any{"properties": map[string]any{"monitoringSettings": setting("Enabled")}})
	want("Enabled")
}
