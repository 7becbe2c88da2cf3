package portal_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"coffer/internal/rbac"
)

// TestPolicyWizard walks the "Create policy" wizard with an HTML parser:
// Basics, Schedule + retention (adding a Daily rule, a retention over the
// 450-backup cap refused at its field with the limit explained), Review +
// create with the next ten backup times and the CLI equivalent, then the
// policy's page; the policy is what the API returns.
func TestPolicyWizard(t *testing.T) {
	s := newSite(t)
	ctx := context.Background()
	s.group("rg-vault")
	if _, err := s.admin.CreateVault(ctx, "rg-vault", "v1", "local", ""); err != nil {
		t.Fatal(err)
	}
	b := s.signedIn()

	list := b.getOK("/policies")
	if list.Find(`a.btn[href="/policies/new"]`).Length() != 1 {
		t.Fatalf("no enabled + Create policy on the list:\n%s", list.text("main"))
	}
	p := b.getOK("/policies/new")
	if p.Find("#tab-basics.on").Length() != 1 || p.Find(`#vault option[selected]`).Text() == "" {
		t.Fatalf("the wizard does not open on Basics with the vault chosen:\n%s", p.text("main"))
	}

	// Basics needs a valid name.
	p = b.submit(p, "#policy-form", map[string]string{"name": "bad name!", "tab": "schedule"})
	if p.resp.StatusCode != http.StatusBadRequest || p.Find("#tab-basics.on").Length() != 1 || !strings.Contains(p.text("main"), "bad name!") {
		t.Fatalf("an invalid name left Basics: %d\n%s", p.resp.StatusCode, p.text("main"))
	}
	p = b.submit(p, "#policy-form", map[string]string{"name": "p4h", "tab": "schedule"})
	if p.Find("#tab-schedule.on").Length() != 1 || p.Find("#rule-default").Length() != 1 {
		t.Fatalf("Schedule + retention: %d\n%s", p.resp.StatusCode, p.text("main"))
	}
	// The Default rule is editable but not removable; Daily can be added.
	if p.Find(`#rule-default button[name="remove-rule"]`).Length() != 0 || p.Find("#retention").Length() != 1 {
		t.Fatal("the Default rule can be removed, or not edited")
	}
	if lim := p.text("#retention-limit"); !strings.Contains(lim, "450") || !strings.Contains(lim, "75 days") || !strings.Contains(lim, "1 year") {
		t.Fatalf("the retention limit is not explained: %q", lim)
	}
	p = b.submit(p, "#policy-form", map[string]string{"add-rule": "Daily"})
	if p.Find("#rule-daily").Length() != 1 || p.Find("#add-daily").Length() != 0 {
		t.Fatalf("Add retention rule (Daily):\n%s", p.text("main"))
	}

	// 76 days of 4-hourly backups is more than 450 of them.
	p = b.submit(p, "#policy-form", map[string]string{"retention": "76", "tab": "review"})
	if p.resp.StatusCode != http.StatusBadRequest || p.Find("#tab-schedule.on").Length() != 1 {
		t.Fatalf("a retention over the cap reached Review: %d", p.resp.StatusCode)
	}
	const capMsg = "Retention P76D exceeds the maximum of 75 days (P75D) for backups every 4 hours (450 backups)"
	if got := p.text("#rule-default .field-error"); !strings.Contains(got, capMsg) {
		t.Fatalf("the error at the Default rule is %q, want %q", got, capMsg)
	}
	p = b.submit(p, "#policy-form", map[string]string{"retention": "30", "daily-retention": "90", "tab": "review"})
	if p.Find("#tab-review.on").Length() != 1 {
		t.Fatalf("Review + create: %d\n%s", p.resp.StatusCode, p.text("main"))
	}
	if n := p.Find("#next-backups li").Length(); n != 10 {
		t.Fatalf("%d next backup times, want 10", n)
	}
	const cli = "coffer policy create --resource-group rg-vault --vault-name v1 --name p4h --hourly 4 --time 02:00 --timezone UTC --retention 30d --daily-retention 90d"
	if got := p.text("#policy-form [data-cli]"); got != cli {
		t.Fatalf("CLI equivalent\n%s\nwant\n%s", got, cli)
	}

	p = b.submit(p, "#policy-form", map[string]string{"op": "create"})
	if p.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create: %d\n%s", p.resp.StatusCode, p.text("main"))
	}
	page := b.getOK(p.resp.Header.Get("Location"))
	if !strings.Contains(page.text(".flash"), "p4h created") || page.Find("#next-backups li").Length() != 10 {
		t.Fatalf("policy page:\n%s", page.text("main"))
	}
	if rules := page.text("#retention-rules"); !strings.Contains(rules, "Default") || !strings.Contains(rules, "30 days") || !strings.Contains(rules, "90 days") {
		t.Fatalf("retention rules: %q", rules)
	}
	pol, err := s.admin.GetPolicy(ctx, "rg-vault", "v1", "p4h")
	if err != nil {
		t.Fatal(err)
	}
	if js := page.text("details.json code"); !strings.Contains(js, `"name": "p4h"`) || !strings.Contains(js, pol.ID) {
		t.Fatalf("JSON view does not show the policy's ARM body: %s", js)
	}

	// Creating it again is refused on Basics, not a replacement.
	again := b.getOK("/policies/new")
	again = b.submit(again, "#policy-form", map[string]string{"name": "p4h", "op": "create"})
	if again.resp.StatusCode != http.StatusConflict || !strings.Contains(again.text("main"), "already has a policy named p4h") {
		t.Fatalf("creating p4h twice: %d\n%s", again.resp.StatusCode, again.text("main"))
	}
}

