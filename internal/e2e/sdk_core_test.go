package e2e

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"coffer/internal/identity"
	"coffer/internal/rbac"
)

func responseCode(t *testing.T, err error) (int, string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("want *azcore.ResponseError, got %v", err)
	}
	return re.StatusCode, re.ErrorCode
}

// TestAzureSDKCore drives the server with the official Azure SDK for Go:
// tokens from azidentity's ClientSecretCredential over HTTPS, resource
// groups with armresources, role definitions and assignments with
// armauthorization/v2, a Reader's 403 on a write and 200 on a read, and a
// group deletion through its long-running operation.
func TestAzureSDKCore(t *testing.T) {
	ctx := context.Background()
	env := Start(t, Options{TLS: true})
	sub := env.Admin.SubscriptionID
	adminCred := env.Credential(env.Admin.ClientID, env.Admin.ClientSecret)

	groups, err := armresources.NewResourceGroupsClient(sub, adminCred, env.ARMOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"rg-app", "rg-doomed"} {
		res, err := groups.CreateOrUpdate(ctx, name, armresources.ResourceGroup{Location: to.Ptr("local"),
			Tags: map[string]*string{"env": to.Ptr("test")}}, nil)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if *res.Name != name || *res.Location != "local" || *res.Properties.ProvisioningState != "Succeeded" {
			t.Fatalf("create %s: got %+v", name, res)
		}
	}
	var names []string
	pager := groups.NewListPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range page.Value {
			names = append(names, *g.Name)
		}
	}
	if len(names) != 2 || names[0] != "rg-app" || names[1] != "rg-doomed" {
		t.Fatalf("listed groups %v", names)
	}
	exists, err := groups.CheckExistence(ctx, "rg-app", nil)
	if err != nil || !exists.Success {
		t.Fatalf("CheckExistence: %v %v", exists, err)
	}

	// A service principal with Reader on rg-app.
	sp, err := env.Client("").CreateServicePrincipal(ctx, "reader-app")
	if err != nil {
		t.Fatal(err)
	}
	defs, err := armauthorization.NewRoleDefinitionsClient(adminCred, env.ARMOptions())
	if err != nil {
		t.Fatal(err)
	}
	scope := "subscriptions/" + sub + "/resourceGroups/rg-app"
	var readerID string
	dp := defs.NewListPager(scope, &armauthorization.RoleDefinitionsClientListOptions{Filter: to.Ptr("roleName eq 'Reader'")})
	for dp.More() {
		page, err := dp.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page.Value {
			readerID = *d.ID
			if *d.Properties.RoleName != "Reader" || *d.Name != rbac.RoleReader {
				t.Fatalf("role definition filter returned %s (%s)", *d.Properties.RoleName, *d.Name)
			}
		}
	}
	if readerID == "" {
		t.Fatal("Reader role definition not listed")
	}
	assignments, err := armauthorization.NewRoleAssignmentsClient(sub, adminCred, env.ARMOptions())
	if err != nil {
		t.Fatal(err)
	}
	name := identity.NewGUID()
	params := armauthorization.RoleAssignmentCreateParameters{Properties: &armauthorization.RoleAssignmentProperties{
		PrincipalID: to.Ptr(sp.PrincipalID), RoleDefinitionID: to.Ptr(readerID), PrincipalType: to.Ptr(armauthorization.PrincipalTypeServicePrincipal)}}
	ra, err := assignments.Create(ctx, scope, name, params, nil)
	if err != nil {
		t.Fatalf("assign Reader: %v", err)
	}
	if *ra.Properties.PrincipalID != sp.PrincipalID || *ra.Name != name {
		t.Fatalf("assignment %+v", ra.Properties)
	}
	// The same grant under another name is refused.
	_, err = assignments.Create(ctx, scope, identity.NewGUID(), params, nil)
	if st, code := responseCode(t, err); st != http.StatusConflict || code != "RoleAssignmentExists" {
		t.Fatalf("duplicate assignment: %d %s", st, code)
	}
	// Listing at the group with principalId eq finds it.
	lp := assignments.NewListForScopePager(scope, &armauthorization.RoleAssignmentsClientListForScopeOptions{
		Filter: to.Ptr("principalId eq '" + sp.PrincipalID + "'")})
	found := 0
	for lp.More() {
		page, err := lp.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found += len(page.Value)
	}
	if found != 1 {
		t.Fatalf("listed %d assignments for the reader, want 1", found)
	}

	// The reader's own token: reads pass, writes are 403 AuthorizationFailed.
	readerCred := env.Credential(sp.ClientID, sp.ClientSecret)
	readerGroups, _ := armresources.NewResourceGroupsClient(sub, readerCred, env.ARMOptions())
	if _, err := readerGroups.Get(ctx, "rg-app", nil); err != nil {
		t.Fatalf("reader GET: %v", err)
	}
	_, err = readerGroups.CreateOrUpdate(ctx, "rg-app", armresources.ResourceGroup{Location: to.Ptr("local")}, nil)
	if st, code := responseCode(t, err); st != http.StatusForbidden || code != "AuthorizationFailed" {
		t.Fatalf("reader PUT: %d %s", st, code)
	}
	_, err = readerGroups.Get(ctx, "rg-doomed", nil)
	if st, code := responseCode(t, err); st != http.StatusForbidden || code != "AuthorizationFailed" {
		t.Fatalf("reader GET outside its scope: %d %s", st, code)
	}
	readerAssign, _ := armauthorization.NewRoleAssignmentsClient(sub, readerCred, env.ARMOptions())
	_, err = readerAssign.Create(ctx, scope, identity.NewGUID(), params, nil)
	if st, code := responseCode(t, err); st != http.StatusForbidden || code != "AuthorizationFailed" {
		t.Fatalf("reader assigning roles: %d %s", st, code)
	}

	// Delete a group through its LRO; the poller must finish.
	poller, err := groups.BeginDelete(ctx, "rg-doomed", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond}); err != nil {
		t.Fatalf("delete poll: %v", err)
	}
	_, err = groups.Get(ctx, "rg-doomed", nil)
	if st, code := responseCode(t, err); st != http.StatusNotFound || code != "ResourceGroupNotFound" {
		t.Fatalf("GET deleted group: %d %s", st, code)
	}

	// Deleting the assignment takes the reader's access away at once.
	if _, err := assignments.Delete(ctx, scope, name, nil); err != nil {
		t.Fatal(err)
	}
	_, err = readerGroups.Get(ctx, "rg-app", nil)
	if st, _ := responseCode(t, err); st != http.StatusForbidden {
		t.Fatalf("reader GET after unassignment: %d", st)
	}
}
