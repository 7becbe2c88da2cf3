package e2e

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"coffer/internal/client"
)

// TestListFilters: the resource group list applies ARM's tag $filter (as
// `az group list --tag` and the SDK send it); a list that takes no
// $filter refuses one instead of listing everything; a malformed $top is
// refused instead of read up to its first non-digit.
func TestListFilters(t *testing.T) {
	e := startDP(t, Options{})
	ctx := context.Background()
	for name, tags := range map[string]map[string]string{
		"prod-a": {"env": "prod", "team": "a"}, "prod-b": {"Env": "prod"}, "test-a": {"env": "test"}, "bare": nil,
	} {
		g := armresources.ResourceGroup{Location: to.Ptr("local"), Tags: map[string]*string{}}
		for k, v := range tags {
			g.Tags[k] = to.Ptr(v)
		}
		if _, err := e.groups.CreateOrUpdate(ctx, name, g, nil); err != nil {
			t.Fatal(err)
		}
	}
	groups := func(filter string) ([]string, error) {
		var out []string
		for p := e.groups.NewListPager(&armresources.ResourceGroupsClientListOptions{Filter: to.Ptr(filter)}); p.More(); {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, err
			}
			for _, g := range page.Value {
				out = append(out, *g.Name)
			}
		}
		slices.Sort(out)
		return out, nil
	}
	for filter, want := range map[string]string{
		"tagName eq 'env'":                         "prod-a,prod-b,test-a",
		"tagName eq 'env' and tagValue eq 'prod'":  "prod-a,prod-b",
		"tagValue eq 'test' and tagName eq 'ENV'":  "test-a",
		"tagName eq 'team' and tagValue eq 'b'":    "",
		"tagName eq 'nope'":                        "",
		"tagName eq 'env' and tagValue eq 'PROD'":  "",
		"(tagName eq 'team') and tagValue eq 'a'":  "prod-a",
		"tagName eq 'env' and tagValue eq 'prod' ": "prod-a,prod-b",
	} {
		got, err := groups(filter)
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("groups $filter=%s: %v %v, want [%s]", filter, got, err, want)
		}
	}
	for _, filter := range []string{"tagName eq 'env' or tagName eq 'team'", "tagValue eq 'prod'", "name eq 'bare'",
		"tagName eq 'a' and tagName eq 'b'", "startswith(name, 'p')"} {
		if got, err := groups(filter); err == nil {
			t.Errorf("groups $filter=%s: %v, want 400 InvalidFilter", filter, got)
		} else if st, code := responseCode(t, err); st != http.StatusBadRequest || code != "InvalidFilter" {
			t.Errorf("groups $filter=%s: %d %s", filter, st, code)
		}
	}

	// Lists without a filter refuse one; so do other operations.
	c := e.Env.Client("")
	sub := "/subscriptions/" + e.sub
	for _, path := range []string{
		sub + "/providers/Microsoft.Compute/disks",
		sub + "/providers/Microsoft.DataProtection/backupVaults",
		sub + "/resourcegroups/bare",
	} {
		version := "2024-03-02"
		switch {
		case strings.Contains(path, "DataProtection"):
			version = "2024-04-01"
		case strings.HasSuffix(path, "/bare"):
			version = "2021-04-01"
		}
		_, err := c.Do(ctx, http.MethodGet, path, version, url.Values{"$filter": {"name eq 'x'"}}, nil, nil)
		if ce := client.AsError(err); ce == nil || ce.StatusCode != http.StatusBadRequest || ce.Code != "InvalidFilter" ||
			!strings.Contains(ce.Message, "takes no $filter") {
			t.Errorf("GET %s?$filter: %v, want 400 InvalidFilter", path, err)
		}
	}
	for _, top := range []string{"2abc", "0", "-1", "1e3"} {
		_, err := c.Do(ctx, http.MethodGet, sub+"/resourcegroups", "2021-04-01", url.Values{"$top": {top}}, nil, nil)
		if ce := client.AsError(err); ce == nil || ce.StatusCode != http.StatusBadRequest || ce.Code != "InvalidTopParameter" {
			t.Errorf("$top=%s: %v, want 400 InvalidTopParameter", top, err)
		}
	}
}
