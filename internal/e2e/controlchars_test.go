package e2e

import (
	"context"
	"strings"
	"testing"

	"coffer/internal/client"
	"coffer/internal/identity"
	"coffer/internal/rbac"
)

// TestControlCharactersRefused: tag names and values with NUL or other
// control characters, and display names, friendly names and descriptions
// with them, are refused with Azure's error codes on every resource type
// that takes them, at create and at update, and nothing is changed.
func TestControlCharactersRefused(t *testing.T) {
	env := Start(t, Options{})
	ctx := context.Background()
	c := env.Client("")
	sub := env.Admin.SubscriptionID
	if _, err := c.CreateGroup(ctx, "rg", "local", map[string]string{"keep": "me"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDisk(ctx, "rg", "d1", client.DiskSpec{Location: "local", SizeGB: 1}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSnapshot(ctx, "rg", "s1", client.SnapshotSpec{Location: "local", Source: "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/d1"}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVault(ctx, "rg", "v1", "local", ""); err != nil {
		t.Fatal(err)
	}
	grp := "/subscriptions/" + sub + "/resourcegroups/"
	rg := "/subscriptions/" + sub + "/resourceGroups/rg/providers/"
	const rgv, cv, dpv = "?api-version=2021-04-01", "?api-version=2024-03-02", "?api-version=2024-04-01"
	diskSrc := `"creationData":{"createOption":"Copy","sourceResourceId":"` + rg + `Microsoft.Compute/disks/d1"}`
	nulName := `{"a\u0000b":"v"}`
	escName := `{"\u001b[31mred":"v"}`
	nulValue := `{"k":"v\u0000"}`
	c1Value := `{"k":"v\u0085"}`
	bi := `{"properties":{"objectType":"BackupInstance","friendlyName":"FRIENDLY","dataSourceInfo":{"objectType":"Datasource",` +
		`"datasourceType":"Microsoft.Compute/disks","resourceID":"` + rg + `Microsoft.Compute/disks/d1","resourceLocation":"local",` +
		`"resourceName":"d1","resourceType":"Microsoft.Compute/disks"},"policyInfo":{"policyId":"` + rg + `Microsoft.DataProtection/backupVaults/v1/backupPolicies/p"}},"tags":TAGS}`
	tests := []struct {
		name, method, path, body, code string
	}{
		{"group name with an escape", "PUT", grp + "a%1b%5B31m" + rgv, `{"location":"local"}`, "InvalidResourceGroup"},
		{"disk name with NUL", "PUT", rg + "Microsoft.Compute/disks/d%00x" + cv,
			`{"location":"local","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`, "InvalidResourceName"},
		{"group create, NUL in a tag name", "PUT", grp + "g2" + rgv, `{"location":"local","tags":` + nulName + `}`, "InvalidTagNameCharacters"},
		{"group update, escape in a tag name", "PATCH", grp + "rg" + rgv, `{"tags":` + escName + `}`, "InvalidTagNameCharacters"},
		{"group replace, NUL in a tag value", "PUT", grp + "rg" + rgv, `{"location":"local","tags":` + nulValue + `}`, "InvalidTagValueCharacters"},
		{"disk create, NUL in a tag name", "PUT", rg + "Microsoft.Compute/disks/d2" + cv,
			`{"location":"local","tags":` + nulName + `,"properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`, "InvalidTagNameCharacters"},
		{"disk update, C1 control in a tag value", "PATCH", rg + "Microsoft.Compute/disks/d1" + cv, `{"tags":` + c1Value + `}`, "InvalidTagValueCharacters"},
		{"snapshot create, NUL in a tag value", "PUT", rg + "Microsoft.Compute/snapshots/s2" + cv,
			`{"location":"local","tags":` + nulValue + `,"properties":{` + diskSrc + `}}`, "InvalidTagValueCharacters"},
		{"snapshot update, NUL in a tag name", "PATCH", rg + "Microsoft.Compute/snapshots/s1" + cv, `{"tags":` + nulName + `}`, "InvalidTagNameCharacters"},
		{"vault create, NUL in a tag name", "PUT", rg + "Microsoft.DataProtection/backupVaults/v2" + dpv,
			`{"location":"local","tags":` + nulName + `,"properties":{"storageSettings":[{"datastoreType":"VaultStore","type":"LocallyRedundant"}]}}`, "InvalidTagNameCharacters"},
		{"vault update, NUL in a tag value", "PATCH", rg + "Microsoft.DataProtection/backupVaults/v1" + dpv, `{"tags":` + nulValue + `}`, "InvalidTagValueCharacters"},
		{"backup instance, NUL in a tag name", "PUT", rg + "Microsoft.DataProtection/backupVaults/v1/backupInstances/bi" + dpv,
			strings.Replace(bi, "TAGS", nulName, 1), "InvalidTagNameCharacters"},
		{"backup instance, NUL in the friendly name", "PUT", rg + "Microsoft.DataProtection/backupVaults/v1/backupInstances/bi" + dpv,
			strings.Replace(strings.Replace(bi, "TAGS", "{}", 1), "FRIENDLY", `a\u0000b`, 1), "InvalidParameter"},
		{"subscription alias, NUL in the display name", "PUT", "/providers/Microsoft.Subscription/aliases/a1?api-version=2021-10-01",
			`{"properties":{"displayName":"x\u0000y","workload":"Production"}}`, "InvalidParameter"},
		{"service principal, escape in the display name", "POST", "/providers/Coffer.Identity/servicePrincipals?api-version=2024-01-01",
			`{"displayName":"\u001b]0;pwned\u0007"}`, "InvalidParameter"},
		{"role assignment, NUL in the description", "PUT", "/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleAssignments/" + identity.NewGUID() + "?api-version=2022-04-01",
			`{"properties":{"roleDefinitionId":"` + rbac.RoleReader + `","principalId":"` + env.Admin.PrincipalID + `","description":"x\u0000"}}`, "InvalidParameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := storeState(t, env)
			status, body, _ := raw(t, env, tt.method, tt.path, "", []byte(tt.body), nil)
			if status != 400 || errCode(body) != tt.code {
				t.Fatalf("got %d %q, want 400 %q (body %v)", status, errCode(body), tt.code, body)
			}
			msg, _ := body["error"].(map[string]any)["message"].(string)
			if strings.ContainsFunc(msg, func(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }) {
				t.Errorf("the message echoes control characters: %q", msg)
			}
			if ch := storeChanges(before, storeState(t, env)); len(ch) > 0 {
				t.Errorf("%s: %v", "a refused request changed something", ch)
			}
		})
	}
	// Tabs and line breaks stay allowed in multi-line text.
	if status, body, _ := raw(t, env, "PUT", "/subscriptions/"+sub+"/providers/Microsoft.Authorization/roleAssignments/"+identity.NewGUID()+"?api-version=2022-04-01", "",
		[]byte(`{"properties":{"roleDefinitionId":"`+rbac.RoleReader+`","principalId":"`+env.Admin.PrincipalID+`","description":"line 1\r\n\tline 2"}}`), nil); status != 201 {
		t.Fatalf("multi-line description: %d %v", status, body)
	}
	if g, err := c.GetGroup(ctx, "rg"); err != nil || len(g.Tags) != 1 || g.Tags["keep"] != "me" {
		t.Fatalf("group tags changed: %+v %v", g.Tags, err)
	}
}
