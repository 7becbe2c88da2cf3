package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"coffer/internal/client"
)

// TestVaultsListedBySubscription lists backup vaults across the
// subscription's groups with the Go SDK's NewGetInSubscriptionPager (over
// several pages) and with `coffer vault list` without -g; neither is
// refused for the missing resource group.
func TestVaultsListedBySubscription(t *testing.T) {
	e := startDP(t, Options{})
	e.Server.API.PageSize = 2
	var want []string
	for i, rg := range []string{"rg-a", "rg-b", "rg-c"} {
		e.group(t, rg, "local")
		for j := 0; j <= i; j++ {
			name := fmt.Sprintf("vault-%s-%d", rg[3:], j)
			e.vault(t, rg, name, "local")
			want = append(want, name)
		}
	}
	var got []string
	pages := 0
	pager := e.vaults.NewGetInSubscriptionPager(nil)
	for pager.More() {
		page, err := pager.NextPage(e.ctx)
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
		for _, v := range page.Value {
			got = append(got, *v.Name)
		}
	}
	slices.Sort(got)
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("SDK: %d pages, vaults %v; want 3 pages of %v", pages, got, want)
	}
	// The group-scoped list still sees only its group.
	var inB []string
	for p := e.vaults.NewGetInResourceGroupPager("rg-b", nil); p.More(); {
		page, err := p.NextPage(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Value {
			inB = append(inB, *v.Name)
		}
	}
	if strings.Join(inB, ",") != "vault-b-0,vault-b-1" {
		t.Fatalf("rg-b: %v", inB)
	}

	cliAgainst(t, e.Env)
	code, out, errs := runCLI("", false, "vault", "list", "-o", "json")
	if code != 0 {
		t.Fatalf("coffer vault list: exit %d: %s", code, errs)
	}
	var vs []client.Vault
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatalf("coffer vault list: %v: %s", err, out)
	}
	got = got[:0]
	for _, v := range vs {
		got = append(got, v.Name)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("coffer vault list: %v, want %v", got, want)
	}
}
