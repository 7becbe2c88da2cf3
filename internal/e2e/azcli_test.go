package e2e

import (
	"context"
	"testing"
)

// TestAzureCLI registers Coffer as a custom cloud in the Azure CLI (the way
// Azure Stack Hub is registered), logs in with the admin service principal
// through the AD FS-style authority, and manages resource groups with `az`.
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
	az.run("group", "delete", "-n", "az-rg", "--yes")
	if _, err := env.Client("").GetGroup(context.Background(), "az-rg"); err == nil {
		t.Fatal("group still exists after az group delete")
	}
}
