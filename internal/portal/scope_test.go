package portal_test

import (
	"strings"
	"testing"

	"coffer/internal/rbac"
)

// TestGroupScopedPrincipal: a principal whose only role is Reader on one
// resource group sees its subscription, and in it that group's vault and
// disk, and nothing of another group.
func TestGroupScopedPrincipal(t *testing.T) {
	s := newSite(t)
	for _, g := range []string{"rg-a", "rg-b"} {
		s.coffer("group", "create", "-n", g, "-l", "local")
		s.coffer("vault", "create", "-g", g, "-n", "vault-"+g)
		s.coffer("disk", "create", "-g", g, "-n", "disk-"+g, "--size-gb", "1")
	}
	id, secret := s.principal("rg-reader", rbac.RoleReader, "/subscriptions/"+s.sub()+"/resourceGroups/rg-a")
	b := s.browser()
	b.signIn(id, secret)
	for _, c := range []struct{ path, want, not string }{
		{"/vaults", "vault-rg-a", "vault-rg-b"},
		{"/disks", "disk-rg-a", "disk-rg-b"},
	} {
		main := b.getOK(c.path).text("main")
		if !strings.Contains(main, c.want) || strings.Contains(main, c.not) {
			t.Errorf("%s for a Reader of rg-a: want %s and not %s in\n%s", c.path, c.want, c.not, main)
		}
	}
	// The API lists the subscription too, as Azure does.
	tok, err := s.admin.ClientCredentials(t.Context(), s.env.Admin.TenantID, id, secret)
	if err != nil {
		t.Fatal(err)
	}
	subs, err := s.env.Client(tok).ListSubscriptions(t.Context())
	if err != nil || len(subs) != 1 || subs[0].SubscriptionID != s.sub() {
		t.Fatalf("GET /subscriptions for a Reader of rg-a: %+v %v", subs, err)
	}
	// … and reads it, as the list says it may.
	if got, err := s.env.Client(tok).GetSubscription(t.Context(), s.sub()); err != nil || got.SubscriptionID != s.sub() {
		t.Fatalf("GET /subscriptions/{sub} for a Reader of rg-a: %+v %v", got, err)
	}
}

// TestPrincipalWithoutRoles: a principal that holds no role anywhere can
// sign in and open every page without path parameters; it sees nothing,
// and each create command is disabled saying why. (Pages with a create
// command used to fail with 400 InvalidScope, deciding at "/subscriptions".)
func TestPrincipalWithoutRoles(t *testing.T) {
	s := newSite(t)
	s.coffer("group", "create", "-n", "rg1", "-l", "local")
	s.coffer("vault", "create", "-g", "rg1", "-n", "vault1")
	b := s.signedInAs("nobody", "", "")
	for _, r := range s.env.Server.Portal.Routes() {
		path, ok := strings.CutPrefix(r, "GET ")
		if !ok || path == "/signin" || strings.Contains(strings.ReplaceAll(path, "{$}", ""), "{") {
			continue
		}
		path = strings.ReplaceAll(path, "{$}", "")
		if path == "/assets/" {
			continue
		}
		p := b.getOK(path)
		if strings.Contains(p.text("main"), "vault1") {
			t.Errorf("%s shows vault1 to a principal without roles", path)
		}
	}
	for _, path := range []string{"/vaults", "/disks"} {
		if got := b.getOK(path).text("main"); !strings.Contains(got, "no role in any subscription") {
			t.Errorf("%s does not say why create is disabled:\n%s", path, got)
		}
	}
}
