package portal_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserConfigureProtection configures protection in headless
// Chromium: validation fails on the vault identity's missing roles, "Add
// missing roles" assigns them and validation succeeds, and "Configure
// protection" lists the new backup instance.
func TestBrowserConfigureProtection(t *testing.T) {
	s := newSite(t)
	disks, snapRG, _ := protectSetup(t, s, "data1", "data2")
	tb := newTab(t, s)
	tb.signIn(s.env.Admin.ClientID, s.env.Admin.ClientSecret)
	tb.open("/protect")
	tb.run(
		chromedp.WaitVisible(`#protect-form`, chromedp.ByQuery),
		chromedp.Click(`#disk-data1`, chromedp.ByQuery),
		chromedp.SetValue(`#snapshot-group`, snapRG, chromedp.ByQuery),
	)
	tb.screenshot("protect")
	tb.run(chromedp.Click(`#validate`, chromedp.ByQuery), chromedp.WaitVisible(`#missing-roles`, chromedp.ByQuery))
	if got := tb.text(`tr[data-disk="data1"] .readiness`); !strings.Contains(got, "Role assignment not done") || !strings.Contains(got, "Disk Backup Reader on "+disks[0]) {
		t.Fatalf("readiness of data1: %q", got)
	}
	tb.screenshot("protect-missing-roles")
	tb.run(
		chromedp.SetValue(`#level`, "ResourceGroup", chromedp.ByQuery),
		chromedp.Click(`#add-roles`, chromedp.ByQuery),
		chromedp.WaitVisible(`#configure`, chromedp.ByQuery),
	)
	if got := tb.text(`tr[data-disk="data1"] .readiness`); got != "Success" {
		t.Fatalf("readiness after Add missing roles: %q", got)
	}
	tb.screenshot("protect-ready")
	tb.run(chromedp.Click(`#configure`, chromedp.ByQuery), chromedp.WaitVisible(`#instances`, chromedp.ByQuery))
	if got := tb.text(`#instances`); !strings.Contains(got, "data1") || !strings.Contains(got, "Protected") {
		t.Fatalf("instances: %q", got)
	}
	tb.screenshot("instances")
	if bis, err := s.admin.ListInstances(context.Background(), "rg-vault", "v1"); err != nil || len(bis) != 1 {
		t.Fatalf("the API lists %d instances (%v), want 1", len(bis), err)
	}
}
