package portal_test

// The headless-Chromium harness: one browser per test binary, started by
// the first test that needs it (with a generous start-up timeout: it can
// take 20 s on two busy cores) and stopped by TestMain. Each test gets its
// own tab, starting without cookies. Tests wait on elements,
// never sleep. Without chromium the browser tests skip, or fail under
// COFFER_TEST_REQUIRE=all (internal/testenv).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"coffer/internal/testenv"
)

// browserStartTimeout bounds the browser's start-up.
const browserStartTimeout = 60 * time.Second

// browserTestTimeout bounds one browser test's steps.
const browserTestTimeout = 3 * time.Minute

// screenshotDirEnv names a directory screenshots are also saved to (for a
// person to look at), besides the test's temp dir.
const screenshotDirEnv = "COFFER_PORTAL_SCREENSHOTS"

var chrome struct {
	once    sync.Once
	ctx     context.Context // the browser's context
	stop    func()
	dataDir string
	err     error
	missing string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if chrome.stop != nil {
		chrome.stop()
	}
	if chrome.dataDir != "" {
		os.RemoveAll(chrome.dataDir)
	}
	os.Exit(code)
}

// chromiumPath finds Debian's chromium.
func chromiumPath() (string, bool) {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

func startChrome() {
	path, ok := chromiumPath()
	if !ok {
		chrome.missing = "chromium is not on PATH"
		return
	}
	dir, err := os.MkdirTemp("", "coffer-chromium-")
	if err != nil {
		chrome.err = err
		return
	}
	chrome.dataDir = dir
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1280, 800),
		chromedp.WSURLReadTimeout(browserStartTimeout),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	// Run with no actions starts the browser (WSURLReadTimeout bounds it).
	if err := chromedp.Run(bctx); err != nil {
		cancelBrowser()
		cancelAlloc()
		chrome.err = fmt.Errorf("start chromium: %w", err)
		return
	}
	chrome.ctx = bctx
	chrome.stop = func() { cancelBrowser(); cancelAlloc() }
}

// tab is a browser tab, signed out, for one test.
type tab struct {
	t    *testing.T
	ctx  context.Context
	site *site
}

// newTab returns a fresh tab on site; it skips (or fails) the test
// without chromium.
func newTab(t *testing.T, s *site) *tab {
	t.Helper()
	chrome.once.Do(startChrome)
	if chrome.missing != "" {
		testenv.Missing(t, "chromium", chrome.missing)
	}
	if chrome.err != nil {
		t.Fatal(chrome.err)
	}
	// A new tab in the browser's one context (headless Chromium opens no
	// tab in a new browser context without a window): the tests run one
	// after another and each starts with no cookies.
	ctx, cancel := chromedp.NewContext(chrome.ctx)
	ctx, cancelT := context.WithTimeout(ctx, browserTestTimeout)
	t.Cleanup(func() { cancelT(); cancel() })
	tb := &tab{t: t, ctx: ctx, site: s}
	tb.run(network.ClearBrowserCookies(), chromedp.EmulateViewport(1280, 800))
	return tb
}

// run runs actions, failing the test on error.
func (tb *tab) run(actions ...chromedp.Action) {
	tb.t.Helper()
	if err := chromedp.Run(tb.ctx, actions...); err != nil {
		// Show where the browser was, to tell a failing step from a slow one.
		var loc, html string
		ctx, cancel := context.WithTimeout(context.WithoutCancel(tb.ctx), 10*time.Second)
		defer cancel()
		chromedp.Run(ctx, chromedp.Location(&loc), chromedp.OuterHTML("main", &html, chromedp.ByQuery, chromedp.AtLeast(0)))
		if len(html) > 3000 {
			html = html[:3000] + "…"
		}
		tb.t.Fatalf("%v\nat %s:\n%s", err, loc, html)
	}
}

// open navigates to a portal path.
func (tb *tab) open(path string) {
	tb.t.Helper()
	tb.run(chromedp.Navigate(tb.site.base + path))
}

// signIn signs in through the sign-in form and waits for the overview.
func (tb *tab) signIn(clientID, secret string) {
	tb.t.Helper()
	tb.open("/signin")
	tb.run(
		chromedp.WaitVisible(`#client_id`, chromedp.ByQuery),
		chromedp.SendKeys(`#client_id`, clientID, chromedp.ByQuery),
		chromedp.SendKeys(`#client_secret`, secret, chromedp.ByQuery),
		chromedp.Submit(`#client_secret`, chromedp.ByQuery),
		chromedp.WaitVisible(`nav.side`, chromedp.ByQuery),
	)
}

// text returns the text of the first element matching sel, once visible.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	var s string
	tb.run(chromedp.WaitVisible(sel, chromedp.ByQuery), chromedp.Text(sel, &s, chromedp.ByQuery))
	return strings.Join(strings.Fields(s), " ")
}

// splitCaptions is the script that returns the visible form labels whose
// caption is split over several rows: a label is a flex column, so each of
// its direct children before the control (text, <code>…) is a row of its
// own unless one element wraps them.
const splitCaptions = `(() => {
  const split = [];
  for (const l of document.querySelectorAll('label')) {
    if (!l.getClientRects().length) continue;
    const tops = new Set();
    for (const n of l.childNodes) {
      let r;
      if (n.nodeType === Node.TEXT_NODE) {
        if (!n.textContent.trim()) continue;
        const rg = document.createRange();
        rg.selectNodeContents(n);
        r = rg.getBoundingClientRect();
      } else if (n.nodeType === Node.ELEMENT_NODE && !n.matches('input, select, textarea, progress')) {
        r = n.getBoundingClientRect();
      } else {
        continue;
      }
      tops.add(Math.round(r.top));
    }
    if (tops.size > 1) split.push(l.textContent.replace(/\s+/g, ' ').trim());
  }
  return split;
})()`

// screenshot saves the viewport (1280×800) as name.png under the test's
// temp dir and, when COFFER_PORTAL_SCREENSHOTS names a directory, there,
// with the page at a phone's width (390×844) as name-narrow.png beside it.
// It fails the test when a form label's caption is split over several
// rows (splitCaptions).
func (tb *tab) screenshot(name string) string {
	tb.t.Helper()
	var split []string
	tb.run(chromedp.Evaluate(splitCaptions, &split))
	if len(split) > 0 {
		tb.t.Errorf("%s: form labels whose caption is split over several rows: %q", name, split)
	}
	var png []byte
	tb.run(chromedp.CaptureScreenshot(&png))
	path := filepath.Join(tb.t.TempDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	if dir := os.Getenv(screenshotDirEnv); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			tb.t.Fatal(err)
		}
		var narrow []byte
		tb.run(chromedp.EmulateViewport(390, 844), chromedp.CaptureScreenshot(&narrow), chromedp.EmulateViewport(1280, 800))
		if err := os.WriteFile(filepath.Join(dir, name+"-narrow.png"), narrow, 0o644); err != nil {
			tb.t.Fatal(err)
		}
	}
	return path
}
