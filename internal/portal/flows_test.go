package portal_test

import (
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
