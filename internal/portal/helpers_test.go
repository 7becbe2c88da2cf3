package portal_test

// Helpers every portal test uses (Gitea's HTMLDoc/GetCSRF pattern): a real
// server (e2e.Start), a cookie-keeping HTTP "browser" that signs in through
// the sign-in form, pages parsed with goquery, forms submitted with the
// CSRF token they carry, and principals with a chosen role.

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"coffer/internal/cli"
	"coffer/internal/client"
	"coffer/internal/e2e"
	"coffer/internal/identity"
)

// site is a running Coffer server with its portal.
type site struct {
	t     testing.TB
	env   *e2e.Env
	base  string // http://127.0.0.1:port
	admin *client.Client
}

func newSite(t *testing.T) *site { t.Helper(); return newSiteWith(t, e2e.Options{}) }

// newSiteWith is newSite on a server started with o.
func newSiteWith(t *testing.T, o e2e.Options) *site {
	t.Helper()
	env := e2e.Start(t, o)
	env.UseCLI(t) // for coffer, which runs the CLI as the admin
	return &site{t: t, env: env, base: env.Listen, admin: env.Client(env.Admin.Token)}
}

// coffer runs the coffer CLI in process against the site as the admin and
// fails the test unless it succeeds; it returns its standard output.
func (s *site) coffer(args ...string) string {
	s.t.Helper()
	out, errOut, code := s.tryCoffer(args...)
	if code != 0 {
		s.t.Fatalf("coffer %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (s *site) tryCoffer(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	code = cli.Main(context.Background(), args, &cli.Env{Stdout: &out, Stderr: &errb, Stdin: strings.NewReader("")})
	return out.String(), errb.String(), code
}

// protectedDisk makes group rg (and rg-snapshots) with a disk, a vault, an hourly policy and
// the disk protected by it (the vault's identity granted its roles), and
// runs one backup of the 1 MiB of random data written to the disk: the
// fixture of the pages that show protection and jobs.
func (s *site) protectedDisk(rg, disk, vault string) {
	s.t.Helper()
	s.coffer("group", "create", "-n", rg, "-l", "local")
	s.coffer("group", "create", "-n", rg+"-snapshots", "-l", "local")
	img := filepath.Join(s.t.TempDir(), disk+".img")
	data := make([]byte, 1<<20)
	rand.Read(data)
	if err := os.WriteFile(img, data, 0o600); err != nil {
		s.t.Fatal(err)
	}
	s.coffer("disk", "upload", "-g", rg, "-n", disk, img)
	s.coffer("vault", "create", "-g", rg, "-n", vault)
	s.coffer("policy", "create", "-g", rg, "-v", vault, "-n", "hourly", "--hourly", "4", "--retention", "7d")
	s.coffer("protect", "-g", rg, "-v", vault, "-n", disk+"-bi", "--disk-group", rg, "--disk-name", disk,
		"--snapshot-group", rg+"-snapshots", "--policy", "hourly", "--grant-missing-roles")
	s.coffer("backup", "now", "-g", rg, "-v", vault, "-n", disk+"-bi")
}

// sub is the bootstrap subscription.
func (s *site) sub() string { return s.env.Admin.SubscriptionID }

// group creates a resource group.
func (s *site) group(name string) {
	s.t.Helper()
	if _, err := s.admin.CreateGroup(context.Background(), name, "local", nil); err != nil {
		s.t.Fatalf("create group %s: %v", name, err)
	}
}

// principal creates a service principal with role (a GUID of rbac's
// built-in roles; "" for none) at scope and returns its client ID and
// secret.
func (s *site) principal(name, role, scope string) (clientID, secret string) {
	s.t.Helper()
	ctx := context.Background()
	p, err := s.admin.CreateServicePrincipal(ctx, name)
	if err != nil {
		s.t.Fatalf("create principal %s: %v", name, err)
	}
	if role != "" {
		if _, err := s.admin.CreateRoleAssignment(ctx, scope, identity.NewGUID(), role, p.PrincipalID, "ServicePrincipal"); err != nil {
			s.t.Fatalf("assign %s to %s at %s: %v", role, name, scope, err)
		}
	}
	return p.ClientID, p.ClientSecret
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects (tests look at them).
type browser struct {
	t    testing.TB
	site *site
	c    *http.Client
}

func (s *site) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: s.t, site: s, c: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// signedIn returns a browser signed in as the admin.
func (s *site) signedIn() *browser {
	b := s.browser()
	b.signIn(s.env.Admin.ClientID, s.env.Admin.ClientSecret)
	return b
}

// signedInAs returns a browser signed in as a new principal holding role
// at scope.
func (s *site) signedInAs(name, role, scope string) *browser {
	b := s.browser()
	id, secret := s.principal(name, role, scope)
	b.signIn(id, secret)
	return b
}

// page is a fetched page.
type page struct {
	*goquery.Document
	resp *http.Response
	body string
}

// get fetches path and parses it.
func (b *browser) get(path string) *page {
	b.t.Helper()
	resp, err := b.c.Get(b.site.base + path)
	if err != nil {
		b.t.Fatalf("GET %s: %v", path, err)
	}
	return b.read("GET "+path, resp)
}

func (b *browser) read(what string, resp *http.Response) *page {
	b.t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s: read: %v", what, err)
	}
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(string(body)))
	if err != nil {
		b.t.Fatalf("%s: parse: %v", what, err)
	}
	return &page{Document: doc, resp: resp, body: string(body)}
}

// getOK fetches path and fails the test unless it answered 200.
func (b *browser) getOK(path string) *page {
	b.t.Helper()
	p := b.get(path)
	if p.resp.StatusCode != http.StatusOK {
		b.t.Fatalf("GET %s: status %d, want 200\n%s", path, p.resp.StatusCode, p.text("main"))
	}
	return p
}

// post posts form values to path as they are (no token added).
func (b *browser) post(path string, form url.Values) *page {
	b.t.Helper()
	resp, err := b.c.PostForm(b.site.base+path, form)
	if err != nil {
		b.t.Fatalf("POST %s: %v", path, err)
	}
	return b.read("POST "+path, resp)
}

// csrf returns the CSRF token of the first form of the page that carries
// one.
func (p *page) csrf() string {
	v, _ := p.Find(`form input[name="csrf"]`).First().Attr("value")
	return v
}

// submit submits the form sel of p: its hidden and pre-filled fields, then
// values over them, posted to its action.
func (b *browser) submit(p *page, sel string, values map[string]string) *page {
	b.t.Helper()
	form := p.Find(sel)
	if form.Length() == 0 {
		b.t.Fatalf("no form %q on the page", sel)
	}
	v := url.Values{}
	form.Find("input[name], select[name]").Each(func(_ int, in *goquery.Selection) {
		name, _ := in.Attr("name")
		if goquery.NodeName(in) == "select" {
			opt := in.Find("option[selected]")
			if opt.Length() == 0 {
				opt = in.Find("option").First()
			}
			val, ok := opt.Attr("value")
			if !ok {
				val = opt.Text()
			}
			v.Set(name, val)
			return
		}
		if t, _ := in.Attr("type"); (t == "checkbox" || t == "radio") && !in.Is("[checked]") {
			return
		}
		val, _ := in.Attr("value")
		v.Add(name, val)
	})
	for k, val := range values {
		v.Set(k, val)
	}
	action, _ := form.Attr("action")
	return b.post(action, v)
}

// signIn signs in through the sign-in form and fails unless it succeeds.
func (b *browser) signIn(clientID, secret string) {
	b.t.Helper()
	p := b.trySignIn(clientID, secret)
	if p.resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("sign-in as %s: status %d, want 303\n%s", clientID, p.resp.StatusCode, p.text("main"))
	}
}

func (b *browser) trySignIn(clientID, secret string) *page {
	b.t.Helper()
	form := b.getOK("/signin")
	return b.submit(form, `form[action="/signin"]`, map[string]string{"client_id": clientID, "client_secret": secret})
}

// text is the whitespace-normalized text of sel.
func (p *page) text(sel string) string {
	return strings.Join(strings.Fields(p.Find(sel).Text()), " ")
}

// diskBytes downloads a disk through the CLI and returns its bytes.
func (s *site) diskBytes(rg, name string) []byte {
	s.t.Helper()
	out := filepath.Join(s.t.TempDir(), name+".raw")
	s.coffer("disk", "download", "-g", rg, "-n", name, out)
	b, err := os.ReadFile(out)
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}
