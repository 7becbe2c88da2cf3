package portal_test

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"coffer/internal/blobstore/s3/s3test"
	"coffer/internal/client"
	"coffer/internal/compute"
	"coffer/internal/e2e"
	"coffer/internal/portal"
	"coffer/internal/server"
	"coffer/internal/store/postgres/pgtest"
)

// twoNodes starts two nodes of one installation sharing a PostgreSQL
// database and a versitygw bucket, with placement p, and returns their
// sites (both with the installation's admin).
func twoNodes(t *testing.T, placement string) (a, b *site) {
	t.Helper()
	db := pgtest.Start(t).NewDatabase(t)
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	srv.SetEnv(t)
	o := e2e.Options{DB: db, Blob: "s3://" + bucket + "/coffer", S3Endpoint: srv.Endpoint, S3PathStyle: true, Placement: placement}
	oa, ob := o, o
	oa.NodeName, ob.NodeName = "node-a", "node-b"
	ea := e2e.Start(t, oa)
	ob.MasterKey = filepath.Join(ea.DataDir, server.MasterKeyFile) // the installation's
	eb := e2e.Start(t, ob)
	eb.Admin = ea.Admin // the installation's admin signs in on node-b's portal
	eb.Admin.Endpoint = eb.Endpoint
	a = &site{t: t, env: ea, base: ea.Listen, admin: ea.Client(ea.Admin.Token)}
	b = &site{t: t, env: eb, base: eb.Listen, admin: eb.Client(eb.Admin.Token)}
	return a, b
}

// on returns a browser with br's cookies that talks to s.
func (br *browser) on(s *site) *browser {
	return &browser{t: br.t, site: s, c: br.c}
}

// TestSessionAcrossNodes: a session started on node-a's portal is known
// to node-b's (behind one load balancer, the next request may reach
// either), with the same CSRF token; signing out through node-b ends it
// on node-a too.
func TestSessionAcrossNodes(t *testing.T) {
	a, b := twoNodes(t, "local")
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
}

// TestDiskActionsOnAnotherNode: two nodes share one database; a disk
// lives on node-a. Through node-b's portal, revoking the disk's access or
// granting new access is refused with a 409 that names node-a, and the
// grant made through the API stays (a revoke done on node-b used to end it
// in the record while node-a, which serves the disk's data, still held it,
// and then fail to flush a volume node-b does not have).
func TestDiskActionsOnAnotherNode(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Start(t).NewDatabase(t)
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	srv.SetEnv(t)
	o := e2e.Options{DB: db, Blob: "s3://" + bucket + "/coffer", S3Endpoint: srv.Endpoint, S3PathStyle: true, Placement: "local"}
	oa, ob := o, o
	oa.NodeName, ob.NodeName = "node-a", "node-b"
	a := e2e.Start(t, oa)
	ob.MasterKey = filepath.Join(a.DataDir, server.MasterKeyFile) // the installation's
	b := e2e.Start(t, ob)
	b.Admin = a.Admin // the installation's admin signs in on node-b's portal
	b.Admin.Endpoint = b.Endpoint

	ca := a.Client("")
	const rg, name = "rg-far", "far"
	if _, err := ca.CreateGroup(ctx, rg, "local", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.CreateDisk(ctx, rg, name, client.DiskSpec{Location: "local", SizeGB: 1}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.GrantAccess(ctx, client.Disks, rg, name, "Read", time.Hour); err != nil {
		t.Fatal(err)
	}
	id := compute.DiskID(a.Admin.SubscriptionID, rg, name)
	grants := func() int {
		t.Helper()
		d, err := a.Server.Compute.GetDisk(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return len(d.Grants)
	}

	s := &site{t: t, env: b, base: b.Listen}
	br := s.signedIn()
	pg := br.getOK(portal.PageURL(id.String()))
	for _, action := range []struct {
		path string
		form url.Values
	}{
		{"/revoke", url.Values{}},
		{"/grant", url.Values{"access": {"Read"}, "duration": {"3600"}}},
	} {
		action.form.Set("csrf", pg.csrf())
		got := br.post(portal.PageURL(id.String())+action.path, action.form)
		if got.resp.StatusCode != http.StatusConflict || !strings.Contains(got.body, "node-a") {
			t.Fatalf("%s through node-b's portal: %d, want 409 naming node-a\n%s", action.path, got.resp.StatusCode, got.text("main"))
		}
		if n := grants(); n != 1 {
			t.Fatalf("after %s through node-b's portal the disk has %d grants, want the 1 made through the API", action.path, n)
		}
	}
}
