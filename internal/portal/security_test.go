package portal_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"coffer/internal/clock"
	"coffer/internal/e2e"
	"coffer/internal/rbac"
	"coffer/internal/store"
)

func TestSignInAndOut(t *testing.T) {
	s := newSite(t)
	b := s.browser()

	// Signed out, a page sends the browser to the sign-in page.
	p := b.get("/vaults")
	if p.resp.StatusCode != http.StatusSeeOther || p.resp.Header.Get("Location") != "/signin?next=%2Fvaults" {
		t.Fatalf("signed-out GET /vaults: %d %q, want 303 to /signin?next=%%2Fvaults", p.resp.StatusCode, p.resp.Header.Get("Location"))
	}

	// A wrong secret is refused with the form shown again.
	p = b.trySignIn(s.env.Admin.ClientID, "wrong")
	if p.resp.StatusCode != http.StatusUnauthorized || !strings.Contains(p.text(".error"), "not valid") {
		t.Fatalf("wrong secret: %d %q", p.resp.StatusCode, p.text(".error"))
	}

	// The admin credentials sign in; the session cookie is HttpOnly and
	// SameSite, and the session gets a new ID at sign-in: an ID planted
	// before (session fixation) is not the one signed in.
	const before = "planted-by-another-party"
	u, _ := url.Parse(s.base)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "coffer_session", Value: before}})
	form := b.getOK("/signin?next=/jobs")
	p = b.submit(form, `form[action="/signin"]`, map[string]string{"client_id": s.env.Admin.ClientID, "client_secret": s.env.Admin.ClientSecret})
	if p.resp.StatusCode != http.StatusSeeOther || p.resp.Header.Get("Location") != "/jobs" {
		t.Fatalf("sign-in: %d to %q, want 303 to /jobs", p.resp.StatusCode, p.resp.Header.Get("Location"))
	}
	var set *http.Cookie
	for _, c := range p.resp.Cookies() {
		if c.Name == "coffer_session" && c.Value != "" {
			set = c
		}
	}
	if set == nil || !set.HttpOnly || set.SameSite != http.SameSiteLaxMode || set.Path != "/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/", set)
	}
	if set.Value == before {
		t.Fatal("the session ID did not change at sign-in")
	}
	home := b.getOK("/")
	if got := home.text("header .user"); !strings.Contains(got, "coffer-admin") {
		t.Fatalf("signed in as %q, want coffer-admin", got)
	}

	// Sign-out ends the session: the old cookie no longer signs in.
	out := b.submit(home, `form[action="/signout"]`, nil)
	if out.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", out.resp.StatusCode)
	}
	if p := b.get("/"); p.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after sign-out GET /: %d, want 303 to sign-in", p.resp.StatusCode)
	}
	replay := s.browser()
	replay.c.Jar.SetCookies(u, []*http.Cookie{{Name: "coffer_session", Value: set.Value}})
	if p := replay.get("/"); p.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the signed-out session's cookie still works: %d", p.resp.StatusCode)
	}

	// next cannot send the browser off the site.
	form = b.getOK("/signin?next=//evil.example/")
	p = b.submit(form, `form[action="/signin"]`, map[string]string{"client_id": s.env.Admin.ClientID, "client_secret": s.env.Admin.ClientSecret})
	if loc := p.resp.Header.Get("Location"); loc != "/" {
		t.Fatalf("sign-in with next=//evil.example/ redirects to %q, want /", loc)
	}
}

func cookie(b *browser, s *site, name string) string {
	u, _ := url.Parse(s.base)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func TestSignInRateLimited(t *testing.T) {
	s := newSite(t)
	b := s.browser()
	for i := 0; i < 5; i++ {
		if p := b.trySignIn(s.env.Admin.ClientID, "wrong"); p.resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d, want 401", i+1, p.resp.StatusCode)
		}
	}
	// Now even the right secret is refused until the window passes.
	p := b.trySignIn(s.env.Admin.ClientID, s.env.Admin.ClientSecret)
	if p.resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(p.text(".error"), "Too many failed sign-ins") {
		t.Fatalf("after 5 failures: %d %q, want 429", p.resp.StatusCode, p.text(".error"))
	}
}

