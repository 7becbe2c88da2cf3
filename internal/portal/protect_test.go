package portal_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"coffer/internal/client"
	"coffer/internal/rbac"
)

// protectSetup makes a vault with a 4-hourly policy, the groups of disks
// and snapshots, and a disk; it returns the disk's and the snapshot
// group's IDs and the vault identity's principal ID.
func protectSetup(t *testing.T, s *site, disks ...string) (diskIDs []string, snapRG, principal string) {
	t.Helper()
	ctx := context.Background()
	for _, g := range []string{"rg-vault", "rg-disks", "rg-snaps"} {
		s.group(g)
	}
	v, err := s.admin.CreateVault(ctx, "rg-vault", "v1", "local", "")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := client.BuildDiskPolicy(client.DiskPolicyOptions{Hours: 4, Retention: "7d"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin.PutPolicy(ctx, "rg-vault", "v1", "p4h", pol); err != nil {
		t.Fatal(err)
	}
	for _, name := range disks {
		d, err := s.admin.CreateDisk(ctx, "rg-disks", name, client.DiskSpec{Location: "local", SizeGB: 1}, true)
		if err != nil {
			t.Fatal(err)
		}
		diskIDs = append(diskIDs, d.ID)
	}
	return diskIDs, "/subscriptions/" + s.sub() + "/resourceGroups/rg-snaps", v.PrincipalID()
}

// TestConfigureProtection: validation fails for the disks whose vault
// identity lacks roles, the role assignment template lists them, "Add
// missing roles" at resource group scope assigns them and validates
// again, and "Configure protection" makes one backup instance per disk.
func TestConfigureProtection(t *testing.T) {
	s := newSite(t)
	ctx := context.Background()
	disks, snapRG, principal := protectSetup(t, s, "data1", "data2")
	b := s.signedIn()

	p := b.getOK("/protect")
	if p.Find(`#disks input[name="disk"]`).Length() != 2 || p.Find("#configure").Length() != 0 {
		t.Fatalf("the page does not offer both disks, or offers to configure before validation:\n%s", p.text("main"))
	}
	vault, _ := p.Find("#vault option[selected]").Attr("value")
	policy, _ := p.Find("#policy option[selected]").Attr("value")
	form := func(op string) url.Values {
		return url.Values{"csrf": {p.csrf()}, "vault": {vault}, "policy": {policy}, "disk": disks, "snapshot-group": {snapRG},
			"level": {"ResourceGroup"}, "op": {op}}
	}
	p = b.post("/protect", form("validate"))
	rows := p.text("#disks")
	if strings.Count(rows, "Role assignment not done") != 2 || !strings.Contains(rows, "Disk Backup Reader on "+disks[0]) ||
		!strings.Contains(rows, "Disk Snapshot Contributor on "+snapRG) {
		t.Fatalf("readiness after validation: %s", rows)
	}
	if p.Find("#add-roles").Length() != 1 || p.Find("#configure").Length() != 0 {
		t.Fatal("an admin is not offered Add missing roles, or may configure with roles missing")
	}

	// The template lists every missing role at the chosen scope.
	tpl, err := b.c.PostForm(s.base+"/protect", form("template"))
	if err != nil {
		t.Fatal(err)
	}
	if ct := tpl.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/x-shellscript") {
		t.Fatalf("template Content-Type %q", ct)
	}
	script, _ := io.ReadAll(tpl.Body)
	tpl.Body.Close()
	for _, want := range []string{
		"coffer role assignment create --assignee " + principal + " --role 'Disk Backup Reader' --scope /subscriptions/" + s.sub() + "/resourceGroups/rg-disks\n",
		"coffer role assignment create --assignee " + principal + " --role 'Disk Snapshot Contributor' --scope " + snapRG + "\n",
	} {
		if !strings.Contains(string(script), want) {
			t.Fatalf("template lacks %q:\n%s", want, script)
		}
	}
	if n := strings.Count(string(script), "coffer role assignment create"); n != 2 {
		t.Fatalf("template has %d commands, want 2 (one per role and scope):\n%s", n, script)
	}

	p = b.submit(p, "#protect-form", map[string]string{"op": "assign", "level": "ResourceGroup"})
	if p.resp.StatusCode != http.StatusOK || !strings.Contains(p.text(".flash"), "Assigned 2 roles") {
		t.Fatalf("Add missing roles: %d\n%s", p.resp.StatusCode, p.text("main"))
	}
	if n := strings.Count(p.text("#disks"), "Success"); n != 2 || p.Find("#configure").Length() != 1 {
		t.Fatalf("validation did not re-run to success: %s", p.text("#disks"))
	}
	as, err := s.admin.ListRoleAssignments(ctx, "/subscriptions/"+s.sub()+"/resourceGroups/rg-disks", "principalId eq '"+principal+"'")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range as {
		found = found || (strings.HasSuffix(a.Properties.RoleDefinitionID, rbac.RoleDiskBackupReader) &&
			strings.EqualFold(a.Properties.Scope, "/subscriptions/"+s.sub()+"/resourceGroups/rg-disks"))
	}
	if !found {
		t.Fatalf("Disk Backup Reader was not assigned at the disks' group: %+v", as)
	}

	p = b.submit(p, "#protect-form", map[string]string{"op": "configure"})
	if p.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("configure: %d\n%s", p.resp.StatusCode, p.text("main"))
	}
	list := b.getOK(p.resp.Header.Get("Location"))
	if got := list.text("#instances"); strings.Count(got, "Protected") != 2 || !strings.Contains(got, "data1") || !strings.Contains(got, "data2") {
		t.Fatalf("instances after configuring: %s", got)
	}
	bis, err := s.admin.ListInstances(ctx, "rg-vault", "v1")
	if err != nil || len(bis) != 2 {
		t.Fatalf("the API lists %d instances (%v), want 2", len(bis), err)
	}
}

// TestProtectWithoutRoleRights: a Contributor (who may not assign roles)
// sees "Add missing roles" disabled with the missing action, downloads
// the template instead, and a forced "Add missing roles" is refused as
// the API refuses the role assignment, assigning nothing.
func TestProtectWithoutRoleRights(t *testing.T) {
	s := newSite(t)
	ctx := context.Background()
	disks, snapRG, principal := protectSetup(t, s, "data1")
	b := s.signedInAs("contributor", rbac.RoleContributor, "/subscriptions/"+s.sub())
	p := b.submit(b.getOK("/protect"), "#protect-form", map[string]string{"disk": disks[0], "snapshot-group": snapRG, "op": "validate"})
	if !strings.Contains(p.text("#disks"), "Role assignment not done") {
		t.Fatalf("readiness: %s", p.text("#disks"))
	}
	if p.Find("#add-roles").Length() != 0 || !strings.Contains(p.text("#missing-roles .denied"), rbac.ActionRoleAssignmentsWrite) ||
		p.Find("#download-template").Length() != 1 {
		t.Fatalf("Add missing roles is not disabled with its reason:\n%s", p.text("#missing-roles"))
	}
	forced := b.submit(p, "#protect-form", map[string]string{"op": "assign"})
	if forced.resp.StatusCode != http.StatusForbidden || !strings.Contains(forced.text("main"), "AuthorizationFailed") {
		t.Fatalf("forced Add missing roles: %d\n%s", forced.resp.StatusCode, forced.text("main"))
	}
	as, err := s.admin.ListRoleAssignments(ctx, "/subscriptions/"+s.sub(), "principalId eq '"+principal+"'")
	if err != nil || len(as) != 0 {
		t.Fatalf("the vault identity holds %d assignments (%v), want none", len(as), err)
	}
}
