package e2e

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"coffer/internal/client"
	"coffer/internal/clock"
	"coffer/internal/cluster"
	"coffer/internal/rbac"
	"coffer/internal/server"
	"coffer/internal/store"
	"coffer/internal/store/postgres/pgtest"
)

// offsetClock is the wall clock plus an offset the test moves: a node
// that sees another's heartbeat grow old without waiting for it.
type offsetClock struct{ d atomic.Int64 }

func (c *offsetClock) Now() time.Time                       { return time.Now().Add(time.Duration(c.d.Load())) }
func (c *offsetClock) NewTimer(d time.Duration) clock.Timer { return clock.Real{}.NewTimer(d) }
func (c *offsetClock) set(d time.Duration)                  { c.d.Store(int64(d)) }

// armAnswer is one raw ARM answer: its status and error, if any.
type armAnswer struct {
	status  int
	code    string
	message string
}

// rawARM sends an ARM request to env with a bearer token and extra
// headers, outside any SDK (no retries, headers as given).
func rawARM(t *testing.T, env *Env, method, path, token string, header http.Header, body string) armAnswer {
	t.Helper()
	u := env.Listen + path
	if strings.Contains(path, "?") {
		u += "&api-version=2023-04-02"
	} else {
		u += "?api-version=2023-04-02"
	}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := env.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(b, &e)
	return armAnswer{status: resp.StatusCode, code: e.Error.Code, message: e.Error.Message}
}

