package e2e

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/identity"
	"coffer/internal/nbd/nbdtest"
	"coffer/internal/rbac"
	"coffer/internal/testenv"
)

// principal creates a service principal holding role at each of scopes and
// returns it with a client acting as it.
func (ce *computeEnv) principal(t *testing.T, name, role string, scopes ...string) (client.Principal, *client.Client) {
	t.Helper()
	sp, err := ce.c.CreateServicePrincipal(ce.ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, scope := range scopes {
		if _, err := ce.c.CreateRoleAssignment(ce.ctx, scope, identity.NewGUID(), role, sp.PrincipalID, "ServicePrincipal"); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := ce.c.ClientCredentials(ce.ctx, ce.Admin.TenantID, sp.ClientID, sp.ClientSecret)
	if err != nil {
		t.Fatal(err)
	}
	return sp, ce.Client(tok)
}

func (ce *computeEnv) groupID(rg string) string {
	return "/subscriptions/" + ce.Admin.SubscriptionID + "/resourceGroups/" + rg
}

func (ce *computeEnv) snapshotID(name string) string {
	return ce.groupID("rg") + "/providers/Microsoft.Compute/snapshots/" + name
}

// wantDenied checks a 403 with code that names action and scope.
func wantDenied(t *testing.T, err error, code, action, scope string) {
	t.Helper()
	e := client.AsError(err)
	if e == nil || e.StatusCode != http.StatusForbidden || e.Code != code ||
		!strings.Contains(e.Message, "'"+action+"'") || !strings.Contains(e.Message, "'"+scope+"'") {
		t.Fatalf("got %v, want 403 %s naming '%s' and '%s'", err, code, action, scope)
	}
}

// fill writes n bytes of b at off through a write grant's SAS URL.
func (ce *computeEnv) fill(t *testing.T, sas string, off, n int64, b byte) {
	t.Helper()
	piece := bytes.Repeat([]byte{b}, 4<<20)
	for pos := off; pos < off+n; pos += int64(len(piece)) {
		if err := ce.c.PutPages(ce.ctx, sas, pos, piece[:min(int64(len(piece)), off+n-pos)]); err != nil {
			t.Fatal(err)
		}
	}
}

// expectBytes checks that [off, off+n) of the resource behind sas reads as b.
func (ce *computeEnv) expectBytes(t *testing.T, sas string, off, n int64, b byte) {
	t.Helper()
	got, err := ce.c.ReadRange(ce.ctx, sas, off, n)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{b}, int(n))) {
		t.Fatalf("[%d, %d) does not read as %#x", off, off+n, b)
	}
}

// TestWriteGrantNeedsDiskWrite is defect 1 of issue 11: Disk Backup Reader
// and Disk Snapshot Contributor hold beginGetAccess but not disks/write, and
// must not get a Write grant; a Read grant writes nothing over SAS (update,
// clear) or NBD (write, write zeroes, trim), checked with qemu-io and the
// in-repo NBD client.
func TestWriteGrantNeedsDiskWrite(t *testing.T) {
	ce := startCompute(t, Options{})
	ctx := ce.ctx
	ce.createDisk(t, "d", client.DiskSpec{SizeGB: 1})
	w := ce.grant(t, client.Disks, "d", "Write")
	ce.fill(t, w.AccessSAS, 0, 1<<20, 0x42)
	if err := ce.c.RevokeAccess(ctx, client.Disks, "rg", "d"); err != nil {
		t.Fatal(err)
	}
	disk := ce.diskID("d")
	_, reader := ce.principal(t, "backup-reader", rbac.RoleDiskBackupReader, disk)
	_, snapper := ce.principal(t, "snapshot-contributor", rbac.RoleDiskSnapshotContributor, ce.groupID("rg"))
	for name, c := range map[string]*client.Client{"Disk Backup Reader": reader, "Disk Snapshot Contributor": snapper} {
		_, err := c.GrantAccess(ctx, client.Disks, "rg", "d", "Write", time.Hour)
		if err == nil {
			t.Fatalf("%s got a Write grant", name)
		}
		wantDenied(t, err, "AuthorizationFailed", "Microsoft.Compute/disks/write", disk)
	}

	r, err := reader.GrantAccess(ctx, client.Disks, "rg", "d", "Read", time.Hour)
	if err != nil {
		t.Fatalf("Disk Backup Reader cannot get a Read grant: %v", err)
	}
	wantCode(t, ce.c.PutPages(ctx, r.AccessSAS, 0, make([]byte, 4096)), http.StatusForbidden, "AuthorizationPermissionMismatch")
	wantCode(t, ce.c.ClearPages(ctx, r.AccessSAS, 0, 1<<20), http.StatusForbidden, "AuthorizationPermissionMismatch")

	addr, name := nbdAddrAndName(t, r.NBDURL)
	nc, err := nbdtest.Dial(ctx, addr, name, nbdtest.Options{Structured: true})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, cmd := range []struct {
		name    string
		typ     uint16
		payload []byte
	}{{"WRITE", nbdtest.CmdWrite, make([]byte, 4096)}, {"TRIM", nbdtest.CmdTrim, nil}, {"WRITE_ZEROES", nbdtest.CmdWriteZeroes, nil}} {
		_, err := nc.Do(cmd.typ, 0, 0, 4096, cmd.payload)
		var ne *nbdtest.Error
		if !errors.As(err, &ne) || ne.Errno != nbdtest.EPERM {
			t.Fatalf("NBD %s through a Read grant: %v, want EPERM", cmd.name, err)
		}
	}
	if qemuIO := testenv.NeedProgram(t, "qemu-io"); qemuIO != "" {
		for _, c := range []string{"write -P 0x99 0 4k", "write -z 0 64k", "discard 0 64k"} {
			fails(t, qemuIO, "-f", "raw", "-c", c, r.NBDURL)
		}
	}
	ce.expectBytes(t, r.AccessSAS, 0, 1<<20, 0x42)
}

