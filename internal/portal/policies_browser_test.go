package portal_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserPolicyWizard creates a policy through the wizard in headless
// Chromium: the clear error of a retention over the cap at its field,
// "Add retention rule", the next ten backup times on Review, Create.
func TestBrowserPolicyWizard(t *testing.T) {
	s := newSite(t)
	s.group("rg-vault")
	if _, err := s.admin.CreateVault(context.Background(), "rg-vault", "v1", "local", ""); err != nil {
		t.Fatal(err)
	}
	tb := newTab(t, s)
	tb.signIn(s.env.Admin.ClientID, s.env.Admin.ClientSecret)
	tb.open("/policies/new")
	tb.run(
		chromedp.WaitVisible(`#tab-basics.on`, chromedp.ByQuery),
		chromedp.SendKeys(`#name`, "every4h", chromedp.ByQuery),
	)
	tb.screenshot("policy-basics")
	tb.run(chromedp.Click(`#next`, chromedp.ByQuery), chromedp.WaitVisible(`#rule-default`, chromedp.ByQuery))

	tb.run(
		chromedp.SetValue(`#retention`, "100", chromedp.ByQuery),
		chromedp.Click(`#next`, chromedp.ByQuery),
		chromedp.WaitVisible(`#rule-default .field-error`, chromedp.ByQuery),
	)
	if got := tb.text(`#rule-default .field-error`); !strings.Contains(got, "exceeds the maximum of 75 days (P75D) for backups every 4 hours (450 backups)") {
		t.Fatalf("the error for a retention over the cap: %q", got)
	}
	tb.screenshot("policy-retention-error")
	tb.run(
		chromedp.SetValue(`#retention`, "30", chromedp.ByQuery),
		chromedp.Click(`#add-weekly`, chromedp.ByQuery),
		chromedp.WaitVisible(`#rule-weekly`, chromedp.ByQuery),
	)
	tb.screenshot("policy-schedule")
	tb.run(chromedp.Click(`#next`, chromedp.ByQuery), chromedp.WaitVisible(`#next-backups`, chromedp.ByQuery))
	var n int
	tb.run(chromedp.Evaluate(`document.querySelectorAll('#next-backups li').length`, &n))
	if n != 10 {
		t.Fatalf("Review shows %d next backup times, want 10", n)
	}
	if cli := tb.text(`#policy-form [data-cli]`); !strings.HasSuffix(cli, "--name every4h --hourly 4 --time 02:00 --timezone UTC --retention 30d --weekly-retention 12w") {
		t.Fatalf("CLI equivalent %q", cli)
	}
	tb.screenshot("policy-review")
	tb.run(chromedp.Click(`#create`, chromedp.ByQuery), chromedp.WaitVisible(`#retention-rules`, chromedp.ByQuery))
	if got := tb.text(".flash"); !strings.Contains(got, "every4h created") {
		t.Fatalf("flash %q", got)
	}
	tb.screenshot("policy")
	tb.open("/policies")
	tb.run(chromedp.WaitVisible(`#policies`, chromedp.ByQuery))
	tb.screenshot("policies")
}
