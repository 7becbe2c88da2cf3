package portal_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/e2e"
	"coffer/internal/rbac"
)

// TestRecover: a recovery point restored through Recover. Validation
// fails for the missing Disk Restore Operator, Grant permissions assigns
// it and validates again, Review + restore runs the job, the restored
// disk holds the source's bytes at the point's time (by hash, through the
// API), and the restore's page revokes the role with one click.
func TestRecover(t *testing.T) {
	s := newSite(t)
	ctx := context.Background()
	instanceURL, _ := protected(t, s, "data1")
	s.group("rg-restore")
	writeDisk(t, s, "rg-disks", "data1", bytes.Repeat([]byte("before "), 4096))
	want, err := e2e.DiskSHA256(ctx, s.admin, client.Disks, "rg-disks", "data1")
	if err != nil {
		t.Fatal(err)
	}
	b := s.signedIn()
	backupNow(t, s, b, instanceURL)
	writeDisk(t, s, "rg-disks", "data1", bytes.Repeat([]byte("after! "), 4096))

	page := b.getOK(instanceURL)
	restore, ok := page.Find(`#points a[href^="/recover?"]`).Attr("href")
	if !ok {
		t.Fatalf("no Restore link on the recovery point:\n%s", page.text("#points"))
	}
	p := b.getOK(restore)
	if p.Find(`#points input[name="rp"][checked]`).Length() != 1 {
		t.Fatalf("the recovery point is not chosen:\n%s", p.text("main"))
	}
	p = b.submit(p, "#recover-form", map[string]string{"target-group": "rg-restore", "name": "restored1", "op": "validate"})
	if !strings.Contains(p.text("#validation-error"), "Disk Restore Operator") || p.Find("#grant").Length() != 1 || p.Find("#restore").Length() != 0 {
		t.Fatalf("validation without Disk Restore Operator:\n%s", p.text("main"))
	}
	p = b.submit(p, "#recover-form", map[string]string{"op": "grant"})
	if p.Find("#validation-ok").Length() != 1 || !strings.Contains(p.text(".flash"), "Disk Restore Operator") {
		t.Fatalf("after Grant permissions:\n%s", p.text("main"))
	}
	if cli := p.text("#recover-form [data-cli]"); !strings.HasPrefix(cli, "coffer restore --resource-group rg-vault --vault-name v1 --instance data1-bi --rp ") ||
		!strings.HasSuffix(cli, " --target-group rg-restore --target-disk restored1") {
		t.Fatalf("CLI equivalent %q", cli)
	}
	p = b.submit(p, "#recover-form", map[string]string{"op": "restore"})
	if p.resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(p.resp.Header.Get("Location"), "/recover/status/") {
		t.Fatalf("restore: %d\n%s", p.resp.StatusCode, p.text("main"))
	}
	status := p.resp.Header.Get("Location")
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	j, err := e2e.WaitJob(wctx, s.admin, "rg-vault", "v1", path.Base(status))
	if err != nil {
		t.Fatal(err)
	}
	if err := e2e.JobError(j); err != nil {
		t.Fatal(err)
	}
	got, err := e2e.DiskSHA256(ctx, s.admin, client.Disks, "rg-restore", "restored1")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("the restored disk's hash is %s, the source's at the backup %s", got, want)
	}

	done := b.getOK(status)
	if done.Find("#restored-disk").Length() != 1 || done.Find(`#revoke button[type="submit"]:not([disabled])`).Length() != 1 {
		t.Fatalf("restore page after success:\n%s", done.text("main"))
	}
	revoked := b.submit(done, "#revoke form", nil)
	if revoked.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d\n%s", revoked.resp.StatusCode, revoked.text("main"))
	}
	after := b.getOK(revoked.resp.Header.Get("Location"))
	if !strings.Contains(after.text(".flash"), "Revoked Disk Restore Operator") || after.Find("#no-restore-role").Length() != 1 {
		t.Fatalf("after revoking:\n%s", after.text("main"))
	}
	v, err := s.admin.GetVault(ctx, "rg-vault", "v1")
	if err != nil {
		t.Fatal(err)
	}
	as, err := s.admin.ListRoleAssignments(ctx, "/subscriptions/"+s.sub()+"/resourceGroups/rg-restore", "principalId eq '"+v.PrincipalID()+"'")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if strings.HasSuffix(a.Properties.RoleDefinitionID, rbac.RoleDiskRestoreOperator) {
			t.Fatalf("Disk Restore Operator is still assigned: %+v", a)
		}
	}
}

// TestRecoverReader: a Reader is offered neither Validate's grant nor
// Restore, and forced restore, grant and revoke requests are refused as
// the API refuses them.
func TestRecoverReader(t *testing.T) {
	s := newSite(t)
	ctx := context.Background()
	instanceURL, _ := protected(t, s, "data1")
	s.group("rg-restore")
	backupNow(t, s, s.signedIn(), instanceURL)
	r := s.signedInAs("reader", rbac.RoleReader, "/subscriptions/"+s.sub())
	page := r.getOK("/recover")
	if page.Find("#restore, #validate").Length() != 0 || !strings.Contains(page.text("#recover-form .denied"), "validateRestore/action") {
		t.Fatalf("Restore is offered to a Reader:\n%s", page.text("main"))
	}
	instance, _ := page.Find("#instance option[selected]").Attr("value")
	rp, _ := page.Find(`#points input[name="rp"][checked]`).Attr("value")
	form := func(op string) url.Values {
		return url.Values{"csrf": {page.csrf()}, "instance": {instance}, "rp": {rp}, "target-subscription": {s.sub()},
			"target-group": {"rg-restore"}, "name": {"forced"}, "op": {op}}
	}
	for _, op := range []string{"validate", "grant", "restore"} {
		if p := r.post("/recover", form(op)); p.resp.StatusCode != http.StatusForbidden {
			t.Errorf("forced %s: %d", op, p.resp.StatusCode)
		}
	}
	revoke := r.post("/recover/revoke", url.Values{"csrf": {page.csrf()}, "scope": {"/subscriptions/" + s.sub() + "/resourceGroups/rg-restore"},
		"assignment": {"00000000-0000-0000-0000-000000000001"}})
	if revoke.resp.StatusCode != http.StatusForbidden {
		t.Errorf("forced revoke: %d", revoke.resp.StatusCode)
	}
	if _, err := s.admin.GetDisk(ctx, "rg-restore", "forced"); err == nil {
		t.Fatal("a Reader restored a disk")
	}
	// Configure protection is refused too.
	p := r.getOK("/protect")
	if p.Find("#configure").Length() != 0 || !strings.Contains(p.text("main .denied"), "backupInstances/write") {
		t.Fatalf("Configure protection is offered to a Reader:\n%s", p.text("main"))
	}
}
