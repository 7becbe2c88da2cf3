package portal_test

import (
	"context"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"coffer/internal/client"
	"coffer/internal/e2e"
	"coffer/internal/identity"
	"coffer/internal/rbac"
)

// protected makes a protected disk: protectSetup, the vault identity's
// roles and the backup instance "<disk>-bi", through the API. It returns
// the instance's portal page and the disk's ID.
func protected(t *testing.T, s *site, disk string) (instanceURL, diskID string) {
	t.Helper()
	ctx := context.Background()
	disks, snapRG, principal := protectSetup(t, s, disk)
	for _, a := range [][2]string{{rbac.RoleDiskBackupReader, disks[0]}, {rbac.RoleDiskSnapshotContributor, snapRG}} {
		if _, err := s.admin.CreateRoleAssignment(ctx, a[1], identity.NewGUID(), a[0], principal, "ServicePrincipal"); err != nil {
			t.Fatal(err)
		}
	}
	pol, err := s.admin.GetPolicy(ctx, "rg-vault", "v1", "p4h")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin.PutInstance(ctx, "rg-vault", "v1", disk+"-bi", client.InstanceBody(disks[0], "local", pol.ID, snapRG)); err != nil {
		t.Fatal(err)
	}
	return "/instances/" + s.sub() + "/rg-vault/v1/" + disk + "-bi", disks[0]
}

// writeDisk writes data at offset 0 of a disk through the API.
func writeDisk(t *testing.T, s *site, rg, name string, data []byte) {
	t.Helper()
	ctx := context.Background()
	a, err := s.admin.GrantAccess(ctx, client.Disks, rg, name, "Write", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.admin.PutPages(ctx, a.AccessSAS, 0, data); err != nil {
		t.Fatal(err)
	}
	if err := s.admin.RevokeAccess(ctx, client.Disks, rg, name); err != nil {
		t.Fatal(err)
	}
}

// backupNow presses Backup now on an instance's page and waits for the
// job the portal answers with; it returns the job's page.
func backupNow(t *testing.T, s *site, b *browser, instanceURL string) string {
	t.Helper()
	p := b.submit(b.getOK(instanceURL), "#backup-form", nil)
	if p.resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(p.resp.Header.Get("Location"), "/jobs/") {
		t.Fatalf("Backup now: %d %s\n%s", p.resp.StatusCode, p.resp.Header.Get("Location"), p.text("main"))
	}
	jobURL := p.resp.Header.Get("Location")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	j, err := e2e.WaitJob(ctx, s.admin, "rg-vault", "v1", path.Base(jobURL))
	if err != nil {
		t.Fatal(err)
	}
	if err := e2e.JobError(j); err != nil {
		t.Fatal(err)
	}
	return jobURL
}

// TestInstances: the list with its filters and columns; an instance's
// page with Backup now (the job completes and its recovery point is
// listed), stop and resume with a reason, and deletion refused without
// the typed name.
func TestInstances(t *testing.T) {
	s := newSite(t)
	ctx := context.Background()
	instanceURL, _ := protected(t, s, "data1")
	if _, err := s.admin.UpdateDisk(ctx, "rg-disks", "data1", nil, map[string]string{"env": "prod"}); err != nil {
		t.Fatal(err)
	}
	b := s.signedIn()

	list := b.getOK("/instances")
	if got := list.text("#instances"); !strings.Contains(got, "data1") || !strings.Contains(got, "Protected") {
		t.Fatalf("list: %s", got)
	}
	for q, want := range map[string]int{
		"status=ProtectionConfigured": 1, "status=ProtectionStopped": 0, "tag=env%3Dprod": 1, "tag=env": 1, "tag=env%3Ddev": 0,
		"vault=" + url.QueryEscape("/subscriptions/"+s.sub()+"/resourceGroups/rg-vault/providers/Microsoft.DataProtection/backupVaults/v1"): 1,
	} {
		if n := b.getOK("/instances?" + q).Find("#instances tbody tr").Length(); n != want {
			t.Errorf("/instances?%s lists %d rows, want %d", q, n, want)
		}
	}
	cols := b.getOK("/instances?cols=1&col=tags&col=status")
	if h := cols.text("#instances thead"); h != "Backup instance Protection status Disk tags" || !strings.Contains(cols.text("#instances"), "env=prod") {
		t.Fatalf("chosen columns: %q / %q", h, cols.text("#instances"))
	}

	page := b.getOK(instanceURL)
	if page.text("#latest-rp") != "None yet" || page.Find("#rule option").Length() != 1 {
		t.Fatalf("instance page before a backup:\n%s", page.text("main"))
	}
	if cli := page.text("#backup-form [data-cli]"); cli != "coffer backup now --resource-group rg-vault --vault-name v1 --instance data1-bi --retention-tag Default" {
		t.Fatalf("Backup now CLI %q", cli)
	}
	backupNow(t, s, b, instanceURL)
	page = b.getOK(instanceURL)
	if page.Find("#points tbody tr").Length() != 1 || !strings.Contains(page.text("#latest-rp"), "Default") ||
		!strings.Contains(page.text("#job-summary"), "1Completed") {
		t.Fatalf("after Backup now:\n%s", page.text("main"))
	}

	// Stop needs a reason; resume brings protection back.
	stop := b.submit(page, "#stop-form", map[string]string{"reason": ""})
	if stop.resp.StatusCode != http.StatusBadRequest || !strings.Contains(stop.text("#action-error"), "reason") {
		t.Fatalf("stop without a reason: %d", stop.resp.StatusCode)
	}
	stop = b.submit(page, "#stop-form", map[string]string{"change": "stopProtection", "reason": "Testing", "comments": "lab rebuild"})
	if stop.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("stop: %d\n%s", stop.resp.StatusCode, stop.text("main"))
	}
	page = b.getOK(instanceURL)
	if page.text("#protection-state") != "Protection stopped" || page.Find("#resume-form").Length() != 1 {
		t.Fatalf("after stop: %q", page.text("#protection-state"))
	}
	// The reason is kept with the instance and shown, with who gave it.
	if c := page.text("#last-change"); !strings.Contains(c, "Protection stopped by") || !strings.Contains(c, "Reason: Testing") ||
		!strings.Contains(c, "lab rebuild") {
		t.Fatalf("last protection change: %q", c)
	}
	b.submit(page, "#resume-form", nil)
	if page = b.getOK(instanceURL); page.text("#protection-state") != "Protected" {
		t.Fatalf("after resume: %q", page.text("#protection-state"))
	}

	// Deletion needs the typed name.
	del := b.submit(page, "#delete-form", map[string]string{"confirm": "data1", "reason": "Testing"})
	if del.resp.StatusCode != http.StatusBadRequest || !strings.Contains(del.text("#action-error"), "data1-bi") {
		t.Fatalf("delete with the wrong name: %d", del.resp.StatusCode)
	}
	if _, err := s.admin.GetInstance(ctx, "rg-vault", "v1", "data1-bi"); err != nil {
		t.Fatalf("the instance was deleted without its name typed: %v", err)
	}
	del = b.submit(page, "#delete-form", map[string]string{"confirm": "data1-bi", "reason": "Decommissioned", "comments": "disk retired"})
	if del.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d\n%s", del.resp.StatusCode, del.text("main"))
	}
	// The deletion's job keeps its reason and who asked.
	jobPage := b.getOK(del.resp.Header.Get("Location"))
	var notes []string
	jobPage.Find("dd.job-note").Each(func(_ int, dd *goquery.Selection) {
		notes = append(notes, strings.TrimSpace(dd.Prev().Text())+": "+strings.TrimSpace(dd.Text()))
	})
	if got, want := strings.Join(notes, "; "), "Requested by: coffer-admin; Reason: Decommissioned; Comments: disk retired"; got != want {
		t.Fatalf("deletion job's details: %q, want %q", got, want)
	}
}