// TestPolicyReader: a Reader sees the policies but "+ Create policy" and
// Delete are disabled with the missing action, and forcing them is
// refused as the API refuses it.
func TestPolicyReader(t *testing.T) {
	s := newSite(t)
	ctx := context.Background()
	s.group("rg-vault")
	if _, err := s.admin.CreateVault(ctx, "rg-vault", "v1", "local", ""); err != nil {
		t.Fatal(err)
	}
	admin := s.signedIn()
	w := admin.submit(admin.getOK("/policies/new"), "#policy-form", map[string]string{"name": "daily", "frequency": "daily", "op": "create"})
	if w.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create: %d\n%s", w.resp.StatusCode, w.text("main"))
	}
	policyURL := w.resp.Header.Get("Location")

	r := s.signedInAs("reader", rbac.RoleReader, "/subscriptions/"+s.sub())
	list := r.getOK("/policies")
	if list.Find(`#policies a[href="`+policyURL+`"]`).Length() != 1 {
		t.Fatalf("the Reader does not see the policy:\n%s", list.text("main"))
	}
	if list.Find(`a.btn[href="/policies/new"]`).Length() != 0 || !strings.Contains(list.text(".denied"), "backupPolicies/write") {
		t.Fatalf("+ Create policy is not disabled with its reason: %q", list.text(".denied"))
	}
	page := r.getOK(policyURL)
	if page.Find("#delete-policy").Length() != 0 || !strings.Contains(page.text(".denied"), "backupPolicies/delete") {
		t.Fatal("Delete is offered to a Reader")
	}
	forced := r.submit(r.getOK("/policies/new"), "#policy-form", map[string]string{"name": "forced", "vault": "/subscriptions/" + s.sub() + "/resourceGroups/rg-vault/providers/Microsoft.DataProtection/backupVaults/v1", "op": "create"})
	if forced.resp.StatusCode != http.StatusForbidden || !strings.Contains(forced.text("main"), "AuthorizationFailed") {
		t.Fatalf("a forced create: %d\n%s", forced.resp.StatusCode, forced.text("main"))
	}
	del := r.post(policyURL+"/delete", map[string][]string{"csrf": {page.csrf()}})
	if del.resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a forced delete: %d", del.resp.StatusCode)
	}
	if _, err := s.admin.GetPolicy(ctx, "rg-vault", "v1", "daily"); err != nil {
		t.Fatalf("the policy is gone: %v", err)
	}
	if _, err := s.admin.GetPolicy(ctx, "rg-vault", "v1", "forced"); err == nil {
		t.Fatal("the Reader created a policy")
	}
}
