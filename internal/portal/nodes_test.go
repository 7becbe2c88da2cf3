package portal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"coffer/internal/blobstore/s3/s3test"
	"coffer/internal/client"
	"coffer/internal/clock"
	"coffer/internal/cluster"
	"coffer/internal/compute"
	"coffer/internal/e2e"
	"coffer/internal/portal"
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/server"
	"coffer/internal/store"
	"coffer/internal/store/postgres/pgtest"
)

// twoNodes starts two nodes of one installation sharing a PostgreSQL
// database and a versitygw bucket, node-a with placement pa and node-b
// with pb, and returns their sites (both with the installation's admin).
// first, when set, runs on node-a before node-b starts.
func twoNodes(t *testing.T, pa, pb string, first func(a *site)) (a, b *site) {
	t.Helper()
	db := pgtest.Start(t).NewDatabase(t)
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	srv.SetEnv(t)
	o := e2e.Options{DB: db, Blob: "s3://" + bucket + "/coffer", S3Endpoint: srv.Endpoint, S3PathStyle: true}
	oa, ob := o, o
	oa.NodeName, ob.NodeName = "node-a", "node-b"
	oa.Placement, ob.Placement = pa, pb
	ea := e2e.Start(t, oa)
	a = &site{t: t, env: ea, base: ea.Listen, admin: ea.Client(ea.Admin.Token)}
	if first != nil {
		first(a)
	}
	ob.MasterKey = filepath.Join(ea.DataDir, server.MasterKeyFile) // the installation's
	eb := e2e.Start(t, ob)
	eb.Admin = ea.Admin // the installation's admin signs in on node-b's portal
	eb.Admin.Endpoint = eb.Endpoint
	b = &site{t: t, env: eb, base: eb.Listen, admin: eb.Client(eb.Admin.Token)}
	return a, b
}

// on returns a browser with br's cookies that talks to s.
func (br *browser) on(s *site) *browser {
	return &browser{t: br.t, site: s, c: br.c}
}

