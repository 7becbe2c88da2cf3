package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/identity"
	"coffer/internal/nbd/nbdtest"
	"coffer/internal/rbac"
	"coffer/internal/testenv"
)

func nbdAddrAndName(t *testing.T, nbdURL string) (string, string) {
	t.Helper()
	u, err := url.Parse(nbdURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host, strings.TrimPrefix(u.Path, "/")
}

func wantCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	e := client.AsError(err)
	if e == nil || e.StatusCode != status || e.Code != code {
		t.Fatalf("got %v, want %d %s", err, status, code)
	}
}

// TestComputeAccessAuthorization: a principal without beginGetAccess on a
// disk (none, or only Reader) gets no grant; Disk Backup Reader does; a read
// grant cannot write over NBD or HTTP; revoked and expired grants are
// refused over HTTP and NBD, including on a connection opened before.
func TestComputeAccessAuthorization(t *testing.T) {
	nbdinfo := testenv.NeedProgram(t, "nbdinfo")
	qemuIO := testenv.NeedProgram(t, "qemu-io")
	ce := startCompute(t, Options{})
	ctx := ce.ctx
	ce.createDisk(t, "d", client.DiskSpec{SizeGB: 1})
	w := ce.grant(t, client.Disks, "d", "Write")
	run(t, qemuIO, "-f", "raw", "-c", "write -P 0x42 0 1M", w.NBDURL)
	if err := ce.c.RevokeAccess(ctx, client.Disks, "rg", "d"); err != nil {
		t.Fatal(err)
	}

	sp, err := ce.c.CreateServicePrincipal(ctx, "operator")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ce.c.ClientCredentials(ctx, ce.Admin.TenantID, sp.ClientID, sp.ClientSecret)
	if err != nil {
		t.Fatal(err)
	}
	op := ce.Client(tok)
	_, err = op.GrantAccess(ctx, client.Disks, "rg", "d", "Read", time.Hour)
	wantCode(t, err, http.StatusForbidden, "AuthorizationFailed")
	_, err = op.GetDisk(ctx, "rg", "d")
	wantCode(t, err, http.StatusForbidden, "AuthorizationFailed")
	scope := "/subscriptions/" + ce.Admin.SubscriptionID + "/resourceGroups/rg"
	if _, err := ce.c.CreateRoleAssignment(ctx, scope, identity.NewGUID(), rbac.RoleReader, sp.PrincipalID, "ServicePrincipal"); err != nil {
		t.Fatal(err)
	}
	if _, err := op.GetDisk(ctx, "rg", "d"); err != nil {
		t.Fatalf("reader cannot read: %v", err)
	}
	_, err = op.GrantAccess(ctx, client.Disks, "rg", "d", "Read", time.Hour)
	wantCode(t, err, http.StatusForbidden, "AuthorizationFailed")
	_, err = op.CreateSnapshot(ctx, "rg", "s", client.SnapshotSpec{Location: "local", Source: ce.diskID("d"), Incremental: true}, true)
	wantCode(t, err, http.StatusForbidden, "AuthorizationFailed")
	if _, err := ce.c.CreateRoleAssignment(ctx, ce.diskID("d"), identity.NewGUID(), rbac.RoleDiskBackupReader, sp.PrincipalID, "ServicePrincipal"); err != nil {
		t.Fatal(err)
	}
	r, err := op.GrantAccess(ctx, client.Disks, "rg", "d", "Read", time.Hour)
	if err != nil {
		t.Fatalf("Disk Backup Reader cannot get a grant: %v", err)
	}

	// A read grant: NBD read-only, HTTP writes refused, reads fine.
	fails(t, nbdinfo, "--can", "write", r.NBDURL)
	out := fails(t, qemuIO, "-f", "raw", "-c", "write -P 0x99 0 4k", r.NBDURL)
	if !strings.Contains(out, "ermission") && !strings.Contains(out, "read-only") && !strings.Contains(out, "read only") {
		t.Logf("qemu-io write on a read grant: %s", out)
	}
	err = ce.c.PutPages(ctx, r.AccessSAS, 0, make([]byte, 512))
	wantCode(t, err, http.StatusForbidden, "AuthorizationPermissionMismatch")
	b, err := ce.c.ReadRange(ctx, r.AccessSAS, 0, 4096)
	if err != nil || !bytes.Equal(b, bytes.Repeat([]byte{0x42}, 4096)) {
		t.Fatalf("read through the read grant: %v", err)
	}

	// Revocation: a connection opened before is refused on its next request;
	// new connections and HTTP requests are refused.
	addr, name := nbdAddrAndName(t, r.NBDURL)
	nc, err := nbdtest.Dial(ctx, addr, name, nbdtest.Options{Structured: true})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	buf := make([]byte, 4096)
	if _, err := nc.ReadAt(buf, 0); err != nil {
		t.Fatalf("read before revoke: %v", err)
	}
	// Disk Backup Reader has beginGetAccess but not endGetAccess, as in Azure.
	wantCode(t, op.RevokeAccess(ctx, client.Disks, "rg", "d"), http.StatusForbidden, "AuthorizationFailed")
	if err := ce.c.RevokeAccess(ctx, client.Disks, "rg", "d"); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.ReadAt(buf, 0); err == nil {
		t.Fatal("read on an open connection after revoke succeeded")
	}
	fails(t, nbdinfo, "--size", r.NBDURL)
	_, err = ce.c.ReadRange(ctx, r.AccessSAS, 0, 512)
	wantCode(t, err, http.StatusForbidden, "AuthenticationFailed")

	// Expiry: a one-second grant stops working by itself.
	short, err := ce.c.GrantAccess(ctx, client.Disks, "rg", "d", "Read", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := ce.c.DataSize(ctx, short.AccessSAS)
		if e := client.AsError(err); e != nil && e.Code == "AuthenticationFailed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grant did not expire: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fails(t, nbdinfo, "--size", short.NBDURL)
	if d, _ := ce.c.GetDisk(ctx, "rg", "d"); d.Properties.DiskState != "Unattached" {
		t.Fatalf("state after expiry %s", d.Properties.DiskState)
	}

	// A forged token (valid shape, wrong signature) is refused.
	forged := []byte(name)
	forged[len(forged)-2] ^= 1
	fails(t, nbdinfo, "--size", "nbd://"+addr+"/"+string(forged))
	sasURL, _ := url.Parse(r.AccessSAS)
	q := sasURL.Query()
	q.Set("sig", string(forged))
	sasURL.RawQuery = q.Encode()
	_, err = ce.c.DataSize(ctx, sasURL.String())
	wantCode(t, err, http.StatusForbidden, "AuthenticationFailed")
}

// TestComputeBadInput: refused requests leave the disk unchanged.
func TestComputeBadInput(t *testing.T) {
	ce := startCompute(t, Options{})
	ctx := ce.ctx
	c := ce.c
	// ARM validation.
	_, err := c.CreateDisk(ctx, "rg", "nosize", client.DiskSpec{Location: "local"}, true)
	wantCode(t, err, http.StatusBadRequest, "InvalidParameter")
	_, err = c.CreateDisk(ctx, "rg", "far", client.DiskSpec{Location: "mars", SizeGB: 1}, true)
	wantCode(t, err, http.StatusBadRequest, "LocationNotAvailableForResourceType")
	_, err = c.CreateDisk(ctx, "rg", "bad-sku", client.DiskSpec{Location: "local", SizeGB: 1, SKU: "Gold_LRS"}, true)
	wantCode(t, err, http.StatusBadRequest, "InvalidParameter")
	_, err = c.CreateDisk(ctx, "rg", "odd", client.DiskSpec{Location: "local", UploadSizeBytes: 1000}, true)
	wantCode(t, err, http.StatusBadRequest, "InvalidParameter")
	_, err = c.CreateDisk(ctx, "rg", "bad.name.", client.DiskSpec{Location: "local", SizeGB: 1}, true)
	wantCode(t, err, http.StatusBadRequest, "InvalidResourceName")
	_, err = c.CreateDisk(ctx, "rg", "nosrc", client.DiskSpec{Location: "local", CreateOption: "Copy", Source: ce.diskID("missing")}, true)
	wantCode(t, err, http.StatusNotFound, "ResourceNotFound")
	_, err = c.CreateSnapshot(ctx, "rg", "s", client.SnapshotSpec{Location: "local", Source: ce.diskID("missing"), Incremental: true}, true)
	wantCode(t, err, http.StatusNotFound, "ResourceNotFound")
	_, err = c.CreateSnapshot(ctx, "rg", "s", client.SnapshotSpec{Location: "local", Incremental: true,
		Source: "/subscriptions/" + identity.NewGUID() + "/resourceGroups/rg/providers/Microsoft.Compute/disks/x"}, true)
	if e := client.AsError(err); e == nil || e.StatusCode/100 != 4 {
		t.Fatalf("snapshot of a disk in another subscription: %v", err)
	}
	_, err = c.GrantAccess(ctx, client.Disks, "rg", "missing", "Read", time.Hour)
	wantCode(t, err, http.StatusNotFound, "ResourceNotFound")

	// Data plane refusals on a real disk with known contents.
	ce.createDisk(t, "d", client.DiskSpec{SizeGB: 1})
	w := ce.grant(t, client.Disks, "d", "Write")
	_, err = c.GrantAccess(ctx, client.Disks, "rg", "d", "None", time.Hour)
	wantCode(t, err, http.StatusBadRequest, "InvalidParameter")
	_, err = c.GrantAccess(ctx, client.Disks, "rg", "d", "Read", 0)
	wantCode(t, err, http.StatusBadRequest, "InvalidParameter")
	data := make([]byte, 1<<20)
	rand.Read(data)
	if err := c.PutPages(ctx, w.AccessSAS, 0, data); err != nil {
		t.Fatal(err)
	}
	want := bytesHash(data)
	wantCode(t, c.PutPages(ctx, w.AccessSAS, 100, make([]byte, 512)), http.StatusRequestedRangeNotSatisfiable, "InvalidPageRange")
	wantCode(t, c.PutPages(ctx, w.AccessSAS, 0, make([]byte, 700)), http.StatusRequestedRangeNotSatisfiable, "InvalidPageRange")
	wantCode(t, c.PutPages(ctx, w.AccessSAS, 0, make([]byte, 4<<20+512)), http.StatusRequestEntityTooLarge, "RequestBodyTooLarge")
	wantCode(t, c.PutPages(ctx, w.AccessSAS, 1<<30, make([]byte, 512)), http.StatusRequestedRangeNotSatisfiable, "InvalidPageRange")
	wantCode(t, c.ClearPages(ctx, w.AccessSAS, 512, 100), http.StatusRequestedRangeNotSatisfiable, "InvalidPageRange")
	_, err = c.ReadRange(ctx, w.AccessSAS, 1<<30, 512)
	wantCode(t, err, http.StatusRequestedRangeNotSatisfiable, "InvalidRange")
	// A body shorter than its range, and a bad Content-MD5.
	req, _ := http.NewRequest(http.MethodPut, w.AccessSAS+"&comp=page", bytes.NewReader(make([]byte, 512)))
	req.Header.Set("x-ms-page-write", "update")
	req.Header.Set("x-ms-range", "bytes=0-1023")
	resp, err := ce.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("x-ms-error-code") != "InvalidHeaderValue" {
		t.Fatalf("short body: %d %s", resp.StatusCode, resp.Header.Get("x-ms-error-code"))
	}
	req, _ = http.NewRequest(http.MethodPut, w.AccessSAS+"&comp=page", bytes.NewReader(make([]byte, 512)))
	req.Header.Set("x-ms-page-write", "update")
	req.Header.Set("x-ms-range", "bytes=0-511")
	req.Header.Set("Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA==")
	resp, err = ce.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("x-ms-error-code") != "Md5Mismatch" {
		t.Fatalf("bad MD5: %d %s", resp.StatusCode, resp.Header.Get("x-ms-error-code"))
	}
	if resp, err := ce.HTTP.Get(strings.Split(w.AccessSAS, "?")[0]); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no sig: %v %v", resp, err)
	}

	// NBD: unknown export names, truncated handshakes and garbage.
	addr, name := nbdAddrAndName(t, w.NBDURL)
	if _, err := nbdtest.Dial(ctx, addr, "not-a-grant", nbdtest.Options{}); err == nil {
		t.Fatal("unknown export accepted")
	}
	for _, junk := range [][]byte{nil, []byte("NBDMAGIC"), bytes.Repeat([]byte{0xff}, 4096), []byte("GET / HTTP/1.1\r\n\r\n")} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(junk)
		conn.(*net.TCPConn).CloseWrite() // truncated: the server sees EOF
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var sink [256]byte
		for {
			if _, err := conn.Read(sink[:]); err != nil {
				break
			}
		}
		conn.Close()
	}
	// Garbage in transmission after a good handshake.
	nc, err := nbdtest.Dial(ctx, addr, name, nbdtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var hdr [28]byte
	binary.BigEndian.PutUint32(hdr[0:4], 0x25609513)
	binary.BigEndian.PutUint16(hdr[6:8], 1) // WRITE
	binary.BigEndian.PutUint64(hdr[16:24], 1<<40)
	binary.BigEndian.PutUint32(hdr[24:28], 512)
	nc.Conn.Write(hdr[:])
	nc.Conn.Write(bytes.Repeat([]byte{0xee}, 512))
	nc.Conn.Write(bytes.Repeat([]byte{0x13}, 1000))
	nc.Close()

	// The disk still holds exactly what was written.
	got, err := c.ReadRange(context.Background(), w.AccessSAS, 0, 1<<20)
	if err != nil || bytesHash(got) != want {
		t.Fatalf("disk changed by refused input: %v", err)
	}
	if d, err := c.GetDisk(ctx, "rg", "d"); err != nil || d.Properties.DiskSizeBytes != 1<<30 {
		t.Fatalf("disk after bad input: %+v %v", d, err)
	}
	// Nothing was created by the refused PUTs.
	ds, err := c.ListDisks(ctx, "rg")
	if err != nil || len(ds) != 1 {
		t.Fatalf("disks after bad input: %d %v", len(ds), err)
	}
}