// TestInstanceReader: a Backup Reader sees the instance but cannot press
// Backup now, stop or delete, and a forced request is refused.
func TestInstanceReader(t *testing.T) {
	s := newSite(t)
	instanceURL, _ := protected(t, s, "data1")
	r := s.signedInAs("reader", rbac.RoleReader, "/subscriptions/"+s.sub())
	page := r.getOK(instanceURL)
	for _, sel := range []string{"#backup-form", "#stop-form", "#delete-form"} {
		if page.Find(sel+` button[type="submit"]:not([disabled])`).Length() != 0 {
			t.Errorf("%s has an enabled button for a Reader", sel)
		}
	}
	if !strings.Contains(page.text("#backup-form .denied"), "backup/action") {
		t.Errorf("Backup now's reason: %q", page.text("#backup-form .denied"))
	}
	for _, action := range []string{"/backup", "/protection", "/delete"} {
		forced := r.post(instanceURL+action, url.Values{"csrf": {page.csrf()}, "rule": {"Default"}, "change": {"stopProtection"},
			"reason": {"Testing"}, "confirm": {"data1-bi"}})
		if forced.resp.StatusCode != http.StatusForbidden {
			t.Errorf("forced POST %s: %d", action, forced.resp.StatusCode)
		}
	}
	if bi, err := s.admin.GetInstance(context.Background(), "rg-vault", "v1", "data1-bi"); err != nil || bi.Properties.CurrentProtectionState != "ProtectionConfigured" {
		t.Fatalf("the Reader changed the instance: %v %+v", err, bi.Properties)
	}
}
