package authorization_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"coffer/internal/authorization"
	"coffer/internal/identity"
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// assign gives principal role at scope.
func assign(t *testing.T, s *authorization.Service, principal, role, scope string) {
	t.Helper()
	ctx := context.Background()
	if err := s.Store.Update(ctx, func(tx store.Tx) error {
		_, err := s.Assign(ctx, tx, principal, "User", role, scope, alice)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestDecide: the decision names what is missing and where; a role at a
// scope covers the scopes below it and not its siblings; tenant-level
// actions are held by tenant administrators only, whatever their roles.
func TestDecide(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	assign(t, s, alice, rbac.RoleBackupContributor, group)
	assign(t, s, bob, rbac.RoleOwner, "/")
	vault := group + "/providers/Microsoft.DataProtection/backupVaults/v"
	const write = "Microsoft.DataProtection/backupVaults/write"
	for _, c := range []struct {
		name   string
		p      identity.Principal
		action string
		scope  string
		want   authorization.Decision
	}{
		{"role at the group, vault below", identity.Principal{ID: alice}, write, vault, authorization.Decision{Allowed: true}},
		{"role at the group, another group", identity.Principal{ID: alice}, write, sub + "/resourceGroups/rg2",
			authorization.Decision{MissingAction: write, Scope: sub + "/resourceGroups/rg2"}},
		{"action the role lacks", identity.Principal{ID: alice}, "Microsoft.Compute/disks/write", vault,
			authorization.Decision{MissingAction: "Microsoft.Compute/disks/write", Scope: vault}},
		{"no principal", identity.Principal{}, write, vault, authorization.Decision{MissingAction: write, Scope: vault}},
		{"Owner at the root: tenant action", identity.Principal{ID: bob}, "Coffer.Admin/gc/action", "/",
			authorization.Decision{MissingAction: "Coffer.Admin/gc/action", Scope: "/"}},
		{"Owner at the root: other actions", identity.Principal{ID: bob}, write, vault, authorization.Decision{Allowed: true}},
		{"tenant administrator without roles", identity.Principal{ID: "00000000-0000-4000-8000-000000000003", TenantAdmin: true},
			"coffer.identity/principals/read", "/", authorization.Decision{Allowed: true}},
		{"tenant administrator, resource action", identity.Principal{ID: "00000000-0000-4000-8000-000000000003", TenantAdmin: true},
			write, vault, authorization.Decision{MissingAction: write, Scope: vault}},
	} {
		got, err := s.Decide(ctx, c.p, c.action, c.scope)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s: Decide = %+v, want %+v", c.name, got, c.want)
		}
		ok, err := s.Allowed(ctx, c.p, c.action, c.scope)
		if err != nil || ok != c.want.Allowed {
			t.Errorf("%s: Allowed = %v %v, want %v (one decision function)", c.name, ok, err, c.want.Allowed)
		}
	}
	d, _ := s.Decide(ctx, identity.Principal{ID: alice}, "Microsoft.Compute/disks/write", vault)
	if r := d.Reason(); r != "needs Microsoft.Compute/disks/write at scope "+vault {
		t.Errorf("Reason = %q", r)
	}
	d, _ = s.Decide(ctx, identity.Principal{ID: alice}, "Coffer.Admin/gc/action", "/")
	if r := d.Reason(); !strings.Contains(r, "tenant administrators") {
		t.Errorf("Reason of a tenant action = %q", r)
	}
	if _, err := s.Decide(ctx, identity.Principal{ID: alice}, write, "/subscriptions//x"); !resource.IsCode(err, "InvalidScope") {
		t.Errorf("invalid scope: %v, want InvalidScope", err)
	}
}

// TestDecideAllAndEach: several needs are decided on one read of the role
// assignments, and the first one missing is named; a list is filtered to
// what the principal may see, in order.
func TestDecideAllAndEach(t *testing.T) {
	s, cs := newService(t)
	ctx := context.Background()
	assign(t, s, alice, rbac.RoleReader, group)
	alicep := identity.Principal{ID: alice}
	disk := group + "/providers/Microsoft.Compute/disks/d"
	cs.views.Store(0)
	d, err := s.DecideAll(ctx, alicep,
		authorization.Need{Action: "Microsoft.Compute/disks/read", Scope: disk},
		authorization.Need{Action: "Microsoft.Compute/disks/beginGetAccess/action", Scope: disk},
		authorization.Need{Action: "Microsoft.Compute/disks/write", Scope: disk})
	if err != nil {
		t.Fatal(err)
	}
	if want := (authorization.Decision{MissingAction: "Microsoft.Compute/disks/beginGetAccess/action", Scope: disk}); d != want {
		t.Errorf("DecideAll = %+v, want %+v", d, want)
	}
	if n := cs.views.Load(); n != 1 {
		t.Errorf("DecideAll read the store %d times, want 1", n)
	}

	scopes := []string{sub + "/resourceGroups/rg2/providers/Microsoft.Compute/disks/a", disk, group, sub}
	cs.views.Store(0)
	vis, err := authorization.Visible(ctx, s, alicep, "Microsoft.Compute/disks/read", scopes, func(s string) string { return s })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{disk, group}; strings.Join(vis, ",") != strings.Join(want, ",") {
		t.Errorf("Visible = %v, want %v", vis, want)
	}
	if n := cs.views.Load(); n != 1 {
		t.Errorf("Visible read the store %d times, want 1", n)
	}
}

// TestRequire: a refusal is Azure's 403 in Azure's words, and carries the
// decision for callers that act on it (errors.As / Denial).
func TestRequire(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	assign(t, s, alice, rbac.RoleDiskSnapshotContributor, group)
	p := identity.Principal{ID: alice, ClientID: "client-a"}
	disk := sub + "/resourceGroups/rg2/providers/Microsoft.Compute/disks/d"
	snap := group + "/providers/Microsoft.Compute/snapshots/s"
	if err := s.Require(ctx, p, "Microsoft.Compute/snapshots/write", snap); err != nil {
		t.Fatalf("Require of a held action: %v", err)
	}
	err := s.Require(ctx, p, "Microsoft.Compute/disks/read", disk)
	e := resource.AsError(err)
	if e == nil || e.Kind != resource.KindForbidden || e.Code != "AuthorizationFailed" {
		t.Fatalf("Require = %v, want 403 AuthorizationFailed", err)
	}
	if want := "The client 'client-a' with object id '" + alice + "' does not have authorization to perform action 'Microsoft.Compute/disks/read' over scope '" + disk +
		"' or the scope is invalid. If access was recently granted, please refresh your credentials."; e.Message != want {
		t.Errorf("message = %q\nwant      %q", e.Message, want)
	}
	if !errors.Is(err, authorization.ErrDenied) {
		t.Error("the refusal does not match ErrDenied")
	}
	if d, ok := authorization.Denial(err); !ok || d.MissingAction != "Microsoft.Compute/disks/read" || d.Scope != disk {
		t.Errorf("Denial = %+v %v", d, ok)
	}

	own := authorization.Need{Action: "Microsoft.Compute/snapshots/write", Scope: snap}
	err = s.RequireLinked(ctx, p, own, authorization.Need{Action: "Microsoft.Compute/disks/beginGetAccess/action", Scope: disk})
	if e := resource.AsError(err); e == nil || e.Kind != resource.KindForbidden || e.Code != "LinkedAuthorizationFailed" ||
		!strings.Contains(e.Message, "has permission to perform action 'Microsoft.Compute/snapshots/write' on scope '"+snap+"'") ||
		!strings.Contains(e.Message, "'Microsoft.Compute/disks/beginGetAccess/action' on the linked scope(s) '"+disk+"'") {
		t.Errorf("RequireLinked = %v", err)
	}
	if d, ok := authorization.Denial(err); !ok || d.Scope != disk {
		t.Errorf("Denial of a linked refusal = %+v %v", d, ok)
	}
	if _, ok := authorization.Denial(errors.New("other")); ok {
		t.Error("Denial of another error")
	}
}
