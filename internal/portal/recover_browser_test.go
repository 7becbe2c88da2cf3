package portal_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"coffer/internal/client"
	"coffer/internal/e2e"
)

// TestBrowserBackupNowAndRecover presses Backup now in headless Chromium
// and watches the job complete on its self-refreshing page, then restores
// that recovery point to a new disk through Recover (Validate, Grant
// permissions, Review + restore), sees the disk listed, revokes the
// restore role, and checks through the API that the new disk's bytes are
// the source's at the backup.
func TestBrowserBackupNowAndRecover(t *testing.T) {
	s := newSite(t)
	ctx := context.Background()
	instanceURL, _ := protected(t, s, "data1")
	s.group("rg-restore")
	writeDisk(t, s, "rg-disks", "data1", bytes.Repeat([]byte("at the backup "), 8192))
	want, err := e2e.DiskSHA256(ctx, s.admin, client.Disks, "rg-disks", "data1")
	if err != nil {
		t.Fatal(err)
	}

	tb := newTab(t, s)
	tb.signIn(s.env.Admin.ClientID, s.env.Admin.ClientSecret)
	tb.open(instanceURL)
	tb.run(chromedp.WaitVisible(`#backup-form`, chromedp.ByQuery))
	tb.screenshot("instance-new")
	tb.run(
		chromedp.Click(`#backup-form button[type="submit"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#job-status`, chromedp.ByQuery),
	)
	tb.screenshot("backup-job")
	// The job's page refreshes itself until the job ends.
	tb.run(chromedp.WaitVisible(`.head .status.s-completed`, chromedp.ByQuery))
	writeDisk(t, s, "rg-disks", "data1", bytes.Repeat([]byte("after backup! "), 8192))

	tb.open(instanceURL)
	tb.run(chromedp.WaitVisible(`#points`, chromedp.ByQuery))
	tb.screenshot("instance")
	tb.run(chromedp.ScrollIntoView(`#delete-form`, chromedp.ByQuery))
	tb.screenshot("instance-delete")
	tb.run(
		chromedp.Click(`#points a[href^="/recover?"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#recover-form #points`, chromedp.ByQuery),
		chromedp.SetValue(`#target-group`, "rg-restore", chromedp.ByQuery),
		chromedp.SetValue(`#name`, "restored1", chromedp.ByQuery),
		chromedp.Click(`#validate`, chromedp.ByQuery),
		chromedp.WaitVisible(`#grant`, chromedp.ByQuery),
	)
	if got := tb.text(`#validation-error`); !strings.Contains(got, "Disk Restore Operator") {
		t.Fatalf("validation error %q", got)
	}
	tb.screenshot("recover-validate")
	tb.run(chromedp.Click(`#grant`, chromedp.ByQuery), chromedp.WaitVisible(`#validation-ok`, chromedp.ByQuery))
	tb.screenshot("recover-ready")
	tb.run(chromedp.Click(`#restore`, chromedp.ByQuery), chromedp.WaitVisible(`#restored-disk`, chromedp.ByQuery))
	tb.screenshot("recover-done")
	tb.run(chromedp.Click(`#revoke button[type="submit"]`, chromedp.ByQuery), chromedp.WaitVisible(`#no-restore-role`, chromedp.ByQuery))

	tb.open("/disks")
	tb.run(chromedp.WaitVisible(`#disks-table`, chromedp.ByQuery))
	if got := tb.text(`#disks-table`); !strings.Contains(got, "restored1") {
		t.Fatalf("the restored disk is not listed: %q", got)
	}
	got, err := e2e.DiskSHA256(ctx, s.admin, client.Disks, "rg-restore", "restored1")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("the restored disk's hash is %s, the source's at the backup %s", got, want)
	}
}
