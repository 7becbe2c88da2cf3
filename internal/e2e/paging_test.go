package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
)

// TestPaging lists more groups than a page holds: the SDK pager follows
// nextLink through every page, and $top limits a page.
func TestPaging(t *testing.T) {
	ctx := context.Background()
	env := Start(t, Options{TLS: true})
	env.Server.API.PageSize = 3
	cred := env.Credential(env.Admin.ClientID, env.Admin.ClientSecret)
	groups, err := armresources.NewResourceGroupsClient(env.Admin.SubscriptionID, cred, env.ARMOptions())
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 0; i < 8; i++ {
		name := fmt.Sprintf("page-%02d", i)
		want = append(want, name)
		if _, err := groups.CreateOrUpdate(ctx, name, armresources.ResourceGroup{Location: to.Ptr("local")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	pages := 0
	pager := groups.NewListPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page.Value) > 3 {
			t.Fatalf("page of %d items, page size is 3", len(page.Value))
		}
		for _, g := range page.Value {
			got = append(got, *g.Name)
		}
	}
	if pages != 3 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%d pages: %v", pages, got)
	}
	top, _ := groups.NewListPager(&armresources.ResourceGroupsClientListOptions{Top: to.Ptr[int32](2)}).NextPage(ctx)
	if len(top.Value) != 2 || top.NextLink != nil {
		t.Fatalf("$top=2: %d items, nextLink %v", len(top.Value), top.NextLink)
	}
}
