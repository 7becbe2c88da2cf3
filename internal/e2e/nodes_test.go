package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"coffer/internal/blobstore/s3/s3test"
	"coffer/internal/blockdev"
	"coffer/internal/client"
	"coffer/internal/clock"
	"coffer/internal/cluster"
	"coffer/internal/compute"
	"coffer/internal/server"
	"coffer/internal/store"
	"coffer/internal/store/postgres/pgtest"
)

// joinDP starts another node of a's installation (same DB and Blob as o
// says) and returns SDK clients on it, authenticated with the admin's
// client credentials at the new node's own token endpoint.
func joinDP(t *testing.T, a *dpEnv, o Options) *dpEnv {
	t.Helper()
	o.TLS = true
	if o.MasterKey == "" {
		o.MasterKey = filepath.Join(a.DataDir, server.MasterKeyFile) // the installation's
	}
	env := Start(t, o)
	env.Admin = a.Admin // the installation's admin (admin.json is on the first node)
	env.Admin.Endpoint = env.Endpoint
	e := &dpEnv{Env: env, ctx: context.Background(), sub: a.sub, c: env.Client("")}
	e.cred = env.Credential(a.Admin.ClientID, a.Admin.ClientSecret)
	e.clients(t, e.sub)
	return e
}

// TestTwoNodes: two nodes share one PostgreSQL database and one versitygw
// bucket. Through node A (the official Azure SDK) a disk is protected and
// backed up: the disk is homed on A and its backup runs there, never on
// B. A stops; through B the recovery point is restored (its data is in the
// shared stores) and the restored disk, homed on B, equals the source at
// the recovery point by hash. B took over the scheduler lease.
func TestTwoNodes(t *testing.T) {
	db := pgtest.Start(t).NewDatabase(t)
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	srv.SetEnv(t)
	// Each node places new disks on itself (--placement local), so that
	// the disk made through A lives on A and the one restored through B
	// on B.
	o := Options{DB: db, Blob: "s3://" + bucket + "/coffer", S3Endpoint: srv.Endpoint, S3PathStyle: true, Placement: "local"}
	oa, ob := o, o
	oa.NodeName, ob.NodeName = "node-a", "node-b"
	a := startDP(t, oa)
	b := joinDP(t, a, ob)

	const loc = "local"
	src, want := a.protectedDisk(t, loc, 0x5A, 24<<20)
	home := func(e *dpEnv, diskID string) string {
		t.Helper()
		var h string
		if err := e.Server.Store().View(context.Background(), func(tx store.Tx) error {
			var err error
			h, err = cluster.Home(context.Background(), tx, diskID)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return h
	}
	if h := home(b, *src.ID); h != "node-a" {
		t.Fatalf("the source disk's home: %q, want node-a", h)
	}
	// Node A stops; node B restores the recovery point.
	a.Stop()
	rps := b.recoveryPoints(t, "rg-vault", "vault1", "data1-bi", nil)
	if len(rps) != 1 {
		t.Fatalf("%d recovery points", len(rps))
	}
	target := "/subscriptions/" + b.sub + "/resourceGroups/rg-restore/providers/Microsoft.Compute/disks/restored"
	jid, err := b.restore("rg-vault", "vault1", "data1-bi", b.restoreRequest(*rps[0].Name, target, loc))
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if j := b.waitJob(t, "rg-vault", "vault1", jid); *j.Status != "Completed" {
		t.Fatalf("restore job: %+v", j)
	}
	if got := b.hash(t, "rg-restore", "restored"); got != want {
		t.Fatalf("restored on node-b: hash %s, want %s", got, want)
	}
	if h := home(b, target); h != "node-b" {
		t.Fatalf("the restored disk's home: %q, want node-b", h)
	}
	// node-a released the scheduler lease as it stopped; node-b takes it
	// at its next step (every 5 s).
	ls := &cluster.Leases{Store: b.Server.Store(), Clock: clock.Real{}}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		l, err := ls.Get(context.Background(), "scheduler")
		if err == nil && l.Holder == "node-b" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scheduler lease after node-a stopped: %+v %v, want node-b's", l, err)
		}
	}
	reg := &cluster.Registry{Store: b.Server.Store(), Clock: clock.Real{}}
	nodes, err := reg.Nodes(context.Background())
	if err != nil || len(nodes) != 2 || nodes[0].Name != "node-a" || nodes[1].Name != "node-b" {
		t.Fatalf("registered nodes: %+v %v", nodes, err)
	}
}

// TestGroupDeleteAcrossNodes: a resource group whose disks live on two
// nodes is deleted through one of them; the volume of the disk homed on
// the other node goes too (its deletion is queued to that node), rather
// than being left on its disk with no record.
func TestGroupDeleteAcrossNodes(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Start(t).NewDatabase(t)
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	srv.SetEnv(t)
	o := Options{DB: db, Blob: "s3://" + bucket + "/coffer", S3Endpoint: srv.Endpoint, S3PathStyle: true, Placement: "local", TLS: true}
	oa, ob := o, o
	oa.NodeName, ob.NodeName = "node-a", "node-b"
	a := Start(t, oa)
	ob.MasterKey = filepath.Join(a.DataDir, server.MasterKeyFile) // the installation's
	b := Start(t, ob)
	b.Admin = a.Admin
	b.Admin.Endpoint = b.Endpoint
	tok, err := b.Client(a.Admin.Token).ClientCredentials(ctx, a.Admin.TenantID, a.Admin.ClientID, a.Admin.ClientSecret)
	if err != nil {
		t.Fatal(err)
	}
	ca, cb := a.Client(""), b.Client(tok)

	const rg = "rg-spread"
	if _, err := ca.CreateGroup(ctx, rg, "local", nil); err != nil {
		t.Fatal(err)
	}
	// With --placement local each disk lives on the node it was made
	// through.
	volume := map[*Env]string{}
	for env, c := range map[*Env]*client.Client{a: ca, b: cb} {
		name := "on-" + env.Server.NodeName()
		d, err := c.CreateDisk(ctx, rg, name, client.DiskSpec{Location: "local", SizeGB: 1}, true)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		volume[env] = d.Properties.UniqueID
		if _, err := env.Server.Compute.Engine.OpenVolume(ctx, volume[env]); err != nil {
			t.Fatalf("the volume of %s on its node: %v", name, err)
		}
	}
	if _, err := cb.DeleteGroup(ctx, rg, true); err != nil {
		t.Fatalf("delete the group through node-b: %v", err)
	}
	for env, id := range volume {
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			_, err := env.Server.Compute.Engine.OpenVolume(ctx, id)
			if errors.Is(err, blockdev.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the volume %s on %s after its group was deleted through node-b: %v, want it gone", id, env.Server.NodeName(), err)
			}
		}
	}
	// The disks' homes went with their records, the one deleted on its
	// node (node-b's) and the one deleted elsewhere (node-a's).
	err = a.Server.Store().View(ctx, func(tx store.Tx) error {
		for env, id := range volume {
			diskID := compute.DiskID(a.Admin.SubscriptionID, rg, "on-"+env.Server.NodeName()).String()
			home, err := cluster.Home(ctx, tx, diskID)
			if err != nil {
				return err
			}
			vhome, err := cluster.VolumeHome(ctx, tx, id)
			if err != nil {
				return err
			}
			if home != "" || vhome != "" {
				return fmt.Errorf("the home of the deleted disk %s is still recorded: %q, volume %q", diskID, home, vhome)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
