package portal_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserSignInCreateVault signs in through the form, creates a vault,
// opens it and signs out, in headless Chromium.
func TestBrowserSignInCreateVault(t *testing.T) {
	s := newSite(t)
	s.group("rg1")
	tb := newTab(t, s)
	tb.open("/")
	tb.run(chromedp.WaitVisible(`#client_id`, chromedp.ByQuery))
	tb.screenshot("signin")
	tb.signIn(s.env.Admin.ClientID, s.env.Admin.ClientSecret)
	tb.screenshot("overview")

	tb.open("/vaults/new")
	tb.run(chromedp.WaitVisible(`#vault-form`, chromedp.ByQuery), chromedp.SendKeys(`#name`, "vault1", chromedp.ByQuery))
	if cli := tb.text(`#vault-form code[data-cli]`); cli != "coffer vault create --resource-group rg1 --name vault1 --location local" {
		t.Fatalf("CLI equivalent %q", cli)
	}
	tb.screenshot("vault-new")
	tb.run(chromedp.Submit(`#name`, chromedp.ByQuery), chromedp.WaitVisible(`#principal-id`, chromedp.ByQuery))
	if got := tb.text(".flash"); !strings.Contains(got, "vault1 created") {
		t.Fatalf("flash %q", got)
	}
	if id := tb.text(`#principal-id code`); len(id) != 36 {
		t.Fatalf("identity principal ID %q", id)
	}
	tb.screenshot("vault")
	tb.open("/vaults")
	tb.run(chromedp.WaitVisible(`#vaults`, chromedp.ByQuery))
	tb.screenshot("vaults")

	tb.run(chromedp.Click(`header form[action="/signout"] button`, chromedp.ByQuery), chromedp.WaitVisible(`#client_id`, chromedp.ByQuery))
	tb.open("/vaults")
	tb.run(chromedp.WaitVisible(`#client_id`, chromedp.ByQuery))
}

// TestBrowserMainPages opens every main page after a real backup, saves a
// screenshot of each at 1280×800 (and the overview on a narrow screen),
// and uploads an image through the upload page, watching its progress.
func TestBrowserMainPages(t *testing.T) {
	s := newSite(t)
	s.protectedDisk("rg1", "disk1", "vault1")
	s.coffer("disk", "create", "-g", "rg1", "-n", "scratch", "--size-gb", "4")
	tb := newTab(t, s)
	tb.signIn(s.env.Admin.ClientID, s.env.Admin.ClientSecret)

	shots := []struct{ name, path, wait string }{
		{"overview", "/", "#protection"},
		{"vaults", "/vaults", "#vaults"},
		{"jobs", "/jobs", "#jobs-table"},
		{"disks", "/disks", "#disks-table"},
	}
	for _, sh := range shots {
		tb.open(sh.path)
		tb.run(chromedp.WaitVisible(sh.wait, chromedp.ByQuery))
		tb.screenshot(sh.name)
	}
	tb.open("/vaults")
	tb.run(chromedp.Click(`#vaults a`, chromedp.ByQuery), chromedp.WaitVisible(`#principal-id`, chromedp.ByQuery))
	tb.screenshot("vault")
	tb.open("/jobs?operation=Backup")
	tb.run(chromedp.Click(`#jobs-table a`, chromedp.ByQuery), chromedp.WaitVisible(`#job-status`, chromedp.ByQuery))
	if got := tb.text("#job-status"); got != "Completed" {
		t.Fatalf("job status %q", got)
	}
	tb.screenshot("job")

	// Grant read access on the disk page: the NBD URL is shown once.
	tb.open("/disks")
	tb.run(chromedp.Click(`#disks-table a`, chromedp.ByQuery), chromedp.WaitVisible(`#grant-form`, chromedp.ByQuery),
		chromedp.Click(`#grant-form button[type="submit"]`, chromedp.ByQuery), chromedp.WaitVisible(`#granted`, chromedp.ByQuery))
	if got := tb.text("#granted"); !strings.Contains(got, "nbd://") {
		t.Fatalf("granted access shows %q", got)
	}
	tb.screenshot("disk")
	tb.run(chromedp.ScrollIntoView(`#resize-form`, chromedp.ByQuery))
	tb.screenshot("disk-size")
	tb.run(chromedp.ScrollIntoView(`#delete-form`, chromedp.ByQuery))
	tb.screenshot("disk-delete")

	// Upload an image with progress.
	img := filepath.Join(t.TempDir(), "image.raw")
	data := make([]byte, 9<<20+100) // three pages of 4 MiB, the last one padded
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	tb.open("/disks/upload")
	tb.run(chromedp.WaitVisible(`#upload-form`, chromedp.ByQuery),
		chromedp.SendKeys(`#name`, "uploaded", chromedp.ByQuery),
		chromedp.SetUploadFiles(`#image`, []string{img}, chromedp.ByQuery),
		chromedp.Click(`#upload-form button[type="submit"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#disk-state`, chromedp.ByQuery))
	if got := tb.text("#disk-state"); got != "Unattached" {
		t.Fatalf("uploaded disk's state %q, want Unattached (the upload finished)", got)
	}
	// The disk holds the image, padded with zeros to 512 bytes.
	want := append(data, make([]byte, 512-len(data)%512)...)
	if got := s.diskBytes("rg1", "uploaded"); !bytes.Equal(got, want) {
		t.Fatalf("the uploaded disk holds %d bytes that differ from the image's %d", len(got), len(want))
	}

	tb.open("/disks/upload")
	tb.run(chromedp.WaitVisible(`#upload-form`, chromedp.ByQuery))
	tb.screenshot("disk-upload")

	tb.run(chromedp.EmulateViewport(390, 844))
	tb.open("/")
	tb.run(chromedp.WaitVisible(`#protection`, chromedp.ByQuery))
	tb.screenshot("overview-narrow")
}
