package portal_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
)

// TestPagesRender opens every main page after a real backup, as the admin,
// and checks what each shows.
func TestPagesRender(t *testing.T) {
	s := newSite(t)
	s.protectedDisk("rg1", "disk1", "vault1")
	s.coffer("disk", "create", "-g", "rg1", "-n", "loose", "--size-gb", "2")
	b := s.signedIn()

	home := b.getOK("/")
	cards := map[string]string{}
	home.Find("#protection .card").Each(func(_ int, c *goquery.Selection) {
		cards[strings.TrimSpace(c.Find("h3").Text())] = strings.TrimSpace(c.Find(".big").Text())
	})
	if cards["Protected"] != "1" || cards["Not protected"] != "1" || cards["Protection error"] != "0" {
		t.Errorf("overview protection cards: %v", cards)
	}
	if got := home.text("#protectable"); !strings.Contains(got, "loose") || strings.Contains(got, "disk1") {
		t.Errorf("protectable resources: %q", got)
	}
	// The validation and the backup.
	if got := home.text("#jobs24 li:first-child"); got != "Completed 2" {
		t.Errorf("jobs of the last 24 hours: %q", got)
	}
	if home.Find("svg.chart rect").Length() == 0 {
		t.Errorf("no chart bars on the overview")
	}
	if got := home.text("#storage"); !strings.Contains(got, "estimated full") {
		t.Errorf("storage card: %q", got)
	}

	if got := b.getOK("/protectable").text("#protectable-table tbody"); !strings.Contains(got, "loose") || strings.Contains(got, "disk1") {
		t.Errorf("protectable resources page: %q", got)
	}

	vaults := b.getOK("/vaults")
	href, ok := vaults.Find(`#vaults a`).First().Attr("href")
	if !ok {
		t.Fatal("no vault listed")
	}
	vault := b.getOK(href)
	if got := vault.text("#instances + .table-wrap"); !strings.Contains(got, "disk1") {
		t.Errorf("vault's instances: %q", got)
	}
	if vault.Find("details.json pre code").Length() != 1 || !strings.Contains(vault.text("details.json"), `"type": "Microsoft.DataProtection/backupVaults"`) {
		t.Errorf("vault JSON view: %q", vault.text("details.json"))
	}

	jobs := b.getOK("/jobs")
	if got := jobs.text(".strip a:first-child"); got != "2 Completed" {
		t.Errorf("status strip: %q", got)
	}
	jhref, _ := jobs.Find(`#jobs-table a:contains("Backup")`).First().Attr("href")
	job := b.getOK(jhref)
	if got := job.text("#job-status"); got != "Completed" {
		t.Errorf("job status %q", got)
	}
	if got := job.text("#job-bytes"); got == "0 B" {
		t.Errorf("job bytes %q", got)
	}

	disks := b.getOK("/disks")
	dhref, _ := disks.Find(`#disks-table a`).First().Attr("href")
	disk := b.getOK(dhref)
	if disk.Find("#grant-form").Length() != 1 {
		t.Error("no grant form on the disk page")
	}
	if got := disk.text("#snapshots + .table-wrap"); strings.Contains(got, "No snapshots") {
		t.Errorf("the backed-up disk lists no snapshot: %q", got)
	}
	for _, p := range []string{"/disks/new", "/disks/upload", "/vaults/new"} {
		if pg := b.get(p); pg.resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", p, pg.resp.StatusCode)
		}
	}
}