// TestSessionAcrossNodes: a sign-in form node-a served signs in through
// node-b (the nodes share its token's key); a session started on node-a's
// portal is known to node-b's (behind one load balancer, the next request
// may reach either), with the same CSRF token; signing out through node-b
// ends it on node-a too.
func TestSessionAcrossNodes(t *testing.T) {
	a, b := twoNodes(t, "local", "local", nil)
	crossed := a.browser()
	form := crossed.getOK("/signin")
	signin := crossed.on(b).submit(form, `form[action="/signin"]`,
		map[string]string{"client_id": a.env.Admin.ClientID, "client_secret": a.env.Admin.ClientSecret})
	if signin.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("node-a's sign-in form posted to node-b: %d, want 303", signin.resp.StatusCode)
	}
	crossed.on(b).getOK("/vaults")
	onA := a.signedIn()
	token := onA.getOK("/vaults").csrf()
	onB := onA.on(b)
	p := onB.get("/vaults")
	if p.resp.StatusCode != http.StatusOK || p.csrf() != token {
		t.Fatalf("node-b with node-a's cookie: %d (Location %q), CSRF %q want %q", p.resp.StatusCode, p.resp.Header.Get("Location"), p.csrf(), token)
	}
	// A copy of the cookie, as a thief or a stale tab would still send it.
	stale := a.browser()
	u, _ := url.Parse(a.base)
	stale.c.Jar.SetCookies(u, onA.c.Jar.Cookies(u))
	if out := onB.post("/signout", url.Values{"csrf": {token}}); out.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out through node-b: %d", out.resp.StatusCode)
	}
	if p := stale.get("/vaults"); p.resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(p.resp.Header.Get("Location"), "/signin") {
		t.Fatalf("node-a after sign-out through node-b: %d %q, want a redirect to sign in", p.resp.StatusCode, p.resp.Header.Get("Location"))
	}

	// A principal deleted through node-b is signed out on node-a, and its
	// session's row goes.
	clientID, secret := a.principal("short-lived", rbac.RoleReader, "/subscriptions/"+a.env.Admin.SubscriptionID)
	gone := a.browser()
	gone.signIn(clientID, secret)
	gone.getOK("/vaults")
	ps, err := b.admin.ListPrincipals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var pid string
	for _, p := range ps {
		if p.ClientID == clientID {
			pid = p.PrincipalID
		}
	}
	if err := b.admin.DeletePrincipal(context.Background(), pid); err != nil {
		t.Fatal(err)
	}
	if p := gone.get("/vaults"); p.resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(p.resp.Header.Get("Location"), "/signin") {
		t.Fatalf("a deleted principal's session on node-a: %d %q, want a redirect to sign in", p.resp.StatusCode, p.resp.Header.Get("Location"))
	}
	err = a.env.Server.Store().View(context.Background(), func(tx store.Tx) error {
		objs, err := tx.List(context.Background(), store.Query{Kind: "portal.session"})
		for _, o := range objs {
			if strings.Contains(string(o.Data), pid) {
				t.Errorf("the deleted principal's session row %s is still stored", o.Key)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDiskActionsForwarded: two nodes share one database; disks live on
// node-a. A grant, a revoke, a resize and a delete made through node-b's
// portal are forwarded to node-a and take effect there (a grant's URL
// reads the disk, a revoked one no longer does). Node-a authenticates and
// authorizes the forwarded request again: a Reader's forced POST is
// refused (403) by either node, the hop header included, and so is a POST
// without the CSRF token. With node-a down, node-b's portal says which
// node is unavailable (503). (The portal used to refuse such actions with
// 409 DiskOnAnotherNode, and had no resize or delete.)
func TestDiskActionsForwarded(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t, "local", "local", nil)
	ca := a.admin
	const rg = "rg-far"
	if _, err := ca.CreateGroup(ctx, rg, "local", nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"far", "later"} {
		if _, err := ca.CreateDisk(ctx, rg, name, client.DiskSpec{Location: "local", SizeGB: 1}, true); err != nil {
			t.Fatal(err)
		}
	}
	sub := a.env.Admin.SubscriptionID
	id := compute.DiskID(sub, rg, "far")
	diskURL := portal.PageURL(id.String())
	onA := a.env.Server.Compute
	disk := func() compute.Disk {
		t.Helper()
		d, err := onA.GetDisk(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	br := b.signedIn()
	// Grant through node-b: the page shows URLs that read the disk.
	pg := br.getOK(diskURL)
	got := br.submit(pg, "#grant-form", map[string]string{"access": "read", "duration": "3600"})
	sas := got.Find("#granted code").Last().Text()
	if got.resp.StatusCode != http.StatusOK || sas == "" {
		t.Fatalf("grant through node-b: %d\n%s", got.resp.StatusCode, got.text("main"))
	}
	if n := len(disk().Grants); n != 1 {
		t.Fatalf("after the grant through node-b node-a's record has %d grants, want 1", n)
	}
	if _, err := ca.ReadRange(ctx, sas, 0, 4096); err != nil {
		t.Fatalf("read through the grant made through node-b: %v", err)
	}

	// Forced and token-less POSTs: refused by node-b, and by node-a when
	// sent to it directly with the hop header.
	reader := b.signedInAs("reader", rbac.RoleReader, "/subscriptions/"+sub)
	tok := reader.getOK(diskURL).csrf()
	admTok := br.getOK(diskURL).csrf()
	hop := func(br *browser, path string, form url.Values) *page {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, a.base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set(server.ForwardedHeader, "node-b")
		u, _ := url.Parse(b.base)
		for _, c := range br.c.Jar.Cookies(u) {
			req.AddCookie(c)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return br.read("POST "+path, resp)
	}
	for _, c := range []struct {
		who  string
		br   *browser
		path string
		form url.Values
	}{
		{"a Reader", reader, "/revoke", url.Values{"csrf": {tok}}},
		{"a Reader", reader, "/grant", url.Values{"csrf": {tok}, "access": {"write"}, "duration": {"60"}}},
		{"a Reader", reader, "/resize", url.Values{"csrf": {tok}, "size": {"2"}}},
		{"a Reader", reader, "/delete", url.Values{"csrf": {tok}, "confirm": {"far"}}},
		{"the admin without the CSRF token", br, "/revoke", url.Values{}},
		{"the admin with another session's CSRF token", br, "/resize", url.Values{"csrf": {tok}, "size": {"2"}}},
	} {
		for node, post := range map[string]func() *page{
			"node-b":              func() *page { return c.br.post(diskURL+c.path, c.form) },
			"node-a (hop header)": func() *page { return hop(c.br, diskURL+c.path, c.form) },
		} {
			if p := post(); p.resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s's POST %s to %s: %d, want 403\n%s", c.who, c.path, node, p.resp.StatusCode, p.text("main"))
			}
		}
	}
	if d := disk(); len(d.Grants) != 1 || d.DiskSizeGB != 1 {
		t.Fatalf("after the refused POSTs the disk has %d grants and %d GiB, want 1 and 1", len(d.Grants), d.DiskSizeGB)
	}

	// Revoke through node-b: node-a no longer serves the grant.
	if p := br.post(diskURL+"/revoke", url.Values{"csrf": {admTok}}); p.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke through node-b: %d\n%s", p.resp.StatusCode, p.text("main"))
	}
	if n := len(disk().Grants); n != 0 {
		t.Fatalf("after the revoke through node-b the disk has %d grants", n)
	}
	if _, err := ca.ReadRange(ctx, sas, 0, 4096); err == nil {
		t.Fatal("node-a still serves a grant revoked through node-b's portal")
	}
	// The flash node-a stored shows on node-b's next page.
	if p := br.getOK(diskURL); !strings.Contains(p.text(".flash"), "Access revoked") {
		t.Fatalf("flash after the forwarded revoke: %q", p.text(".flash"))
	}

	// Resize through node-b: node-a grows the volume it holds.
	if p := br.post(diskURL+"/resize", url.Values{"csrf": {admTok}, "size": {"2"}}); p.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("resize through node-b: %d\n%s", p.resp.StatusCode, p.text("main"))
	}
	if d := disk(); d.DiskSizeGB != 2 {
		t.Fatalf("after the resize through node-b the disk has %d GiB, want 2", d.DiskSizeGB)
	}
	if p := br.getOK(diskURL); !strings.Contains(p.text(".flash"), "resized to 2 GiB") {
		t.Fatalf("flash after the forwarded resize: %q", p.text(".flash"))
	}

	// Delete through node-b: a wrong confirmation changes nothing.
	if p := br.post(diskURL+"/delete", url.Values{"csrf": {admTok}, "confirm": {"other"}}); p.resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("delete with a wrong confirmation: %d, want 400", p.resp.StatusCode)
	}
	if p := br.post(diskURL+"/delete", url.Values{"csrf": {admTok}, "confirm": {"far"}}); p.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete through node-b: %d\n%s", p.resp.StatusCode, p.text("main"))
	}
	if _, err := onA.GetDisk(ctx, id); !resource.IsNotFound(err) {
		t.Fatalf("after the delete through node-b: %v, want not found", err)
	}

	// node-a down: node-b's portal names it.
	later := portal.PageURL(compute.DiskID(sub, rg, "later").String())
	pg = br.getOK(later)
	a.env.Stop()
	got = br.submit(pg, "#grant-form", map[string]string{"access": "read", "duration": "60"})
	if got.resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(got.text("main"), "node-a") {
		t.Fatalf("grant with node-a down: %d, want 503 naming node-a\n%s", got.resp.StatusCode, got.text("main"))
	}
}

// TestPortalCreatePlaced: the portal's create and upload place a new disk
// as the API does (--placement least-used: the live node whose volumes use
// the least space). node-a holds a disk with data when node-b, empty,
// joins; disks created and uploaded through node-a's portal land on
// node-b. (The portal created them on the node it ran on.)
func TestPortalCreatePlaced(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t, "least-used", "least-used", func(a *site) {
		a.env.UseCLI(t)
		a.coffer("group", "create", "-n", "rg-place", "-l", "local")
		img := filepath.Join(t.TempDir(), "data.img")
		data := make([]byte, 4<<20)
		rand.Read(data)
		if err := os.WriteFile(img, data, 0o600); err != nil {
			t.Fatal(err)
		}
		a.coffer("disk", "upload", "-g", "rg-place", "-n", "full", img) // node-a is the only node: it holds it
		// Wait for node-a's heartbeat to report the space its volume uses.
		waitNode(t, a, "node-a", func(n cluster.Node) bool { return n.UsedBytes > 0 })
	})
	waitNode(t, a, "node-b", func(cluster.Node) bool { return true }) // registered as it starts serving
	sub := a.env.Admin.SubscriptionID
	home := func(name string) string {
		t.Helper()
		var h string
		err := b.env.Server.Store().View(ctx, func(tx store.Tx) error {
			var err error
			h, err = cluster.Home(ctx, tx, compute.DiskID(sub, "rg-place", name).String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if h := home("full"); h != "node-a" {
		t.Fatalf("the uploaded disk's home is %q, want node-a", h)
	}

	br := a.signedIn()
	form := br.getOK("/disks/new?group=" + url.QueryEscape(sub+"/rg-place"))
	got := br.submit(form, "#disk-form", map[string]string{"name": "placed", "size": "1", "group": sub + "/rg-place", "location": "local"})
	if got.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create through node-a's portal: %d\n%s", got.resp.StatusCode, got.text("main"))
	}
	if h := home("placed"); h != "node-b" {
		t.Fatalf("a disk created through node-a's portal is homed on %q, want node-b (least used)", h)
	}
	if p := br.getOK("/disks"); !strings.Contains(p.text(".flash"), "placed created") {
		t.Fatalf("flash after the placed create: %q", p.text(".flash"))
	}

	// Upload: the start (create and write grant) is placed the same way.
	form = br.getOK("/disks/upload?group=" + url.QueryEscape(sub+"/rg-place"))
	got = br.submit(form, "#upload-form", map[string]string{"name": "uploaded", "bytes": "1048576", "group": sub + "/rg-place", "location": "local"})
	if got.resp.StatusCode != http.StatusOK || !strings.Contains(got.body, `"data"`) {
		t.Fatalf("upload start through node-a's portal: %d\n%s", got.resp.StatusCode, got.body)
	}
	if h := home("uploaded"); h != "node-b" {
		t.Fatalf("a disk uploaded through node-a's portal is homed on %q, want node-b (least used)", h)
	}
	// The page's script writes the image through the grant's relative URL
	// and posts to Finish, both to node-a, which forwards them to node-b.
	var start struct{ Data, Finish string }
	if err := json.Unmarshal([]byte(got.body), &start); err != nil {
		t.Fatal(err)
	}
	image := make([]byte, 1<<20)
	rand.Read(image)
	if err := a.admin.PutPages(ctx, a.base+start.Data, 0, image); err != nil {
		t.Fatalf("write the image through node-a: %v", err)
	}
	if p := br.post(start.Finish, url.Values{"csrf": {form.csrf()}}); p.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("finish the upload through node-a's portal: %d\n%s", p.resp.StatusCode, p.text("main"))
	}
	acc, err := a.admin.GrantAccess(ctx, client.Disks, "rg-place", "uploaded", "Read", time.Hour)
	if err != nil {
		t.Fatalf("grant read on the uploaded disk (the upload did not finish?): %v", err)
	}
	back, err := a.admin.ReadRange(ctx, acc.AccessSAS, 0, int64(len(image)))
	if err != nil || !bytes.Equal(back, image) {
		t.Fatalf("the uploaded disk does not hold the image (%v)", err)
	}
}

// waitNode waits until the registry that s reads has node name in a state
// ok accepts (a node registers, and beats, on its own schedule).
func waitNode(t *testing.T, s *site, name string, ok func(cluster.Node) bool) {
	t.Helper()
	reg := cluster.Registry{Store: s.env.Server.Store(), Clock: clock.Real{}}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		n, err := reg.Get(context.Background(), name)
		if err == nil && ok(n) {
			return
		}
		if err != nil && !errors.Is(err, cluster.ErrUnknownNode) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s not in the state awaited after a minute (%+v, %v)", name, n, err)
		}
	}
}

// TestSigninLimitAcrossNodes: failed sign-ins are counted across the
// nodes behind one load balancer: 3 through node-a and 2 through node-b
// refuse the next, right, secret on either node (each node used to count
// its own, so two nodes gave an attacker twice the attempts).
func TestSigninLimitAcrossNodes(t *testing.T) {
	a, b := twoNodes(t, "local", "local", nil)
	id := a.env.Admin.ClientID
	for i, s := range []*site{a, a, a, b, b} {
		if p := s.browser().trySignIn(id, "wrong"); p.resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d, want 401", i+1, p.resp.StatusCode)
		}
	}
	for _, s := range []*site{b, a} {
		p := s.browser().trySignIn(id, a.env.Admin.ClientSecret)
		if p.resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(p.text(".error"), "Too many failed sign-ins") {
			t.Fatalf("%s after 5 failures over two nodes: %d %q, want 429", s.env.Endpoint, p.resp.StatusCode, p.text(".error"))
		}
	}
}