func TestSecurityHeaders(t *testing.T) {
	s := newSite(t)
	b := s.signedIn()
	for _, path := range []string{"/", "/vaults", "/jobs", "/signin", "/vaults/" + s.sub() + "/nogroup/novault"} {
		p := b.get(path)
		h := p.resp.Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP allows inline script: %q", path, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") == "" {
			t.Errorf("%s: headers %v", path, h)
		}
		if p.resp.StatusCode == http.StatusOK && h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", path, h.Get("Cache-Control"))
		}
		// No inline script or style anywhere: every <script> has a src.
		p.Find("script").Each(func(_ int, sc *goquery.Selection) {
			if _, ok := sc.Attr("src"); !ok || strings.TrimSpace(sc.Text()) != "" {
				t.Errorf("%s: inline script %q", path, sc.Text())
			}
		})
		if p.Find("[style], style").Length() > 0 {
			t.Errorf("%s: inline style", path)
		}
	}
	// Assets have content-hash names and are cached for ever.
	home := b.getOK("/")
	css, _ := home.Find(`link[rel="stylesheet"]`).Attr("href")
	if !regexp.MustCompile(`^/assets/portal\.[0-9a-f]{12}\.css$`).MatchString(css) {
		t.Fatalf("stylesheet URL %q has no content hash", css)
	}
	resp, err := b.c.Get(s.base + css)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
		t.Fatalf("GET %s: %d %v", css, resp.StatusCode, resp.Header)
	}
}

// TestEveryPostNeedsCSRF walks every state-changing route of the portal and
// posts to it without a token, with a wrong one and with another
// session's: each is refused with 403 before its handler runs.
func TestEveryPostNeedsCSRF(t *testing.T) {
	s := newSite(t)
	s.group("rg1")
	b := s.signedIn()
	other := s.signedIn()
	otherToken := other.getOK("/vaults/new").csrf()
	wild := regexp.MustCompile(`\{[^}]+\}`)
	n := 0
	for _, r := range s.env.Server.Portal.Routes() {
		method, path, _ := strings.Cut(r, " ")
		if method == http.MethodGet || method == http.MethodHead {
			continue
		}
		path = wild.ReplaceAllString(strings.TrimSuffix(path, "{$}"), "x")
		n++
		form := url.Values{"name": {"v-csrf"}, "group": {s.sub() + "/rg1"}, "location": {"local"}}
		for _, tok := range []string{"", "forged", otherToken} {
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			if tok != "" {
				f.Set("csrf", tok)
			}
			p := b.post(path, f)
			if p.resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s with token %q: status %d, want 403", method, path, tok, p.resp.StatusCode)
			}
		}
	}
	if n < 3 {
		t.Fatalf("walked %d state-changing routes, want at least 3", n)
	}
	// Nothing was created.
	vs, err := s.admin.ListVaults(context.Background(), "")
	if err != nil || len(vs) != 0 {
		t.Fatalf("vaults after refused posts: %v %v", vs, err)
	}
}

