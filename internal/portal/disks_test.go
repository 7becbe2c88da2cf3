package portal_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestDiskResizeAndDelete: the disk page grows a disk (never shrinks it)
// and deletes it once its name is typed, refusing both while a grant
// exports it;
// each form shows its CLI equivalent.
func TestDiskResizeAndDelete(t *testing.T) {
	ctx := context.Background()
	s := newSite(t)
	s.coffer("group", "create", "-n", "rg1", "-l", "local")
	s.coffer("disk", "create", "-g", "rg1", "-n", "d1", "--size-gb", "1")
	s.coffer("disk", "grant-access", "-g", "rg1", "-n", "d1")
	b := s.signedIn()
	url := "/disks/" + s.sub() + "/rg1/d1"
	pg := b.getOK(url)
	if got := pg.text("#resize-form .cli"); !strings.Contains(got, "coffer disk update") || !strings.Contains(got, "--size-gb 1") {
		t.Errorf("resize CLI equivalent %q", got)
	}
	if got := pg.text("#delete-form .cli"); !strings.Contains(got, "coffer disk delete") {
		t.Errorf("delete CLI equivalent %q", got)
	}

	// While a grant exports the disk, neither is allowed (as on Azure).
	if p := b.submit(pg, "#resize-form", map[string]string{"size": "3"}); p.resp.StatusCode != http.StatusConflict {
		t.Fatalf("resize of an exported disk: %d, want 409\n%s", p.resp.StatusCode, p.text("main"))
	}
	if p := b.submit(pg, "#delete-form", map[string]string{"confirm": "d1"}); p.resp.StatusCode != http.StatusConflict {
		t.Fatalf("delete of an exported disk: %d, want 409\n%s", p.resp.StatusCode, p.text("main"))
	}
	s.coffer("disk", "revoke-access", "-g", "rg1", "-n", "d1")

	p := b.submit(pg, "#resize-form", map[string]string{"size": "3"})
	if p.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("resize: %d\n%s", p.resp.StatusCode, p.text("main"))
	}
	pg = b.getOK(url)
	if !strings.Contains(pg.text(".flash"), "resized to 3 GiB") || !strings.Contains(pg.text("#disk-size"), "3 GiB") {
		t.Fatalf("after the resize: flash %q, size %q", pg.text(".flash"), pg.text("#disk-size"))
	}
	if p := b.submit(pg, "#resize-form", map[string]string{"size": "2"}); p.resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("shrinking: %d, want 400\n%s", p.resp.StatusCode, p.text("main"))
	}
	if p := b.submit(pg, "#delete-form", map[string]string{"confirm": "D1"}); p.resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("delete confirmed with another name: %d, want 400\n%s", p.resp.StatusCode, p.text("main"))
	}
	if _, err := s.admin.GetDisk(ctx, "rg1", "d1"); err != nil {
		t.Fatalf("a refused delete removed the disk: %v", err)
	}
	p = b.submit(pg, "#delete-form", map[string]string{"confirm": "d1"})
	if p.resp.StatusCode != http.StatusSeeOther || p.resp.Header.Get("Location") != "/disks" {
		t.Fatalf("delete: %d %q\n%s", p.resp.StatusCode, p.resp.Header.Get("Location"), p.text("main"))
	}
	if got := b.getOK("/disks").text(".flash"); !strings.Contains(got, "d1 deleted") {
		t.Fatalf("flash after the delete: %q", got)
	}
	if _, err := s.admin.GetDisk(ctx, "rg1", "d1"); err == nil {
		t.Fatal("the disk is still there after the delete")
	}
}