// TestDiskSnapshotContributor: a principal holding only Disk Snapshot
// Contributor on the group does what Azure lets it (snapshot a disk, which
// Azure checks as beginGetAccess on the disk; read grants on the disk and on
// its snapshots; end them; delete snapshots) and nothing more (read the
// disk's properties, write or restore a disk).
func TestDiskSnapshotContributor(t *testing.T) {
	ce := startCompute(t, Options{})
	ctx := ce.ctx
	ce.createDisk(t, "d", client.DiskSpec{SizeGB: 1})
	w := ce.grant(t, client.Disks, "d", "Write")
	ce.fill(t, w.AccessSAS, 1<<20, 1<<20, 0x5a)
	if err := ce.c.RevokeAccess(ctx, client.Disks, "rg", "d"); err != nil {
		t.Fatal(err)
	}
	_, c := ce.principal(t, "snapshot-contributor", rbac.RoleDiskSnapshotContributor, ce.groupID("rg"))

	sn, err := c.CreateSnapshot(ctx, "rg", "s1", client.SnapshotSpec{Location: "local", Source: ce.diskID("d"), Incremental: true}, true)
	if err != nil || sn.Properties.ProvisioningState != "Succeeded" {
		t.Fatalf("Disk Snapshot Contributor cannot snapshot the disk: %v %+v", err, sn.Properties)
	}
	g, err := c.GrantAccess(ctx, client.Snapshots, "rg", "s1", "Read", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ce.expectBytes(t, g.AccessSAS, 1<<20, 1<<20, 0x5a)
	if err := c.RevokeAccess(ctx, client.Snapshots, "rg", "s1"); err != nil {
		t.Fatal(err)
	}
	dg, err := c.GrantAccess(ctx, client.Disks, "rg", "d", "Read", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ce.expectBytes(t, dg.AccessSAS, 1<<20, 4096, 0x5a)

	_, err = c.GetDisk(ctx, "rg", "d")
	wantDenied(t, err, "AuthorizationFailed", "Microsoft.Compute/disks/read", ce.diskID("d"))
	_, err = c.CreateDisk(ctx, "rg", "r", client.DiskSpec{Location: "local", Source: ce.snapshotID("s1")}, true)
	wantDenied(t, err, "AuthorizationFailed", "Microsoft.Compute/disks/write", ce.diskID("r"))
	if err := c.DeleteSnapshot(ctx, "rg", "s1"); err != nil {
		t.Fatal(err)
	}
}

// TestCopySourceNeedsGetAccess: reading a disk's or snapshot's properties
// (Reader) does not let a principal copy its bytes into a disk or snapshot
// of its own; Azure's linked check asks for beginGetAccess on the source.
func TestCopySourceNeedsGetAccess(t *testing.T) {
	ce := startCompute(t, Options{})
	ctx := ce.ctx
	if _, err := ce.c.CreateGroup(ctx, "mine", "local", nil); err != nil {
		t.Fatal(err)
	}
	ce.createDisk(t, "d", client.DiskSpec{SizeGB: 1})
	ce.snapshot(t, "s", "d")
	sp, c := ce.principal(t, "reader", rbac.RoleReader, ce.groupID("rg"))
	if _, err := ce.c.CreateRoleAssignment(ctx, ce.groupID("mine"), identity.NewGUID(), rbac.RoleContributor, sp.PrincipalID, "ServicePrincipal"); err != nil {
		t.Fatal(err)
	}
	mine := func(typ, name string) string {
		return ce.groupID("mine") + "/providers/Microsoft.Compute/" + typ + "/" + name
	}
	_, err := c.CreateDisk(ctx, "mine", "copy", client.DiskSpec{Location: "local", Source: ce.diskID("d")}, true)
	wantDenied(t, err, "LinkedAuthorizationFailed", "Microsoft.Compute/disks/beginGetAccess/action", ce.diskID("d"))
	_, err = c.CreateDisk(ctx, "mine", "restored", client.DiskSpec{Location: "local", Source: ce.snapshotID("s")}, true)
	wantDenied(t, err, "LinkedAuthorizationFailed", "Microsoft.Compute/snapshots/beginGetAccess/action", ce.snapshotID("s"))
	_, err = c.CreateSnapshot(ctx, "mine", "snap", client.SnapshotSpec{Location: "local", Source: ce.diskID("d")}, true)
	wantDenied(t, err, "LinkedAuthorizationFailed", "Microsoft.Compute/disks/beginGetAccess/action", ce.diskID("d"))
	for _, id := range []string{mine("disks", "copy"), mine("disks", "restored")} {
		if _, err := c.GetDisk(ctx, "mine", id[strings.LastIndex(id, "/")+1:]); client.AsError(err) == nil || client.AsError(err).StatusCode != http.StatusNotFound {
			t.Fatalf("refused copy left %s behind: %v", id, err)
		}
	}
	// With beginGetAccess on the sources the same requests succeed.
	if _, err := ce.c.CreateRoleAssignment(ctx, ce.groupID("rg"), identity.NewGUID(), rbac.RoleDiskSnapshotContributor, sp.PrincipalID, "ServicePrincipal"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDisk(ctx, "mine", "copy", client.DiskSpec{Location: "local", Source: ce.diskID("d")}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSnapshot(ctx, "mine", "snap", client.SnapshotSpec{Location: "local", Source: ce.diskID("d")}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDisk(ctx, "mine", "restored", client.DiskSpec{Location: "local", Source: ce.snapshotID("s")}, true); err != nil {
		t.Fatal(err)
	}
}
