package portal_test

import (
	"net/http"
	"strings"
	"testing"

	"coffer/internal/e2e"
)

// TestSessionSurvivesRestart: a session is kept in the metadata store, so
// a browser signed in before the server restarts (same data dir) is still
// signed in after it, with the same CSRF token; signing out then ends it.
// (Sessions held in memory were lost with the process.)
func TestSessionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	env := e2e.Start(t, e2e.Options{DataDir: dir})
	s := &site{t: t, env: env, base: env.Listen}
	b := s.signedIn()
	before := b.getOK("/vaults").csrf()
	env.Stop()

	env2 := e2e.Start(t, e2e.Options{DataDir: dir})
	b.site = &site{t: t, env: env2, base: env2.Listen} // the jar's cookie is for 127.0.0.1, whatever the port
	p := b.get("/vaults")
	if p.resp.StatusCode != http.StatusOK {
		t.Fatalf("after a restart GET /vaults: %d (Location %q), want 200: the session was lost", p.resp.StatusCode, p.resp.Header.Get("Location"))
	}
	if got := p.csrf(); got == "" || got != before {
		t.Fatalf("CSRF token after the restart %q, want the session's %q", got, before)
	}
	out := b.post("/signout", map[string][]string{"csrf": {before}})
	if out.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", out.resp.StatusCode)
	}
	if p := b.get("/vaults"); p.resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(p.resp.Header.Get("Location"), "/signin") {
		t.Fatalf("after sign-out GET /vaults: %d %q, want a redirect to sign in", p.resp.StatusCode, p.resp.Header.Get("Location"))
	}
}