// TestReaderSeesDisabledCreate: a Reader sees the create commands disabled
// with the missing action and scope, and a forced request is refused as the
// API refuses it.
func TestReaderSeesDisabledCreate(t *testing.T) {
	s := newSite(t)
	s.group("rg1")
	sub := "/subscriptions/" + s.sub()
	b := s.signedInAs("reader", rbac.RoleReader, sub)

	// The storage figures are for tenant administrators.
	if got := b.getOK("/").text("#storage"); !strings.Contains(got, "Coffer.Admin/stats/read, which only tenant administrators hold") {
		t.Fatalf("a Reader's storage card: %q", got)
	}
	list := b.getOK("/vaults")
	if list.Find(`a.btn[href="/vaults/new"]`).Length() != 0 {
		t.Fatal("a Reader gets a live Create vault link")
	}
	if got := list.text("p.denied"); !strings.Contains(got, "Microsoft.DataProtection/backupVaults/write") || !strings.Contains(got, sub) {
		t.Fatalf("reason shown %q: want the missing action and scope", got)
	}
	form := b.getOK("/vaults/new")
	btn := form.Find(`#vault-form button[type="submit"]`)
	if _, disabled := btn.Attr("disabled"); !disabled {
		t.Fatal("a Reader's Create button is not disabled")
	}
	if title, _ := btn.Attr("title"); !strings.Contains(title, "backupVaults/write") {
		t.Fatalf("disabled button's reason %q", title)
	}
	// Forced, with a valid CSRF token: 403 with the API's message.
	p := b.post("/vaults", url.Values{"csrf": {form.csrf()}, "name": {"forced"}, "group": {s.sub() + "/rg1"}, "location": {"local"}})
	if p.resp.StatusCode != http.StatusForbidden || !strings.Contains(p.text("main"), "does not have authorization to perform action 'Microsoft.DataProtection/backupVaults/write'") {
		t.Fatalf("forced create: %d %q", p.resp.StatusCode, p.text("main"))
	}
	if vs, err := s.admin.ListVaults(context.Background(), ""); err != nil || len(vs) != 0 {
		t.Fatalf("vaults after the forced create: %v %v", vs, err)
	}
}

// TestReaderCannotChangeDisks: a Reader sees the disk's grant and revoke
// buttons disabled with the reason, and forced requests are refused as the
// API refuses them, leaving the grants as they were.
func TestReaderCannotChangeDisks(t *testing.T) {
	s := newSite(t)
	s.coffer("group", "create", "-n", "rg1", "-l", "local")
	s.coffer("disk", "create", "-g", "rg1", "-n", "d1", "--size-gb", "1")
	s.coffer("disk", "grant-access", "-g", "rg1", "-n", "d1")
	sub := "/subscriptions/" + s.sub()
	b := s.signedInAs("reader", rbac.RoleReader, sub)
	disk := b.getOK("/disks/" + s.sub() + "/rg1/d1")
	grant := disk.Find(`#grant-form button[type="submit"]`)
	if _, ok := grant.Attr("disabled"); !ok {
		t.Fatal("a Reader's Grant access button is enabled")
	}
	if got := disk.text("#grant-form small.denied"); !strings.Contains(got, "Microsoft.Compute/disks/beginGetAccess/action") {
		t.Fatalf("grant reason %q", got)
	}
	revoke := disk.Find(`#grants form button`)
	if revoke.Length() != 1 {
		t.Fatalf("%d revoke buttons, want 1", revoke.Length())
	}
	if _, ok := revoke.Attr("disabled"); !ok {
		t.Fatal("a Reader's Revoke button is enabled")
	}
	if title, _ := revoke.Attr("title"); !strings.Contains(title, "endGetAccess") {
		t.Fatalf("revoke reason %q", title)
	}
	// A disabled one-button form carries no CSRF token; force both with
	// the page's token.
	tok := disk.csrf()
	for path, form := range map[string]url.Values{
		"/disks/" + s.sub() + "/rg1/d1/grant":  {"csrf": {tok}, "access": {"write"}, "duration": {"60"}},
		"/disks/" + s.sub() + "/rg1/d1/revoke": {"csrf": {tok}},
		"/disks/" + s.sub() + "/rg1/d1/resize": {"csrf": {tok}, "size": {"2"}},
		"/disks/" + s.sub() + "/rg1/d1/delete": {"csrf": {tok}, "confirm": {"d1"}},
		"/disks":                               {"csrf": {tok}, "name": {"d2"}, "group": {s.sub() + "/rg1"}, "size": {"1"}, "location": {"local"}},
	} {
		p := b.post(path, form)
		if p.resp.StatusCode != http.StatusForbidden || !strings.Contains(p.text("main"), "AuthorizationFailed") {
			t.Errorf("forced POST %s: %d %q", path, p.resp.StatusCode, p.text("main"))
		}
	}
	d, err := s.admin.GetDisk(context.Background(), "rg1", "d1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Properties.DiskState != "ActiveSAS" || d.Properties.DiskSizeGB != 1 {
		t.Fatalf("disk state after the refused revoke and resize: %s, %v GiB, want ActiveSAS, 1", d.Properties.DiskState, d.Properties.DiskSizeGB)
	}
	if _, err := s.admin.GetDisk(context.Background(), "rg1", "d2"); err == nil {
		t.Fatal("the refused create made disk d2")
	}
}