// diskHome is the home node the store records for a disk.
func diskHome(t *testing.T, env *Env, diskID string) string {
	t.Helper()
	var h string
	if err := env.Server.Store().View(context.Background(), func(tx store.Tx) error {
		var err error
		h, err = cluster.Home(context.Background(), tx, diskID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestForwardToHome: two nodes over TLS share one PostgreSQL database and
// one pack directory; each places new disks on itself (--placement
// local). A disk made through node A lives on A. Through node B, with a
// token B issued for its own endpoint, the official SDK grants access,
// writes pages through the SAS URL and reads them back: B forwards each
// request to A, which checks the caller's own token or SAS again; the
// bytes read through B equal those read through A, the grant's NBD URL
// names A's NBD server, and a snapshot of the disk taken through B runs
// on A. A ForwardedHeader a client sends itself grants nothing: a Reader
// is still refused by either node, and an Owner's request is not served
// on a node that does not hold the disk. While A is down (its heartbeat
// older than the timeout, as B's clock sees it), B answers the disk's
// data path 503 NodeUnavailable naming node-a and when it was last seen,
// in ARM's format and on the SAS URL in Storage's; once A is back, B
// forwards again.
func TestForwardToHome(t *testing.T) {
	db := pgtest.Start(t).NewDatabase(t)
	o := Options{DB: db, Blob: t.TempDir(), Placement: "local"}
	oa, ob := o, o
	oa.NodeName, ob.NodeName = "node-a", "node-b"
	clkB := &offsetClock{}
	ob.Clock = clkB
	a := startDP(t, oa)
	b := joinDP(t, a, ob)

	a.group(t, "rg", "local")
	d := a.disk(t, "rg", "d1", "local", "StandardSSD_LRS")
	if h := diskHome(t, b.Env, *d.ID); h != "node-a" {
		t.Fatalf("home of a disk made through node-a: %q", h)
	}
	// The data path through B.
	b.write(t, "rg", "d1", 0x3C, 0, 5<<20)
	if ha, hb := a.hash(t, "rg", "d1"), b.hash(t, "rg", "d1"); ha != hb {
		t.Fatalf("the disk read through node-a (%s) and through node-b (%s) differ", ha, hb)
	}
	acc, err := b.c.GrantAccess(b.ctx, "disks", "rg", "d1", "Read", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nu, err := url.Parse(acc.NBDURL)
	if err != nil || nu.Host != a.Server.NBDAddr() {
		t.Fatalf("NBD URL %q from node-b: want node-a's NBD server %s", acc.NBDURL, a.Server.NBDAddr())
	}
	if !strings.HasPrefix(acc.AccessSAS, b.Endpoint+"/") {
		t.Fatalf("SAS URL %q from node-b: want node-b's endpoint %s", acc.AccessSAS, b.Endpoint)
	}
	sasA := acc.AccessSAS
	if _, err := b.c.ReadRange(b.ctx, sasA, 0, 4096); err != nil {
		t.Fatalf("read through the SAS URL on node-b: %v", err)
	}
	// A SAS token that does not verify is refused where it arrives, not
	// forwarded.
	u, _ := url.Parse(sasA)
	q := u.Query()
	sig := []byte(q.Get("sig"))
	sig[len(sig)/2] ^= 1
	q.Set("sig", string(sig))
	u.RawQuery = q.Encode()
	if _, err := b.c.ReadRange(b.ctx, u.String(), 0, 4096); err == nil || !strings.Contains(err.Error(), "AuthenticationFailed") {
		t.Fatalf("a read through node-b with a tampered SAS token: %v, want 403 AuthenticationFailed", err)
	}
	b.endAccess(t, "rg", "d1")
	p, err := b.snaps.BeginCreateOrUpdate(b.ctx, "rg", "s1", armcompute.Snapshot{Location: d.Location,
		Properties: &armcompute.SnapshotProperties{CreationData: &armcompute.CreationData{
			CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: d.ID}, Incremental: to.Ptr(true)}}, nil)
	if err != nil {
		t.Fatalf("snapshot through node-b: %v", err)
	}
	if _, err := p.PollUntilDone(b.ctx, nil); err != nil {
		t.Fatalf("snapshot through node-b: %v", err)
	}

	// A forwarding header sent by a client grants nothing.
	reader := newPrincipal(t, a.Env, "reader")
	a.grantRole(t, reader.id, rbac.RoleReader, "/subscriptions/"+a.sub)
	forged := http.Header{server.ForwardedHeader: {"node-b"}}
	grant := "/subscriptions/" + a.sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/d1/beginGetAccess"
	grantBody := `{"access":"Write","durationInSeconds":3600}`
	for _, env := range []*Env{a.Env, b.Env} {
		if ans := rawARM(t, env, "POST", grant, reader.token, forged, grantBody); ans.status != http.StatusForbidden || ans.code != "AuthorizationFailed" {
			t.Fatalf("a Reader's grant with a forged %s header on %s: %+v, want 403 AuthorizationFailed", server.ForwardedHeader, env.Endpoint, ans)
		}
	}
	if ans := rawARM(t, b.Env, "POST", grant, a.Admin.Token, forged, grantBody); ans.status != http.StatusConflict || ans.code != "ForwardingLoop" {
		t.Fatalf("an Owner's grant with a forged %s header on node-b: %+v, want 409 ForwardingLoop (not served where the disk is not)", server.ForwardedHeader, ans)
	}
	if got, err := b.disks.Get(b.ctx, "rg", "d1", nil); err != nil || *got.Properties.DiskState != armcompute.DiskStateUnattached {
		t.Fatalf("the disk after refused grants: %v %v, want Unattached", got.Properties.DiskState, err)
	}

	// A grant to read through node-b after node-a has stopped.
	acc, err = b.c.GrantAccess(b.ctx, "disks", "rg", "d1", "Read", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dataDirA := a.DataDir
	a.Stop()
	reg := &cluster.Registry{Store: b.Server.Store(), Clock: clock.Real{}}
	nA, err := reg.Get(b.ctx, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	clkB.set(cluster.DefaultNodeTimeout + 5*time.Second)
	ans := rawARM(t, b.Env, "POST", grant, a.Admin.Token, nil, grantBody)
	seen := nA.Heartbeat.UTC().Format(time.RFC3339)
	if ans.status != http.StatusServiceUnavailable || ans.code != "NodeUnavailable" ||
		!strings.Contains(ans.message, "'node-a'") || !strings.Contains(ans.message, seen) {
		t.Fatalf("a grant on a disk whose node is down: %+v, want 503 NodeUnavailable naming node-a, last seen %s", ans, seen)
	}
	resp, err := b.HTTP.Get(acc.AccessSAS)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var xe struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	if err := xml.Unmarshal(body, &xe); err != nil || resp.StatusCode != http.StatusServiceUnavailable || xe.Code != "NodeUnavailable" ||
		!strings.Contains(xe.Message, "'node-a'") || resp.Header.Get("x-ms-error-code") != "NodeUnavailable" {
		t.Fatalf("a SAS read of a disk whose node is down: %d %s, want 503 NodeUnavailable naming node-a", resp.StatusCode, body)
	}
	// Node-a returns (on new ports); node-b forwards to it again.
	clkB.set(0)
	oa.DataDir = dataDirA
	a2 := Start(t, withTLS(oa))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if n, err := reg.Get(b.ctx, "node-a"); err == nil && n.API == a2.Listen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node-a did not register again within 30 s")
		}
	}
	if _, err := b.c.ReadRange(b.ctx, acc.AccessSAS, 0, 4096); err != nil {
		t.Fatalf("read through node-b once node-a is back: %v", err)
	}
	if h := diskHome(t, a2, *d.ID); h != "node-a" {
		t.Fatalf("home after node-a's restart: %q", h)
	}
}

func withTLS(o Options) Options { o.TLS = true; return o }

// TestForwardedHeaderAloneIsNoIdentity: a request that carries only
// ForwardedHeader (no token) is refused like any other.
func TestForwardedHeaderAloneIsNoIdentity(t *testing.T) {
	env := Start(t, Options{})
	req, _ := http.NewRequest("GET", env.Listen+"/subscriptions/"+env.Admin.SubscriptionID+"/resourceGroups?api-version=2021-04-01", nil)
	req.Header.Set(server.ForwardedHeader, "node-a")
	resp, err := env.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a request with only %s: %d, want 401", server.ForwardedHeader, resp.StatusCode)
	}
}

// BenchmarkForwardedSAS reads 4 MiB ranges of a disk homed on node-a
// through its SAS URL on node-a itself (the reference) and on node-b,
// which forwards each request to node-a: the ratio of the two is the cost
// of forwarding. Report it as forwarded/direct of the same run.
func BenchmarkForwardedSAS(b *testing.B) {
	db := pgtest.Start(b).NewDatabase(b)
	o := Options{DB: db, Blob: b.TempDir(), Placement: "local", TLS: true}
	oa, ob := o, o
	oa.NodeName, ob.NodeName = "node-a", "node-b"
	a := Start(b, oa)
	ob.MasterKey = filepath.Join(a.DataDir, server.MasterKeyFile) // the installation's
	nb := Start(b, ob)
	nb.Admin = a.Admin // the installation's admin (admin.json is on the first node)
	nb.Admin.Endpoint = nb.Endpoint
	ctx := context.Background()
	ca := a.Client("")
	if _, err := ca.CreateGroup(ctx, "rg", "local", nil); err != nil {
		b.Fatal(err)
	}
	const size = 64 << 20
	if _, err := ca.CreateDisk(ctx, "rg", "d1", client.DiskSpec{Location: "local", UploadSizeBytes: size}, true); err != nil {
		b.Fatal(err)
	}
	w, err := ca.GrantAccess(ctx, "disks", "rg", "d1", "Write", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		if err := ca.PutPages(ctx, w.AccessSAS, off, buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := ca.RevokeAccess(ctx, "disks", "rg", "d1"); err != nil {
		b.Fatal(err)
	}
	for _, env := range []struct {
		name string
		e    *Env
	}{{"direct", a}, {"forwarded", nb}} {
		b.Run(env.name, func(b *testing.B) {
			c := env.e.Client("")
			acc, err := c.GrantAccess(ctx, "disks", "rg", "d1", "Read", time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := c.ReadRange(ctx, acc.AccessSAS, int64(i%(size/len(buf)))*int64(len(buf)), int64(len(buf))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
