package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/cli"
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
	// Every other verb on the SAS URL is refused too.
	for _, v := range []struct {
		method, comp string
		status       int
	}{{"PUT", "", 403}, {"PUT", "properties", 400}, {"PUT", "metadata", 400}, {"DELETE", "", 405}, {"POST", "", 405}, {"PATCH", "", 405}} {
		u, _ := url.Parse(r.AccessSAS)
		if v.comp != "" {
			q := u.Query()
			q.Set("comp", v.comp)
			u.RawQuery = q.Encode()
		}
		req, _ := http.NewRequestWithContext(ctx, v.method, u.String(), bytes.NewReader(make([]byte, 512)))
		req.Header.Set("x-ms-version", "2021-12-02")
		resp, err := ce.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != v.status {
			t.Fatalf("%s ?comp=%s through a Read grant: %d, want %d", v.method, v.comp, resp.StatusCode, v.status)
		}
	}
	if qemuIO, ok := testenv.HaveProgram(t, "qemu-io"); ok {
		for _, c := range []string{"write -P 0x99 0 4k", "write -z 0 64k", "discard 0 64k"} {
			fails(t, qemuIO, "-f", "raw", "-c", c, r.NBDURL)
		}
	}
	if nbdcopy, ok := testenv.HaveProgram(t, "nbdcopy"); ok {
		img, _ := writeImage(t, t.TempDir(), "img", part{n: 1 << 20, b: 0x99})
		fails(t, nbdcopy, img, r.NBDURL)
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

// tokenOf returns the grant token of an access URL (its sig parameter).
func tokenOf(t *testing.T, sas string) string {
	t.Helper()
	u, err := url.Parse(sas)
	if err != nil {
		t.Fatal(err)
	}
	tok := u.Query().Get("sig")
	if tok == "" {
		t.Fatalf("no token in %s", sas)
	}
	return tok
}

// storeHolds reports where the metadata store of dataDir holds s: in the
// raw bytes of the database and its write-ahead log, or in any value of any
// column of any table.
func storeHolds(t *testing.T, dataDir, s string) []string {
	t.Helper()
	var where []string
	for _, f := range []string{"metadata.db", "metadata.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dataDir, f))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			where = append(where, f)
		}
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "metadata.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if len(tables) == 0 {
		t.Fatal("no tables in metadata.db")
	}
	for _, tab := range tables {
		rows, err := db.Query(`SELECT * FROM "` + tab + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				var b []byte
				switch v := v.(type) {
				case []byte:
					b = v
				case string:
					b = []byte(v)
				}
				if bytes.Contains(b, []byte(s)) {
					where = append(where, tab+"."+cols[i])
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return where
}

// TestNoGrantTokenInStore is point 3 of the grants part of issue 11: after
// beginGetAccess (Write on a disk, Read on a snapshot) no row of
// metadata.db holds the grant token; the result read back still carries
// access URLs that work.
func TestNoGrantTokenInStore(t *testing.T) {
	ce := startCompute(t, Options{})
	ctx := ce.ctx
	ce.createDisk(t, "d", client.DiskSpec{SizeGB: 1})
	w := ce.grant(t, client.Disks, "d", "Write")
	ce.fill(t, w.AccessSAS, 0, 4096, 0x17)
	ce.snapshot(t, "s", "d")
	r := ce.grant(t, client.Snapshots, "s", "Read")
	for _, g := range []client.AccessURI{w, r} {
		tok := tokenOf(t, g.AccessSAS)
		if _, name := nbdAddrAndName(t, g.NBDURL); name != tok {
			t.Fatalf("NBD URL %s and SAS URL carry different tokens", g.NBDURL)
		}
		if where := storeHolds(t, ce.DataDir, tok); len(where) > 0 {
			t.Errorf("metadata store holds a live grant token in %v", where)
		}
		ce.expectBytes(t, g.AccessSAS, 0, 4096, 0x17)
	}
	// The result read again derives the same URLs.
	resp, err := ce.c.Do(ctx, http.MethodPost, ce.diskID("d")+"/beginGetAccess", client.ComputeVersion, nil,
		map[string]any{"access": "Read", "durationInSeconds": 600}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, err := ce.c.Wait(ctx, resp, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ce.c.Do(ctx, http.MethodGet, resp.Header.Get("Location"), "", nil, nil, nil)
	if err != nil || !bytes.Equal(again.Body, first) {
		t.Fatalf("result read again: %v\n%s\nwant\n%s", err, again.Body, first)
	}
}

// TestAccessResultReadBack: the result of a beginGetAccess holds the grant's
// token; a principal other than its creator may read it only if it could
// create the same grant itself (Disk Backup Reader cannot read an Owner's
// Write grant; Contributor can; nobody without beginGetAccess can).
func TestAccessResultReadBack(t *testing.T) {
	ce := startCompute(t, Options{})
	ctx := ce.ctx
	ce.createDisk(t, "d", client.DiskSpec{SizeGB: 1})
	disk := ce.diskID("d")
	resp, err := ce.c.Do(ctx, http.MethodPost, disk+"/beginGetAccess", client.ComputeVersion, nil,
		map[string]any{"access": "Write", "durationInSeconds": 600}, nil)
	if err != nil {
		t.Fatal(err)
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		t.Fatalf("beginGetAccess answered %d without a Location", resp.StatusCode)
	}
	_, reader := ce.principal(t, "backup-reader", rbac.RoleDiskBackupReader, disk)
	_, err = reader.Do(ctx, http.MethodGet, loc, "", nil, nil, nil)
	wantDenied(t, err, "AuthorizationFailed", "Microsoft.Compute/disks/write", disk)
	_, nobody := ce.principal(t, "reader", rbac.RoleReader, ce.groupID("rg"))
	_, err = nobody.Do(ctx, http.MethodGet, loc, "", nil, nil, nil)
	wantDenied(t, err, "AuthorizationFailed", "Microsoft.Compute/disks/beginGetAccess/action", disk)
	_, contrib := ce.principal(t, "contributor", rbac.RoleContributor, ce.groupID("rg"))
	got, err := contrib.Do(ctx, http.MethodGet, loc, "", nil, nil, nil)
	if err != nil {
		t.Fatalf("Contributor cannot read the result: %v", err)
	}
	var a client.AccessURI
	if err := json.Unmarshal(got.Body, &a); err != nil || !strings.Contains(a.AccessSAS, "sp=rw") {
		t.Fatalf("result: %v %s", err, got.Body)
	}
	ce.fill(t, a.AccessSAS, 0, 4096, 0x33)
}

// nbdOpen opens an NBD connection on the export of an NBD URL.
func nbdOpen(t *testing.T, nbdURL string) *nbdtest.Client {
	t.Helper()
	addr, name := nbdAddrAndName(t, nbdURL)
	nc, err := nbdtest.Dial(context.Background(), addr, name, nbdtest.Options{Structured: true})
	if err != nil {
		t.Fatalf("NBD connection to a live grant: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// wantEPERM checks an NBD request refused with EPERM.
func wantEPERM(t *testing.T, what string, err error) {
	t.Helper()
	var ne *nbdtest.Error
	if !errors.As(err, &ne) || ne.Errno != nbdtest.EPERM {
		t.Fatalf("%s: %v, want EPERM", what, err)
	}
}

// TestGrantDiesWithCreator is point 2 of the grants part of issue 11:
// deleting a principal ends its grants at once (an NBD connection opened
// before is refused on its next request, SAS requests and new connections
// are refused, the disk no longer lists them), except a grant made with
// outlivesCreator, which keeps working.
func TestGrantDiesWithCreator(t *testing.T) {
	ce := startCompute(t, Options{})
	ctx := ce.ctx
	ce.createDisk(t, "d", client.DiskSpec{SizeGB: 1})
	ce.createDisk(t, "d2", client.DiskSpec{SizeGB: 1})
	op, c := ce.principal(t, "operator", rbac.RoleContributor, ce.groupID("rg"))
	w, err := c.GrantAccess(ctx, client.Disks, "rg", "d", "Write", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GrantAccess(ctx, client.Disks, "rg", "d2", "Read", time.Hour); err != nil {
		t.Fatal(err)
	}
	kept, err := c.Grant(ctx, client.Disks, "rg", "d", client.AccessSpec{Access: "Write", Duration: time.Hour, OutlivesCreator: true})
	if err != nil {
		t.Fatal(err)
	}
	nc := nbdOpen(t, w.NBDURL)
	if _, err := nc.WriteAt(bytes.Repeat([]byte{1}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := ce.c.DeletePrincipal(ctx, op.PrincipalID); err != nil {
		t.Fatal(err)
	}

	_, err = nc.WriteAt(bytes.Repeat([]byte{2}, 4096), 0)
	wantEPERM(t, "write on a connection opened before the creator was deleted", err)
	_, err = nc.ReadAt(make([]byte, 4096), 0)
	wantEPERM(t, "read on a connection opened before the creator was deleted", err)
	// Requests over 64 KiB take the sparse read and the multi-block write
	// paths, which check the grant as well.
	_, err = nc.ReadAt(make([]byte, 1<<20), 0)
	wantEPERM(t, "1 MiB read on a connection opened before the creator was deleted", err)
	_, err = nc.WriteAt(bytes.Repeat([]byte{3}, 1<<20), 1<<20)
	wantEPERM(t, "1 MiB write on a connection opened before the creator was deleted", err)
	wantCode(t, ce.c.PutPages(ctx, w.AccessSAS, 0, make([]byte, 4096)), http.StatusForbidden, "AuthenticationFailed")
	_, err = ce.c.DataSize(ctx, w.AccessSAS)
	wantCode(t, err, http.StatusForbidden, "AuthenticationFailed")
	addr, name := nbdAddrAndName(t, w.NBDURL)
	if c, err := nbdtest.Dial(ctx, addr, name, nbdtest.Options{}); err == nil {
		c.Close()
		t.Fatal("a new NBD connection to a dead grant was accepted")
	}
	if d, err := ce.c.GetDisk(ctx, "rg", "d2"); err != nil || d.Properties.DiskState != "Unattached" {
		t.Fatalf("a disk whose only grant was the deleted principal's: %v %s", err, d.Properties.DiskState)
	}

	// The grant made to outlive its creator still writes, over SAS and NBD.
	ce.fill(t, kept.AccessSAS, 0, 4096, 3)
	kc := nbdOpen(t, kept.NBDURL)
	if _, err := kc.WriteAt(bytes.Repeat([]byte{4}, 4096), 4096); err != nil {
		t.Fatalf("write through a grant that outlives its creator: %v", err)
	}
	ce.expectBytes(t, kept.AccessSAS, 0, 4096, 3)
	ce.expectBytes(t, kept.AccessSAS, 4096, 4096, 4)
	if err := ce.c.RevokeAccess(ctx, client.Disks, "rg", "d"); err != nil {
		t.Fatal(err)
	}
	if d, err := ce.c.GetDisk(ctx, "rg", "d"); err != nil || d.Properties.DiskState != "Unattached" {
		t.Fatalf("disk after endGetAccess: %v %s", err, d.Properties.DiskState)
	}
}

// TestWriteGrantFollowsCreatorRoles: a Write grant writes only while its
// creator may write the disk. Removing the creator's Contributor assignment
// stops writes at once on an open NBD connection and over SAS (reads go on:
// it keeps Disk Backup Reader), a new connection exports read-only (nbdinfo),
// and assigning the role again lets the same grant write again.
func TestWriteGrantFollowsCreatorRoles(t *testing.T) {
	ce := startCompute(t, Options{})
	ctx := ce.ctx
	ce.createDisk(t, "d", client.DiskSpec{SizeGB: 1})
	op, c := ce.principal(t, "operator", rbac.RoleDiskBackupReader, ce.diskID("d"))
	contrib, err := ce.c.CreateRoleAssignment(ctx, ce.groupID("rg"), identity.NewGUID(), rbac.RoleContributor, op.PrincipalID, "ServicePrincipal")
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.GrantAccess(ctx, client.Disks, "rg", "d", "Write", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nc := nbdOpen(t, w.NBDURL)
	if _, err := nc.WriteAt(bytes.Repeat([]byte{1}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := ce.c.DeleteRoleAssignment(ctx, contrib.ID); err != nil {
		t.Fatal(err)
	}
	_, err = nc.WriteAt(bytes.Repeat([]byte{2}, 4096), 0)
	wantEPERM(t, "write after the creator lost disks/write", err)
	_, err = nc.Do(nbdtest.CmdWriteZeroes, 0, 0, 4096, nil)
	wantEPERM(t, "write zeroes after the creator lost disks/write", err)
	wantCode(t, ce.c.PutPages(ctx, w.AccessSAS, 0, make([]byte, 4096)), http.StatusForbidden, "AuthenticationFailed")
	wantCode(t, ce.c.ClearPages(ctx, w.AccessSAS, 0, 4096), http.StatusForbidden, "AuthenticationFailed")
	ce.expectBytes(t, w.AccessSAS, 0, 4096, 1)
	if _, err := nc.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatalf("read after the creator lost only disks/write: %v", err)
	}
	if nbdinfo, ok := testenv.HaveProgram(t, "nbdinfo"); ok {
		run(t, nbdinfo, "--size", w.NBDURL) // the export opens, read-only
		fails(t, nbdinfo, "--can", "write", w.NBDURL)
	}

	if _, err := ce.c.CreateRoleAssignment(ctx, ce.groupID("rg"), identity.NewGUID(), rbac.RoleContributor, op.PrincipalID, "ServicePrincipal"); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.WriteAt(bytes.Repeat([]byte{5}, 4096), 0); err != nil {
		t.Fatalf("write after the role came back: %v", err)
	}
	ce.expectBytes(t, w.AccessSAS, 0, 4096, 5)
}

// cli sets the environment for the coffer CLI to reach ce as its admin and
// returns a runner of coffer commands (in-process) that fails the test on a
// non-zero exit and returns stdout and stderr.
func (ce *computeEnv) cli(t *testing.T) func(args ...string) (string, string) {
	t.Helper()
	t.Setenv("COFFER_CONFIG", filepath.Join(t.TempDir(), "none.json"))
	t.Setenv("COFFER_ENDPOINT", ce.Endpoint)
	t.Setenv("COFFER_TOKEN", ce.Admin.Token)
	t.Setenv("COFFER_SUBSCRIPTION", ce.Admin.SubscriptionID)
	return func(args ...string) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := cli.Main(context.Background(), args, &cli.Env{Stdout: &out, Stderr: &errb}); code != 0 {
			t.Fatalf("coffer %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}
}

// image writes a file made of the given parts in order: n bytes of b, or a
// hole of n bytes when hole is set; it returns its path and SHA-256.
type part struct {
	n    int64
	b    byte
	hole bool
}

func writeImage(t *testing.T, dir, name string, parts ...part) (string, string) {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	var off int64
	for _, pt := range parts {
		b := bytes.Repeat([]byte{pt.b}, int(min(pt.n, 1<<20)))
		if pt.hole {
			clear(b)
		}
		for pos := off; pos < off+pt.n; pos += int64(len(b)) {
			piece := b[:min(int64(len(b)), off+pt.n-pos)]
			if !pt.hole {
				if _, err := f.WriteAt(piece, pos); err != nil {
					t.Fatal(err)
				}
			}
			h.Write(piece)
		}
		off += pt.n
	}
	if err := f.Truncate(off); err != nil {
		t.Fatal(err)
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

// summary is the last line of a transfer's output.
func summary(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	return lines[len(lines)-1]
}

// TestUploadOverExistingDisk is defect 2 of issue 11: uploading onto a disk
// that holds data leaves none of it behind. 8 MiB of 0xFF, then 8 MiB of
// zero bytes, then a mixed image (data, zero bytes, holes) are uploaded over
// one another; each time the disk downloads as the image, by SHA-256, and
// the summary says truthfully what was written and what zeroed.
func TestUploadOverExistingDisk(t *testing.T) {
	ce := startCompute(t, Options{})
	coffer := ce.cli(t)
	dir := t.TempDir()
	const mb = 1 << 20
	ff, ffSum := writeImage(t, dir, "ff.img", part{n: 8 * mb, b: 0xff})
	zeros, zerosSum := writeImage(t, dir, "zeros.img", part{n: 8 * mb, b: 0})
	mixed, mixedSum := writeImage(t, dir, "mixed.img",
		part{n: mb, b: 0x21}, part{n: 2 * mb, b: 0}, part{n: 512 << 10, b: 0x22}, part{n: 2 * mb, hole: true},
		part{n: 64 << 10, b: 0}, part{n: 64 << 10, b: 0x23}, part{n: 2*mb - 128<<10, hole: true}, part{n: 512 << 10, b: 0x24})
	back := filepath.Join(dir, "back.img")
	check := func(want string) {
		t.Helper()
		coffer("disk", "download", "-g", "rg", "-n", "d", back)
		if got := fileHash(t, back); got != want {
			t.Fatalf("the disk downloads as %s, want the image's %s", got, want)
		}
	}

	_, out := coffer("disk", "upload", "-g", "rg", "-n", "d", ff)
	if s := summary(out); !strings.HasPrefix(s, "Uploaded 8.0 MiB of data in ") {
		t.Fatalf("first upload: %q", s)
	}
	check(ffSum)
	_, out = coffer("disk", "upload", "-g", "rg", "-n", "d", zeros)
	if s := summary(out); !strings.HasPrefix(s, "Uploaded 0.0 MiB of data and zeroed 8.0 MiB in ") {
		t.Fatalf("zeros over 0xFF: %q", s)
	}
	check(zerosSum)
	// Flags after the FILE argument are parsed too.
	coffer("disk", "upload", ff, "-g", "rg", "-n", "d")
	check(ffSum)
	_, out = coffer("disk", "upload", "-g", "rg", "-n", "d", mixed)
	// Data: 1 MiB + 512 KiB + 64 KiB + 512 KiB; the rest held 0xFF.
	if s := summary(out); !strings.HasPrefix(s, "Uploaded 2.1 MiB of data and zeroed 5.9 MiB in ") {
		t.Fatalf("mixed over 0xFF: %q", s)
	}
	check(mixedSum)
	if d, err := ce.c.GetDisk(ce.ctx, "rg", "d"); err != nil || d.Properties.DiskState != "Unattached" {
		t.Fatalf("disk after the uploads: %v %s", err, d.Properties.DiskState)
	}
}

// TestUploadSmallerImage: an image smaller than the disk it is uploaded to
// leaves the disk reading as the image followed by zeros (the tail is
// cleared, not refused), and the command says so.
func TestUploadSmallerImage(t *testing.T) {
	ce := startCompute(t, Options{})
	coffer := ce.cli(t)
	dir := t.TempDir()
	const mb = 1 << 20
	const size = 64 * mb
	ce.createDisk(t, "big", client.DiskSpec{UploadSizeBytes: size})
	w := ce.grant(t, client.Disks, "big", "Write")
	ce.fill(t, w.AccessSAS, 0, 16*mb, 0xee)
	ce.fill(t, w.AccessSAS, size-4*mb, 4*mb, 0xee)
	if err := ce.c.RevokeGrant(ce.ctx, client.Disks, "rg", "big", w.GrantID); err != nil {
		t.Fatal(err)
	}
	img, _ := writeImage(t, dir, "small.img", part{n: 4*mb + 1000, b: 0x11})
	_, want := writeImage(t, dir, "want.img", part{n: 4*mb + 1000, b: 0x11}, part{n: size - 4*mb - 1000, hole: true})
	_, out := coffer("disk", "upload", "-g", "rg", "-n", "big", img)
	if !strings.Contains(out, "smaller than disk big") {
		t.Fatalf("no word about the tail: %q", out)
	}
	if s := summary(out); !strings.HasPrefix(s, "Uploaded 4.0 MiB of data and zeroed 16.0 MiB in ") {
		t.Fatalf("summary: %q", s)
	}
	back := filepath.Join(dir, "back.img")
	coffer("disk", "download", "-g", "rg", "-n", "big", back)
	if got := fileHash(t, back); got != want {
		t.Fatalf("the disk downloads as %s, want the image and zeros, %s", got, want)
	}
	// An image larger than the disk is refused before anything is written.
	large := filepath.Join(dir, "large.img")
	if err := os.WriteFile(large, nil, 0o600); err != nil || os.Truncate(large, size+512) != nil {
		t.Fatal("cannot make a sparse image")
	}
	var errb bytes.Buffer
	if code := cli.Main(ce.ctx, []string{"disk", "upload", "-g", "rg", "-n", "big", large}, &cli.Env{Stdout: io.Discard, Stderr: &errb}); code == 0 ||
		!strings.Contains(errb.String(), "more than disk big") {
		t.Fatalf("larger image: exit %d: %s", code, errb.String())
	}
}

// TestTransfersKeepOtherGrants is the rest of defect 2: upload and download
// end their own grant only. An NBD URL handed out before still works after
// them (nbdinfo, qemu-io), and once it is ended the disk is Unattached, so
// the transfers' grants are gone. An upload to a disk awaiting one
// (ReadyToUpload) still ends the upload.
func TestTransfersKeepOtherGrants(t *testing.T) {
	nbdinfo := testenv.NeedProgram(t, "nbdinfo")
	qemuIO := testenv.NeedProgram(t, "qemu-io")
	ce := startCompute(t, Options{})
	coffer := ce.cli(t)
	dir := t.TempDir()
	img, sum := writeImage(t, dir, "img", part{n: 1 << 20, b: 0x61}, part{n: 1 << 20, hole: true}, part{n: 1 << 20, b: 0x62})
	ce.createDisk(t, "d", client.DiskSpec{SizeGB: 1})
	before := ce.grant(t, client.Disks, "d", "Read")

	coffer("disk", "upload", "-g", "rg", "-n", "d", img)
	run(t, nbdinfo, "--size", before.NBDURL)
	run(t, qemuIO, "-r", "-f", "raw", "-c", "read -P 0x61 0 1M", before.NBDURL)
	back := filepath.Join(dir, "back.img")
	coffer("disk", "download", "-g", "rg", "-n", "d", back)
	run(t, qemuIO, "-r", "-f", "raw", "-c", "read -P 0x62 2M 1M", before.NBDURL)
	if d, err := ce.c.GetDisk(ce.ctx, "rg", "d"); err != nil || d.Properties.DiskState != "ActiveSAS" {
		t.Fatalf("disk after the transfers: %v %s", err, d.Properties.DiskState)
	}
	if err := ce.c.RevokeGrant(ce.ctx, client.Disks, "rg", "d", before.GrantID); err != nil {
		t.Fatal(err)
	}
	if d, err := ce.c.GetDisk(ce.ctx, "rg", "d"); err != nil || d.Properties.DiskState != "Unattached" {
		t.Fatalf("the transfers left a grant behind: %v %s", err, d.Properties.DiskState)
	}
	fails(t, nbdinfo, "--size", before.NBDURL)

	ce.createDisk(t, "up", client.DiskSpec{UploadSizeBytes: 3 << 20})
	coffer("disk", "upload", "-g", "rg", "-n", "up", img)
	if d, err := ce.c.GetDisk(ce.ctx, "rg", "up"); err != nil || d.Properties.DiskState != "Unattached" {
		t.Fatalf("upload disk after the upload: %v %s", err, d.Properties.DiskState)
	}
	coffer("disk", "download", "-g", "rg", "-n", "up", back)
	if got := fileHash(t, back); got != sum {
		t.Fatalf("upload disk downloads as %s, want %s", got, sum)
	}
}

// TestRevokeOneGrant: endGetAccess with {"grantId"} ends that grant alone,
// is authorized as endGetAccess, refuses a malformed ID and a grant of
// another disk (404, leaving it working), and ends an upload only with its
// last unexpired Write grant.
func TestRevokeOneGrant(t *testing.T) {
	ce := startCompute(t, Options{})
	ctx := ce.ctx
	ce.createDisk(t, "a", client.DiskSpec{SizeGB: 1})
	ce.createDisk(t, "b", client.DiskSpec{SizeGB: 1})
	a1, a2 := ce.grant(t, client.Disks, "a", "Read"), ce.grant(t, client.Disks, "a", "Write")
	b1 := ce.grant(t, client.Disks, "b", "Read")

	_, reader := ce.principal(t, "backup-reader", rbac.RoleDiskBackupReader, ce.diskID("a"))
	wantDenied(t, reader.RevokeGrant(ctx, client.Disks, "rg", "a", a1.GrantID), "AuthorizationFailed",
		"Microsoft.Compute/disks/endGetAccess/action", ce.diskID("a"))
	e := client.AsError(ce.c.RevokeGrant(ctx, client.Disks, "rg", "a", "not-a-guid"))
	if e == nil || e.StatusCode != http.StatusBadRequest || e.Code != "InvalidParameter" || e.Target != "grantId" {
		t.Fatalf("malformed grant ID: %v", e)
	}
	wantCode(t, ce.c.RevokeGrant(ctx, client.Disks, "rg", "a", b1.GrantID), http.StatusNotFound, "GrantNotFound")
	if _, err := ce.c.DataSize(ctx, b1.AccessSAS); err != nil {
		t.Fatalf("a grant of another disk was touched: %v", err)
	}

	if err := ce.c.RevokeGrant(ctx, client.Disks, "rg", "a", a1.GrantID); err != nil {
		t.Fatal(err)
	}
	_, err := ce.c.DataSize(ctx, a1.AccessSAS)
	wantCode(t, err, http.StatusForbidden, "AuthenticationFailed")
	ce.fill(t, a2.AccessSAS, 0, 4096, 9)
	wantCode(t, ce.c.RevokeGrant(ctx, client.Disks, "rg", "a", a1.GrantID), http.StatusNotFound, "GrantNotFound")

	ce.createDisk(t, "up", client.DiskSpec{UploadSizeBytes: 1 << 20})
	u1, u2 := ce.grant(t, client.Disks, "up", "Write"), ce.grant(t, client.Disks, "up", "Write")
	if err := ce.c.RevokeGrant(ctx, client.Disks, "rg", "up", u1.GrantID); err != nil {
		t.Fatal(err)
	}
	if d, _ := ce.c.GetDisk(ctx, "rg", "up"); d.Properties.DiskState != "ActiveUpload" {
		t.Fatalf("upload disk with a Write grant left: %s", d.Properties.DiskState)
	}
	ce.fill(t, u2.AccessSAS, 0, 4096, 7)
	if err := ce.c.RevokeGrant(ctx, client.Disks, "rg", "up", u2.GrantID); err != nil {
		t.Fatal(err)
	}
	if d, _ := ce.c.GetDisk(ctx, "rg", "up"); d.Properties.DiskState != "Unattached" {
		t.Fatalf("upload disk after its last Write grant ended: %s", d.Properties.DiskState)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent logging.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestNoTokenLeaks: grant tokens appear neither in the server's debug log
// (through grants, data requests, refusals, revocations and NBD sessions,
// accepted and refused) nor in an NBD export listing (nbdinfo --list, and
// NBD_OPT_LIST from the in-repo client, which is refused by policy).
func TestNoTokenLeaks(t *testing.T) {
	var log syncBuffer
	ce := startCompute(t, Options{Log: &log})
	ctx := ce.ctx
	ce.createDisk(t, "d", client.DiskSpec{SizeGB: 1})
	w := ce.grant(t, client.Disks, "d", "Write")
	r := ce.grant(t, client.Disks, "d", "Read")
	ce.fill(t, w.AccessSAS, 0, 1<<20, 0x44)
	ce.expectBytes(t, r.AccessSAS, 0, 4096, 0x44)
	wantCode(t, ce.c.PutPages(ctx, r.AccessSAS, 0, make([]byte, 512)), http.StatusForbidden, "AuthorizationPermissionMismatch")
	nc := nbdOpen(t, w.NBDURL)
	if _, err := nc.WriteAt(bytes.Repeat([]byte{0x45}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	addr, name := nbdAddrAndName(t, r.NBDURL)
	forged := []byte(name)
	forged[len(forged)-3] ^= 1
	if c, err := nbdtest.Dial(ctx, addr, string(forged), nbdtest.Options{}); err == nil {
		c.Close()
		t.Fatal("a forged export name was accepted")
	}
	lc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw := nbdtest.NewClient(lc)
	if err := raw.Greet(); err != nil {
		t.Fatal(err)
	}
	_, err = raw.Option(nbdtest.OptList, nil)
	var oe *nbdtest.OptionError
	if !errors.As(err, &oe) || oe.Reply != nbdtest.RepErrPolicy {
		t.Fatalf("NBD_OPT_LIST: %v, want NBD_REP_ERR_POLICY", err)
	}
	lc.Close()
	if nbdinfo, ok := testenv.HaveProgram(t, "nbdinfo"); ok {
		out, _ := exec.Command(nbdinfo, "--list", "nbd://"+addr).CombinedOutput()
		for _, g := range []client.AccessURI{w, r} {
			if strings.Contains(string(out), tokenOf(t, g.AccessSAS)) {
				t.Fatalf("nbdinfo --list shows a grant token:\n%s", out)
			}
		}
	}
	if err := ce.c.RevokeGrant(ctx, client.Disks, "rg", "d", r.GrantID); err != nil {
		t.Fatal(err)
	}
	_, err = ce.c.DataSize(ctx, r.AccessSAS)
	wantCode(t, err, http.StatusForbidden, "AuthenticationFailed")
	if c, err := nbdtest.Dial(ctx, addr, name, nbdtest.Options{}); err == nil {
		c.Close()
		t.Fatal("a revoked export name was accepted")
	}
	nc.Close()
	ce.Stop()

	text := log.String()
	if !strings.Contains(text, "level=DEBUG") {
		t.Fatalf("the server's debug log was not captured:\n%s", text)
	}
	for _, tok := range []string{tokenOf(t, w.AccessSAS), tokenOf(t, r.AccessSAS), string(forged)} {
		if strings.Contains(text, tok) {
			t.Errorf("the server's log holds a grant token:\n%s", text)
		}
	}
}

// TestGrantsAcrossSubscriptions: a principal that owns another subscription
// reaches nothing of this one's grants: not the beginGetAccess result (403
// on its path, 404 under its own subscription), not the grant itself by ID
// (404 on its own disk, the grant untouched), not the bytes through a SAS
// URL naming its own disk, and not a copy of the disk.
func TestGrantsAcrossSubscriptions(t *testing.T) {
	ce := startCompute(t, Options{})
	ctx := ce.ctx
	alias, err := ce.c.CreateSubscription(ctx, "team-b", "Team B", "")
	if err != nil {
		t.Fatal(err)
	}
	subB := alias.Properties.SubscriptionID
	ce.createDisk(t, "da", client.DiskSpec{SizeGB: 1})
	_, cb := ce.principal(t, "owner-b", rbac.RoleOwner, "/subscriptions/"+subB)
	cb.Subscription = subB
	if _, err := cb.CreateGroup(ctx, "rg", "local", nil); err != nil {
		t.Fatal(err)
	}
	db, err := cb.CreateDisk(ctx, "rg", "db", client.DiskSpec{Location: "local", SizeGB: 1}, true)
	if err != nil {
		t.Fatal(err)
	}

	resp, err := ce.c.Do(ctx, http.MethodPost, ce.diskID("da")+"/beginGetAccess", client.ComputeVersion, nil,
		map[string]any{"access": "Write", "durationInSeconds": 600}, nil)
	if err != nil {
		t.Fatal(err)
	}
	loc := resp.Header.Get("Location")
	a, err := ce.c.Wait(ctx, resp, nil)
	if err != nil {
		t.Fatal(err)
	}
	var g client.AccessURI
	if err := json.Unmarshal(a, &g); err != nil {
		t.Fatal(err)
	}
	_, err = cb.Do(ctx, http.MethodGet, loc, "", nil, nil, nil)
	wantDenied(t, err, "AuthorizationFailed", "Microsoft.Compute/disks/beginGetAccess/action", ce.diskID("da"))
	_, err = cb.Do(ctx, http.MethodGet, strings.Replace(loc, ce.Admin.SubscriptionID, subB, 1), "", nil, nil, nil)
	wantCode(t, err, http.StatusNotFound, "OperationNotFound")

	wantCode(t, cb.RevokeGrant(ctx, client.Disks, "rg", "db", g.GrantID), http.StatusNotFound, "GrantNotFound")
	ce.fill(t, g.AccessSAS, 0, 4096, 0x66)

	u, err := url.Parse(g.AccessSAS)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/_data/disks/" + db.Properties.UniqueID // this grant's token, the other subscription's disk
	_, err = ce.c.DataSize(ctx, u.String())
	wantCode(t, err, http.StatusForbidden, "AuthenticationFailed")

	_, err = cb.CreateDisk(ctx, "rg", "copy", client.DiskSpec{Location: "local", Source: ce.diskID("da")}, true)
	wantDenied(t, err, "LinkedAuthorizationFailed", "Microsoft.Compute/disks/beginGetAccess/action", ce.diskID("da"))
}

// TestDiffNeedsTwoLiveSnapshotGrants: a page-list diff reads two snapshots,
// so both URLs must be live snapshot grants: a revoked earlier grant, or
// one whose creator was deleted, is refused (403), a disk grant is a 400.
func TestDiffNeedsTwoLiveSnapshotGrants(t *testing.T) {
	ce := startCompute(t, Options{})
	ctx := ce.ctx
	ce.createDisk(t, "d", client.DiskSpec{SizeGB: 1})
	ce.snapshot(t, "s1", "d")
	w := ce.grant(t, client.Disks, "d", "Write")
	ce.fill(t, w.AccessSAS, 0, 1<<20, 0x71)
	ce.snapshot(t, "s2", "d")
	g2 := ce.grant(t, client.Snapshots, "s2", "Read")
	op, c := ce.principal(t, "operator", rbac.RoleDiskSnapshotContributor, ce.groupID("rg"))
	g1, err := c.GrantAccess(ctx, client.Snapshots, "rg", "s1", "Read", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if diff, _, err := ce.c.PageRanges(ctx, g2.AccessSAS, g1.AccessSAS); err != nil || len(diff) == 0 {
		t.Fatalf("diff of two live grants: %v %v", diff, err)
	}
	_, _, err = ce.c.PageRanges(ctx, g2.AccessSAS, w.AccessSAS)
	wantCode(t, err, http.StatusBadRequest, "InvalidHeaderValue")
	if err := ce.c.DeletePrincipal(ctx, op.PrincipalID); err != nil {
		t.Fatal(err)
	}
	_, _, err = ce.c.PageRanges(ctx, g2.AccessSAS, g1.AccessSAS)
	wantCode(t, err, http.StatusForbidden, "AuthenticationFailed")
	g1, err = ce.c.GrantAccess(ctx, client.Snapshots, "rg", "s1", "Read", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ce.c.RevokeGrant(ctx, client.Snapshots, "rg", "s1", g1.GrantID); err != nil {
		t.Fatal(err)
	}
	_, _, err = ce.c.PageRanges(ctx, g2.AccessSAS, g1.AccessSAS)
	wantCode(t, err, http.StatusForbidden, "AuthenticationFailed")
}