// TestSessionCookieUnderTLS: under --tls the session cookie is Secure and
// carries the __Host- prefix (browsers then refuse it over plain HTTP or
// for another path or domain).
func TestSessionCookieUnderTLS(t *testing.T) {
	env := e2e.Start(t, e2e.Options{TLS: true})
	s := &site{t: t, env: env, base: env.Listen, admin: env.Client(env.Admin.Token)}
	b := s.browser()
	b.c.Transport = env.HTTP.Transport
	only := func(p *page, name string) *http.Cookie {
		t.Helper()
		var c *http.Cookie
		for _, k := range p.resp.Cookies() {
			if k.Value != "" {
				c = k
			}
		}
		if c == nil || c.Name != name || !c.Secure || !c.HttpOnly || c.Path != "/" || c.Domain != "" {
			t.Fatalf("cookie under TLS: %+v, want %s, Secure, HttpOnly, Path=/, no Domain", c, name)
		}
		return c
	}
	form := b.getOK("/signin")
	if c := only(form, "__Host-coffer_signin"); c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("sign-in form's cookie %+v: want SameSite=Strict", c)
	}
	// A valid token in a cookie without the __Host- prefix (one a sibling
	// host could plant) does not count under TLS.
	tok := form.csrf()
	rq, err := http.NewRequest("POST", s.base+"/signin", strings.NewReader(url.Values{
		"csrf": {tok}, "client_id": {env.Admin.ClientID}, "client_secret": {env.Admin.ClientSecret}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	rq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rq.AddCookie(&http.Cookie{Name: "coffer_signin", Value: tok})
	resp, err := env.HTTP.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-in under TLS with the token in an unprefixed cookie: %d, want 403", resp.StatusCode)
	}
	p := b.submit(form, `form[action="/signin"]`, map[string]string{"client_id": env.Admin.ClientID, "client_secret": env.Admin.ClientSecret})
	if p.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in under TLS: %d", p.resp.StatusCode)
	}
	sess := only(p, "__Host-coffer_session")
	b.getOK("/vaults")
	// The session's own ID in an unprefixed cookie (one a sibling host
	// could plant: session fixation) names no session under TLS.
	rq, err = http.NewRequest("GET", s.base+"/vaults", nil)
	if err != nil {
		t.Fatal(err)
	}
	rq.AddCookie(&http.Cookie{Name: "coffer_session", Value: sess.Value})
	c := *env.HTTP
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = c.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
		t.Fatalf("a page under TLS with the session in an unprefixed cookie: %d to %q, want 303 to /signin", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// sessionRows counts the portal's session rows in s's metadata store.
func sessionRows(t *testing.T, s *site) int {
	t.Helper()
	n := 0
	err := s.env.Server.Store().View(context.Background(), func(tx store.Tx) error {
		objs, err := tx.List(context.Background(), store.Query{Kind: "portal.session"})
		n = len(objs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSigninPageWritesNothing: visits to the sign-in page without a
// cookie, however many, write no session row (each used to write one
// that lived 30 minutes, so a flood of visits grew the table); the
// session's row is written at sign-in.
func TestSigninPageWritesNothing(t *testing.T) {
	s := newSite(t)
	for i := 0; i < 20; i++ {
		s.browser().getOK("/signin")
	}
	if n := sessionRows(t, s); n != 0 {
		t.Fatalf("%d session rows after 20 anonymous visits to /signin, want 0", n)
	}
	s.signedIn()
	if n := sessionRows(t, s); n != 1 {
		t.Fatalf("%d session rows after a sign-in, want 1", n)
	}
}

// TestSigninCSRF: a sign-in POST is refused (403), signing no one in,
// unless it carries the token of a sign-in form this installation served
// in the last 30 minutes, equal to its cookie's: not without a token, not
// without the cookie, not with a token altered or issued by another
// installation, not after 30 minutes.
func TestSigninCSRF(t *testing.T) {
	clk := clock.NewFake(time.Now())
	s := &site{t: t}
	s.env = e2e.Start(t, e2e.Options{Clock: clk})
	s.base, s.admin = s.env.Listen, s.env.Client(s.env.Admin.Token)
	other := newSite(t)
	creds := url.Values{"client_id": {s.env.Admin.ClientID}, "client_secret": {s.env.Admin.ClientSecret}}
	u, _ := url.Parse(s.base)
	refused := func(what string, b *browser, tok string) {
		t.Helper()
		f := url.Values{}
		for k, v := range creds {
			f[k] = v
		}
		if tok != "" {
			f.Set("csrf", tok)
		}
		if p := b.post("/signin", f); p.resp.StatusCode != http.StatusForbidden {
			t.Errorf("sign-in %s: status %d, want 403", what, p.resp.StatusCode)
		}
		if c := cookie(b, s, "coffer_session"); c != "" {
			t.Errorf("sign-in %s set a session cookie", what)
		}
	}

	b := s.browser()
	tok := b.getOK("/signin").csrf()
	if tok == "" || cookie(b, s, "coffer_signin") != tok {
		t.Fatalf("the sign-in form's token %q is not its cookie's %q", tok, cookie(b, s, "coffer_signin"))
	}
	refused("without a token", b, "")
	refused("with the token but not the cookie", s.browser(), tok)

	altered := []byte(tok)
	altered[len(altered)/2] ^= 1
	forged := s.browser()
	forged.c.Jar.SetCookies(u, []*http.Cookie{{Name: "coffer_signin", Value: string(altered)}})
	refused("with an altered token in form and cookie", forged, string(altered))

	elsewhere := other.browser()
	foreign := elsewhere.getOK("/signin").csrf()
	stranger := s.browser()
	stranger.c.Jar.SetCookies(u, []*http.Cookie{{Name: "coffer_signin", Value: foreign}})
	refused("with another installation's token", stranger, foreign)

	clk.Advance(signinTokenTTL)
	refused("after 30 minutes", b, tok)
	if n := sessionRows(t, s); n != 0 {
		t.Fatalf("%d session rows after refused sign-ins, want 0", n)
	}

	// A form served 29 minutes ago signs in.
	late := s.browser()
	form := late.getOK("/signin")
	clk.Advance(signinTokenTTL - time.Minute)
	p := late.submit(form, `form[action="/signin"]`, map[string]string{"client_id": s.env.Admin.ClientID, "client_secret": s.env.Admin.ClientSecret})
	if p.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in with a 29-minute-old form: %d, want 303", p.resp.StatusCode)
	}
	late.getOK("/vaults")
}

// signinTokenTTL is how long a sign-in form may be posted.
const signinTokenTTL = 30 * time.Minute

// TestSessionExpiry: a session ends after 30 minutes without a request,
// and 12 hours after sign-in however busy.
func TestSessionExpiry(t *testing.T) {
	clk := clock.NewFake(time.Now())
	env := e2e.Start(t, e2e.Options{Clock: clk})
	s := &site{t: t, env: env, base: env.Listen, admin: env.Client(env.Admin.Token)}
	signedOut := func(b *browser) bool {
		p := b.get("/vaults")
		return p.resp.StatusCode == http.StatusSeeOther && strings.HasPrefix(p.resp.Header.Get("Location"), "/signin")
	}

	idle := s.signedIn()
	clk.Advance(29 * time.Minute)
	if signedOut(idle) {
		t.Fatal("signed out after 29 idle minutes")
	}
	clk.Advance(30 * time.Minute)
	if !signedOut(idle) {
		t.Fatal("still signed in after 30 idle minutes")
	}

	busy := s.signedIn()
	for i := 0; i < 24; i++ { // a request every 29 minutes for 11 h 36 min
		clk.Advance(29 * time.Minute)
		if signedOut(busy) {
			t.Fatalf("signed out after %d busy half-hours", i+1)
		}
	}
	clk.Advance(25 * time.Minute)
	if !signedOut(busy) {
		t.Fatal("still signed in 12 hours after sign-in")
	}
}
