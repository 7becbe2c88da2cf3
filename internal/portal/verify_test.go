package portal_test

import (
	"context"
	"crypto/rand"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"coffer/internal/rbac"
)

// TestRecoveryPointVerify: a recovery point starts Not verified; its
// Verify button reads back every chunk and the row says Verified, with
// the JSON view's cofferVerification. After a byte of its pack is flipped,
// a repository verify (Coffer.Admin/verify) marks it Verify failed naming
// the chunk, and so does its own Verify.
func TestRecoveryPointVerify(t *testing.T) {
	s := newSite(t)
	instanceURL, diskID := protected(t, s, "data1")
	data := make([]byte, 1<<20)
	rand.Read(data)
	writeDisk(t, s, "rg-disks", filepath.Base(diskID), data)
	b := s.signedIn()
	backupNow(t, s, b, instanceURL)

	verifyCell := func(p *page) string { return p.text("#points tbody tr td .verify") }
	page := b.getOK(instanceURL)
	if got := verifyCell(page); got != "Not verified" {
		t.Fatalf("a new recovery point's verify state: %q", got)
	}
	done := b.submit(page, `#points form[action$="/verify"]`, nil)
	if done.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("verify: %d\n%s", done.resp.StatusCode, done.text("main"))
	}
	page = b.getOK(instanceURL)
	if got := verifyCell(page); got != "Verified" || !strings.Contains(page.text("#points .verify-note"), "read back") {
		t.Fatalf("after Verify: %q (%q)", got, page.text("#points .verify-note"))
	}
	if j := page.text("details.json"); !strings.Contains(j, `"cofferVerification"`) || !strings.Contains(j, `"state": "Verified"`) {
		t.Fatalf("JSON view of the points:\n%s", j)
	}

	// Damage the largest pack (the disk's data) in its first chunk.
	var pack string
	var largest int64
	filepath.WalkDir(filepath.Join(s.env.DataDir, "chunks"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(p, "pack") {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Size() > largest {
			pack, largest = p, info.Size()
		}
		return nil
	})
	if pack == "" {
		t.Fatal("no pack under the data dir")
	}
	os.Chmod(pack, 0o600)
	raw, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	raw[200] ^= 0xff
	if err := os.WriteFile(pack, raw, 0o400); err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := s.admin.Admin(context.Background(), "verify", &rep); err != nil {
		t.Fatal(err)
	}
	page = b.getOK(instanceURL)
	if got, note := verifyCell(page), page.text("#points .verify-note"); got != "Verify failed" || !strings.Contains(note, "repository verify") {
		t.Fatalf("after a repository verify that found the damage: %q (%q)", got, note)
	}
	b.submit(page, `#points form[action$="/verify"]`, nil)
	page = b.getOK(instanceURL)
	if got, note := verifyCell(page), page.text("#points .verify-note"); got != "Verify failed" || !strings.Contains(note, "did not match") {
		t.Fatalf("after Verify of the damaged point: %q (%q)", got, note)
	}
}

// TestRecoveryPointVerifyDenied: a Reader sees the verify state but its
// Verify button is disabled with the missing action, and a forced POST is
// refused.
func TestRecoveryPointVerifyDenied(t *testing.T) {
	s := newSite(t)
	instanceURL, _ := protected(t, s, "data1")
	backupNow(t, s, s.signedIn(), instanceURL)
	r := s.signedInAs("reader", rbac.RoleReader, "/subscriptions/"+s.sub())
	page := r.getOK(instanceURL)
	btn := page.Find(`#points form[action$="/verify"] button`)
	if _, disabled := btn.Attr("disabled"); !disabled || !strings.Contains(btn.AttrOr("title", ""), "validateRestore") {
		t.Fatalf("the Reader's Verify button: disabled %v, title %q", disabled, btn.AttrOr("title", ""))
	}
	forced := r.post(instanceURL+"/verify", url.Values{"csrf": {page.csrf()}, "rp": {"x"}})
	if forced.resp.StatusCode != http.StatusForbidden {
		t.Fatalf("forced verify by a Reader: %d", forced.resp.StatusCode)
	}
}
