package crash

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/blobstore/s3/s3test"
	"coffer/internal/client"
	"coffer/internal/clock"
	"coffer/internal/cluster"
	"coffer/internal/compute"
	"coffer/internal/e2e"
	"coffer/internal/identity"
	"coffer/internal/job"
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/server"
	"coffer/internal/store"
	storelocation "coffer/internal/store/location"
	"coffer/internal/store/postgres/pgtest"
)

// fleet is several `coffer serve` processes, the nodes of one
// installation: one PostgreSQL database, one versitygw bucket, each node
// with its own --node-name, data dir and ports. The test reads the shared
// store itself for what only it shows (leases, homes, the registry).
type fleet struct {
	t     *testing.T
	nodes []*process
	admin server.Admin
	store store.Store
	// offset is every node's clock offset (they share one clock).
	offset time.Duration
}

// startFleet starts n nodes with --placement placement and the flags
// extra: node-1 first (it bootstraps the tenant), then the others.
func startFleet(t *testing.T, n int, placement string, extra ...string) *fleet {
	t.Helper()
	bin := cofferBinary(t)
	db := pgtest.Start(t).NewDatabase(t)
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	srv.SetEnv(t)
	f := &fleet{t: t}
	for i := range n {
		p := newProcess(t, bin, t.TempDir())
		name := fmt.Sprintf("node-%d", i+1)
		p.args = []string{"--db", db, "--blob", "s3://" + bucket + "/coffer", "--s3-endpoint", srv.Endpoint, "--s3-path-style",
			"--node-name", name, "--placement", placement}
		p.args = append(p.args, extra...)
		if i > 0 { // the installation's master key, which node-1 creates
			p.args = append(p.args, "--master-key", filepath.Join(f.nodes[0].dir, server.MasterKeyFile))
		}
		f.nodes = append(f.nodes, p)
	}
	t.Cleanup(func() {
		for _, p := range f.nodes {
			p.kill()
		}
		if t.Failed() {
			for i, p := range f.nodes {
				t.Logf("node-%d log:\n%s", i+1, p.logTail())
			}
		}
	})
	ctx := context.Background()
	if err := f.nodes[0].start(ctx, 0); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(f.nodes[0].dir, server.AdminFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f.admin); err != nil {
		t.Fatal(err)
	}
	if err := f.startAll(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	meta, err := storelocation.Open(ctx, db, storelocation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	f.store = meta.Store
	return f
}

// startAll starts the nodes from the from-th on, at once, with a clock
// offset.
func (f *fleet) startAll(ctx context.Context, offset time.Duration, from int) error {
	f.offset = offset
	var wg sync.WaitGroup
	errs := make([]error, len(f.nodes))
	for i := from; i < len(f.nodes); i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f.nodes[i].start(ctx, offset) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// client is an API client of node i with the admin's API token (which
// every node accepts).
func (f *fleet) client(i int) *client.Client {
	f.t.Helper()
	c, err := client.New(client.Config{Endpoint: "http://" + f.nodes[i].http, Token: f.admin.Token, Subscription: f.admin.SubscriptionID})
	if err != nil {
		f.t.Fatal(err)
	}
	c.PollInterval = 25 * time.Millisecond
	c.HTTP.Timeout = time.Minute
	return c
}

// now is the nodes' time.
func (f *fleet) now() time.Time { return time.Now().Add(f.offset) }

// home is the node the shared store records for a disk.
func (f *fleet) home(diskID string) string {
	f.t.Helper()
	var h string
	if err := f.store.View(context.Background(), func(tx store.Tx) error {
		var err error
		h, err = cluster.Home(context.Background(), tx, diskID)
		return err
	}); err != nil {
		f.t.Fatal(err)
	}
	return h
}

// scheduler is the current holding of the scheduler lease.
func (f *fleet) scheduler() (cluster.Lease, error) {
	ls := &cluster.Leases{Store: f.store, Clock: clock.Shifted{D: f.offset}}
	return ls.Get(context.Background(), server.SchedulerLease)
}

// fleetVault and fleetRule: the vault and the backup rule of the policy
// setupFleet makes.
const (
	fleetVault = "vault"
	fleetRule  = "BackupIntervals"
)

// fleetDisk is a disk of the fleet tests: its contents as written, and
// the node that holds it.
type fleetDisk struct {
	name, id, home, instance string
	content                  []byte
}

// setupFleet makes, through node i%len(nodes) for the i-th disk, n disks
// of diskSize with a few random writes each, a vault with its roles and a
// daily policy whose time of day is at, and protects every disk.
func setupFleet(ctx context.Context, t *testing.T, f *fleet, n int, at time.Time, rng *rand.Rand) []*fleetDisk {
	t.Helper()
	c := f.client(0)
	for _, g := range []string{rgDisks, rgSnaps, rgRestores} {
		if _, err := c.CreateGroup(ctx, g, location, nil); err != nil {
			t.Fatalf("create group %s: %v", g, err)
		}
	}
	v, err := c.CreateVault(ctx, rgDisks, fleetVault, location, "")
	if err != nil {
		t.Fatalf("create vault: %v", err)
	}
	sub := f.admin.SubscriptionID
	for _, a := range []struct{ role, scope string }{
		{rbac.RoleDiskBackupReader, "/subscriptions/" + sub + "/resourceGroups/" + rgDisks},
		{rbac.RoleDiskSnapshotContributor, "/subscriptions/" + sub + "/resourceGroups/" + rgSnaps},
		{rbac.RoleDiskRestoreOperator, "/subscriptions/" + sub + "/resourceGroups/" + rgRestores},
	} {
		def := "/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleDefinitions/" + a.role
		if _, err := c.CreateRoleAssignment(ctx, a.scope, identity.NewGUID(), def, v.PrincipalID(), "ServicePrincipal"); err != nil {
			t.Fatalf("assign role %s: %v", a.role, err)
		}
	}
	props, err := client.BuildDiskPolicy(client.DiskPolicyOptions{Time: at.UTC().Format("15:04"), Retention: "7d"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutPolicy(ctx, rgDisks, fleetVault, "daily", props); err != nil {
		t.Fatalf("create policy: %v", err)
	}
	policyID := "/subscriptions/" + sub + "/resourceGroups/" + rgDisks + "/providers/Microsoft.DataProtection/backupVaults/" + fleetVault + "/backupPolicies/daily"
	disks := make([]*fleetDisk, n)
	for i := range disks {
		d := &fleetDisk{name: fmt.Sprintf("d%02d", i), content: make([]byte, diskSize)}
		d.id = e2e.DiskID(sub, rgDisks, d.name)
		d.instance = "bi-" + d.name
		for range 3 {
			wr := randomWrite(rng)
			if isZero(wr.data) {
				wr.data[0] = 1
			}
			copy(d.content[wr.off:], wr.data)
		}
		disks[i] = d
	}
	// All at once, through every node (concurrent creations once ran the
	// PostgreSQL store out of retries on deadlocks).
	var wg sync.WaitGroup
	errs := make([]error, len(disks))
	for i, d := range disks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Made through node i%n: with --placement local, its home.
			nc := f.client(i % len(f.nodes))
			if err := fillDisk(ctx, nc, d); err != nil {
				errs[i] = err
				return
			}
			if _, err := nc.PutInstance(ctx, rgDisks, fleetVault, d.instance, client.InstanceBody(d.id, location, policyID,
				"/subscriptions/"+sub+"/resourceGroups/"+rgSnaps)); err != nil {
				errs[i] = fmt.Errorf("protect %s: %w", d.name, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, d := range disks {
		d.home = f.home(d.id)
	}
	return disks
}

// backupAll takes an on-demand backup of every disk's instance, through
// node i%len(nodes) for the i-th, and waits for each to complete.
func backupAll(ctx context.Context, t *testing.T, f *fleet, disks []*fleetDisk) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(disks))
	for i, d := range disks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := f.client(i % len(f.nodes))
			id, err := c.BackupNow(ctx, rgDisks, fleetVault, d.instance, fleetRule, "Default")
			if err == nil {
				var j client.Job
				if j, err = e2e.WaitJob(ctx, c, rgDisks, fleetVault, id); err == nil {
					err = e2e.JobError(j)
				}
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// fillDisk creates d and writes its contents through a Write grant.
func fillDisk(ctx context.Context, c *client.Client, d *fleetDisk) error {
	if _, err := c.CreateDisk(ctx, rgDisks, d.name, client.DiskSpec{Location: location, UploadSizeBytes: diskSize}, true); err != nil {
		return fmt.Errorf("create disk %s: %w", d.name, err)
	}
	a, err := c.GrantAccess(ctx, client.Disks, rgDisks, d.name, "Write", time.Hour)
	if err != nil {
		return fmt.Errorf("grant write on %s: %w", d.name, err)
	}
	for off := 0; off < len(d.content); off += 1 << 20 {
		if b := d.content[off : off+1<<20]; !isZero(b) {
			if err := c.PutPages(ctx, a.AccessSAS, int64(off), b); err != nil {
				return fmt.Errorf("write %s at %d: %w", d.name, off, err)
			}
		}
	}
	if err := c.RevokeAccess(ctx, client.Disks, rgDisks, d.name); err != nil {
		return fmt.Errorf("end access to %s: %w", d.name, err)
	}
	return nil
}

// backupJobs lists the vault's backup jobs not in seen, by disk name.
func backupJobs(ctx context.Context, c *client.Client, seen map[string]bool) (map[string][]client.Job, error) {
	jobs, err := c.ListJobs(ctx, rgDisks, fleetVault, "")
	if err != nil {
		return nil, err
	}
	out := map[string][]client.Job{}
	for _, j := range jobs {
		if seen[j.ID] || j.Properties.Operation != string(job.OpBackup) {
			continue
		}
		out[j.Properties.DataSourceName] = append(out[j.Properties.DataSourceName], j)
	}
	return out, nil
}

// jobIDs is the set of the vault's job IDs now.
func jobIDs(ctx context.Context, t *testing.T, c *client.Client) map[string]bool {
	t.Helper()
	jobs, err := c.ListJobs(ctx, rgDisks, fleetVault, "")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, j := range jobs {
		ids[j.ID] = true
	}
	return ids
}

// checkPoints reads every recovery point listed for d through c: each
// must be whole (its snapshot reads d's contents, which no write changed
// since the disks were filled). It returns how many are listed.
func checkPoints(ctx context.Context, c *client.Client, d *fleetDisk) (int, error) {
	rps, err := c.ListRecoveryPoints(ctx, rgDisks, fleetVault, d.instance, "")
	if err != nil {
		return 0, fmt.Errorf("list the recovery points of %s: %w", d.instance, err)
	}
	for _, r := range rps {
		id, err := resource.Parse(snapshotOf(r))
		if err != nil {
			return 0, fmt.Errorf("recovery point %s of %s names no snapshot: %w", r.Name, d.instance, err)
		}
		got, err := e2e.DiskSHA256(ctx, c, client.Snapshots, id.ResourceGroup, id.Name())
		if err != nil {
			return 0, fmt.Errorf("read recovery point %s of %s: %w", r.Name, d.instance, err)
		}
		if got != sha(d.content) {
			return 0, fmt.Errorf("%w: recovery point %s of %s reads sha256 %s, want %s", errCorrupt, r.Name, d.instance, got, sha(d.content))
		}
	}
	return len(rps), nil
}

// TestKillNode: three nodes; eighteen small disks, six homed on each node,
// each protected by a daily policy and backed up once on demand. Every
// node stops; they start again with their clocks past the policy's time,
// so that the scheduler (on the node that holds its lease: node-1, which
// starts first) queues one backup per instance, each bound to its disk's
// home node. As soon as the first of node-1's has ended (its four workers
// take its six in two waves), node-1 is killed with SIGKILL.
//
// Then: the scheduler lease moves to a survivor under a larger epoch; the
// backups of the disks homed on node-2 and node-3 each complete exactly
// once; the backups of node-1's disks wait for node-1 (a disk's volume
// exists only on its home, so no other node can take its snapshot; a
// leased one is taken again by node-1 when it returns) and do not fail;
// node-1's disks answer 503 NodeUnavailable, naming node-1, through the
// other nodes; the recovery points taken before the kill, node-1's disks'
// included, restore through node-2 and node-3 with the bytes they were
// taken with; every listed recovery point reads whole. node-1 comes back:
// its waiting backups complete, each instance has exactly one scheduled
// backup job, completed, and exactly one more recovery point, whole.
func TestKillNode(t *testing.T) {
	if testing.Short() {
		t.Skip("the kill test runs three servers for about a minute")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(13, 3))
	// Work bound to a node fails 15 s + 20 s after its last heartbeat.
	f := startFleet(t, 3, "local", "--node-grace", "20s")
	at := time.Now().Add(2 * time.Hour).Truncate(time.Minute)
	disks := setupFleet(ctx, t, f, 18, at, rng)
	for i, d := range disks {
		if want := fmt.Sprintf("node-%d", i%3+1); d.home != want {
			t.Fatalf("disk %s made through %s is homed on %q", d.name, want, d.home)
		}
	}
	c2, c3 := f.client(1), f.client(2)
	// One recovery point per instance before the kill, taken on demand
	// through any node (each runs on its disk's home).
	backupAll(ctx, t, f, disks)
	before := jobIDs(ctx, t, c2)
	// A disk node-1 will be making when it dies (below).
	if _, err := f.client(0).CreateDisk(ctx, rgRestores, "pending", client.DiskSpec{Location: location, SizeGB: 1}, true); err != nil {
		t.Fatal(err)
	}
	pendingID := e2e.DiskID(f.admin.SubscriptionID, rgRestores, "pending")
	if h := f.home(pendingID); h != "node-1" {
		t.Fatalf("the disk made through node-1 is homed on %q", h)
	}

	// Every node stops and starts again past the policy's time: the
	// scheduler's first tick finds fifteen backups due.
	for _, p := range f.nodes {
		if err := p.stop(); err != nil {
			t.Fatal(err)
		}
	}
	offset := time.Until(at) + 5*time.Minute
	f.offset = offset
	if err := f.nodes[0].start(ctx, offset); err != nil {
		t.Fatal(err)
	}
	others := make(chan error, 1)
	go func() { others <- f.startAll(ctx, offset, 1) }()
	l0, err := f.scheduler()
	if err != nil || l0.Holder != "node-1" {
		t.Fatalf("scheduler lease after the start: %+v %v, want node-1's (it started first)", l0, err)
	}
	// Kill node-1 mid-way: as soon as one of its due backups has ended
	// while others still run (its four workers take six in two waves).
	// Node-1 is frozen first and its work counted through a survivor,
	// since under load it can end the rest between a look and a kill.
	countNode1 := func(jobs map[string][]client.Job) (done, running int) {
		for _, d := range disks {
			for _, j := range jobs[d.name] {
				switch {
				case d.home != "node-1":
				case j.Properties.Status == string(job.InProgress):
					running++
				default:
					done++
				}
			}
		}
		return done, running
	}
	// A start of the others that waits for locks node-1 holds while it is
	// frozen goes on once PostgreSQL ends node-1's stalled session
	// (postgres.StallTimeout), well inside the start's deadline.
	c1 := f.client(0)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
		jobs, err := backupJobs(ctx, c1, before)
		if err != nil {
			t.Fatal(err)
		}
		if done, _ := countNode1(jobs); done > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no due backup of node-1 ended within 2 minutes (%d queued)", len(jobs))
		}
	}
	f.nodes[0].freeze()
	frozenAt := time.Now()
	if err := <-others; err != nil {
		t.Fatal(err)
	}
	t.Logf("the other nodes were up %v after node-1 froze", time.Since(frozenAt).Truncate(time.Millisecond))
	time.Sleep(time.Second) // a commit node-1 had sent lands
	atKill, err := backupJobs(ctx, c2, before)
	if err != nil {
		t.Fatal(err)
	}
	doneAtKill, runningAtKill := countNode1(atKill)
	f.nodes[0].kill()
	killedAt := time.Now()
	// What node-1 leaves when it dies between writing a disk's record and
	// recording its volume made (a PUT, a restore): the disk Updating.
	f.setDiskState(pendingID, compute.StateUpdating)
	if runningAtKill == 0 {
		t.Fatalf("node-1 ended all %d of its due backups before it could be stopped: nothing is left to strand", doneAtKill)
	}
	t.Logf("node-1 killed with %d of its due backups ended and %d queued or running", doneAtKill, runningAtKill)

	// The scheduler lease moves to a survivor.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		l, err := f.scheduler()
		if err == nil && l.Holder != "node-1" && l.Epoch > l0.Epoch {
			t.Logf("scheduler lease taken by %s (epoch %d) %v after the kill", l.Holder, l.Epoch, time.Since(killedAt).Truncate(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scheduler lease a minute after node-1's kill: %+v %v, want a survivor's with an epoch above %d", l, err, l0.Epoch)
		}
	}
	// The backups of node-2's and node-3's disks complete, once each;
	// node-1's wait, or have failed already with NodeUnavailable (below).
	var waiting int
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		jobs, err := backupJobs(ctx, c3, before)
		if err != nil {
			t.Fatal(err)
		}
		pending, bad := 0, []string{}
		waiting = 0
		for _, d := range disks {
			js := jobs[d.name]
			if len(js) != 1 {
				bad = append(bad, fmt.Sprintf("%s has %d scheduled backup jobs", d.instance, len(js)))
				continue
			}
			switch st := js[0].Properties.Status; {
			case st == string(job.InProgress) && d.home == "node-1":
				waiting++
			case d.home == "node-1" && deadNodeJob(js[0]):
			case st == string(job.InProgress):
				pending++
			case st != string(job.Completed):
				bad = append(bad, fmt.Sprintf("%s (on %s): %v", d.instance, d.home, e2e.JobError(js[0])))
			}
		}
		if len(bad) > 0 {
			t.Fatalf("while node-1 is down: %s", strings.Join(bad, "; "))
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backups of the survivors' disks still running after 3 minutes", pending)
		}
	}
	t.Logf("node-1 down: the survivors' backups completed; %d of node-1's wait for it", waiting)

	// Node-1's disks say it is down, through either survivor, once its
	// heartbeat is older than the timeout.
	var d1 *fleetDisk
	for _, d := range disks {
		if d.home == "node-1" {
			d1 = d
			break
		}
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		_, err := c3.GrantAccess(ctx, client.Disks, rgDisks, d1.name, "Read", time.Hour)
		e := client.AsError(err)
		if e != nil && e.StatusCode == http.StatusServiceUnavailable && e.Code == cluster.CodeNodeUnavailable && strings.Contains(e.Message, "'node-1'") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("access to %s (homed on the dead node-1) a minute after the kill: %v, want 503 NodeUnavailable naming node-1", d1.name, err)
		}
	}

	// Recovery points taken before the kill restore through the
	// survivors, node-1's disks' included; every listed point is whole.
	for i, d := range disks {
		if i%3 != 0 && i != 1 {
			continue // node-1's six, and one of node-2's
		}
		c := []*client.Client{c2, c3}[i%2]
		rps, err := c.ListRecoveryPoints(ctx, rgDisks, fleetVault, d.instance, "")
		if err != nil || len(rps) == 0 {
			t.Fatalf("recovery points of %s: %d %v", d.instance, len(rps), err)
		}
		first := rps[len(rps)-1] // the on-demand one (the list is newest first)
		for _, r := range rps {
			if r.Properties.RecoveryPointTime < first.Properties.RecoveryPointTime {
				first = r
			}
		}
		target := "r-" + d.name
		got, err := e2e.RestoreAndHash(ctx, c, rgDisks, fleetVault, d.instance, first.Name, rgRestores, target, location)
		if err != nil {
			t.Fatalf("restore %s of %s through a survivor: %v", first.Name, d.instance, err)
		}
		if got != sha(d.content) {
			t.Fatalf("%s restored through a survivor reads sha256 %s, want %s", d.instance, got, sha(d.content))
		}
		if h := f.home(e2e.DiskID(f.admin.SubscriptionID, rgRestores, target)); h == "node-1" || h == "" {
			t.Fatalf("the disk restored through a survivor is homed on %q", h)
		}
	}
	for _, d := range disks {
		if _, err := checkPoints(ctx, c2, d); err != nil {
			t.Fatal(err)
		}
	}

	// Node-1's backups that had not ended when it died do not wait for
	// ever: past its grace (--node-grace 20s after the 15 s timeout) the
	// scheduler's node fails each, with NodeUnavailable naming node-1.
	failed := map[string]bool{}
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		jobs, err := backupJobs(ctx, c2, before)
		if err != nil {
			t.Fatal(err)
		}
		pending := 0
		for _, d := range disks {
			if d.home != "node-1" {
				continue
			}
			switch j := jobs[d.name][0]; {
			case j.Properties.Status == string(job.InProgress):
				pending++
			case deadNodeJob(j):
				failed[d.name] = true
			case j.Properties.Status != string(job.Completed):
				t.Fatalf("%s (on node-1): %v", d.instance, e2e.JobError(j))
			}
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of node-1's backups still wait for it %v after its kill", pending, time.Since(killedAt).Truncate(time.Second))
		}
	}
	if len(failed) == 0 || len(failed) > runningAtKill {
		t.Fatalf("%d of node-1's backups failed for its absence, want one or more of the %d not ended at its kill", len(failed), runningAtKill)
	}
	t.Logf("node-1's %d unfinished backups failed with NodeUnavailable %v after its kill", len(failed), time.Since(killedAt).Truncate(time.Second))
	// The disk it was making does not stay Updating either: past the
	// grace it is Failed with NodeUnavailable naming node-1.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		d := f.disk(pendingID)
		if d.ProvisioningState == compute.StateFailed {
			if e := d.FailedError; e == nil || e.Code != cluster.CodeNodeUnavailable || !strings.Contains(e.Message, "node 'node-1'") {
				t.Fatalf("the disk node-1 was making failed with %+v, want NodeUnavailable naming node-1", e)
			}
			break
		}
		if d.ProvisioningState != compute.StateUpdating || time.Now().After(deadline) {
			t.Fatalf("the disk node-1 was making is %s %v after its kill, want %s", d.ProvisioningState, time.Since(killedAt).Truncate(time.Second), compute.StateFailed)
		}
	}

	// Node-1 returns: nothing of it runs again; each instance has
	// exactly one scheduled backup, and one more recovery point unless
	// that backup failed.
	if err := f.nodes[0].start(ctx, offset); err != nil {
		t.Fatal(err)
	}
	jobs, err := backupJobs(ctx, c2, before)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range disks {
		js := jobs[d.name]
		if len(js) != 1 {
			t.Fatalf("%s has %d scheduled backup jobs after node-1's return, want 1", d.instance, len(js))
		}
		if failed[d.name] != deadNodeJob(js[0]) {
			t.Fatalf("%s after node-1's return: %v", d.instance, e2e.JobError(js[0]))
		}
		if err := e2e.JobError(js[0]); err != nil && !failed[d.name] {
			t.Fatalf("%s: %v", d.instance, err)
		}
		n, err := checkPoints(ctx, c2, d)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{false: 2, true: 1}[failed[d.name]]; n != want {
			t.Fatalf("%s lists %d recovery points, want %d", d.instance, n, want)
		}
	}
	// node-1's start (Recover) leaves the disk as the sweep ended it,
	// although it holds the disk's volume.
	if d := f.disk(pendingID); d.ProvisioningState != compute.StateFailed {
		t.Fatalf("the disk node-1 was making, after node-1's return: %s, want %s", d.ProvisioningState, compute.StateFailed)
	}
	if slices.ContainsFunc(f.nodes, func(p *process) bool { return p.alive() != nil }) {
		t.Fatal("a node exited by itself")
	}
}

// disk reads a disk's record from the shared store.
func (f *fleet) disk(diskID string) compute.Disk {
	f.t.Helper()
	var d compute.Disk
	if err := f.store.View(context.Background(), func(tx store.Tx) error {
		o, err := tx.Get(context.Background(), compute.KindDisk, resource.MustParse(diskID).Key())
		if err != nil {
			return err
		}
		return json.Unmarshal(o.Data, &d)
	}); err != nil {
		f.t.Fatal(err)
	}
	return d
}

// setDiskState sets a disk's provisioning state in the shared store.
func (f *fleet) setDiskState(diskID, state string) {
	f.t.Helper()
	ctx := context.Background()
	if err := f.store.Update(ctx, func(tx store.Tx) error {
		o, err := tx.Get(ctx, compute.KindDisk, resource.MustParse(diskID).Key())
		if err != nil {
			return err
		}
		var rec map[string]any
		if err := json.Unmarshal(o.Data, &rec); err != nil {
			return err
		}
		rec["provisioningState"] = state
		if o.Data, err = json.Marshal(rec); err != nil {
			return err
		}
		return tx.Put(ctx, &o, store.PutOptions{})
	}); err != nil {
		f.t.Fatal(err)
	}
}

// deadNodeJob reports whether j failed because node-1, its disk's home,
// was gone: NodeUnavailable naming node-1 and when it was last seen.
func deadNodeJob(j client.Job) bool {
	if j.Properties.Status != string(job.Failed) || len(j.Properties.ErrorDetails) != 1 {
		return false
	}
	e := j.Properties.ErrorDetails[0]
	return e.Code == cluster.CodeNodeUnavailable && strings.Contains(e.Message, "node 'node-1'") && strings.Contains(e.Message, "last seen at")
}

// fleetWork is the work a rolling restart test started: job IDs and, for
// restores, the disk each writes and the contents it must read.
type fleetWork struct {
	mu       sync.Mutex
	backups  map[string]string // job ID → disk name
	restores map[string]restoreWant
}

type restoreWant struct{ target, sha string }

// submit starts, through c, an on-demand backup of each of disks and a
// restore of its first recovery point to a new disk named after round.
func (w *fleetWork) submit(ctx context.Context, c *client.Client, disks []*fleetDisk, round int) error {
	for _, d := range disks {
		id, err := c.BackupNow(ctx, rgDisks, fleetVault, d.instance, fleetRule, "Default")
		if err != nil {
			return fmt.Errorf("back up %s in round %d: %w", d.instance, round, err)
		}
		rps, err := c.ListRecoveryPoints(ctx, rgDisks, fleetVault, d.instance, "")
		if err != nil || len(rps) == 0 {
			return fmt.Errorf("recovery points of %s: %d, %v", d.instance, len(rps), err)
		}
		first := rps[0]
		for _, r := range rps {
			if r.Properties.RecoveryPointTime < first.Properties.RecoveryPointTime {
				first = r
			}
		}
		target := fmt.Sprintf("rr%d-%s", round, d.name)
		rid, err := c.Restore(ctx, rgDisks, fleetVault, d.instance, client.RestoreRequest(first.Name, e2e.DiskID(c.Subscription, rgRestores, target), location))
		if err != nil {
			return fmt.Errorf("restore %s in round %d: %w", d.instance, round, err)
		}
		w.mu.Lock()
		w.backups[id] = d.name
		w.restores[rid] = restoreWant{target: target, sha: sha(d.content)}
		w.mu.Unlock()
	}
	return nil
}

// TestRollingRestart: three nodes placing new disks on the least used
// (the default), nine protected disks backed up once. Backups and restores
// run while every node in turn is stopped with SIGTERM and started again;
// each round of work goes through a node that is up. Then nothing is lost
// and nothing is stuck: every job started ends Completed, every vault job
// has ended, each instance lists one recovery point per backup, every one
// whole, and every restored disk reads the bytes of the point it came
// from.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("the rolling restart runs three servers for about a minute")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(13, 4))
	f := startFleet(t, 3, "least-used")
	disks := setupFleet(ctx, t, f, 9, time.Now().Add(12*time.Hour), rng)
	homes := map[string]int{}
	for _, d := range disks {
		homes[d.home]++
	}
	t.Logf("homes by least-used placement: %v", homes)
	backupAll(ctx, t, f, disks)

	w := &fleetWork{backups: map[string]string{}, restores: map[string]restoreWant{}}
	for i, p := range f.nodes {
		// A round of work through the next node, then node i restarts
		// while it runs.
		up := f.client((i + 1) % len(f.nodes))
		var round []*fleetDisk
		for j, d := range disks {
			if j%len(f.nodes) == i {
				round = append(round, d)
			}
		}
		if err := w.submit(ctx, up, round, i); err != nil {
			t.Fatal(err)
		}
		if jobs, err := up.ListJobs(ctx, rgDisks, fleetVault, ""); err == nil {
			running := 0
			for _, j := range jobs {
				if j.Properties.Status == string(job.InProgress) {
					running++
				}
			}
			t.Logf("node-%d stops with %d jobs in progress", i+1, running)
		}
		if err := p.stop(); err != nil {
			t.Fatalf("stop node-%d: %v", i+1, err)
		}
		if err := p.start(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}

	c := f.client(0)
	var jobs []client.Job
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		var err error
		if jobs, err = c.ListJobs(ctx, rgDisks, fleetVault, ""); err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, j := range jobs {
			if j.Properties.Status == string(job.InProgress) {
				running++
			}
		}
		if running == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs still in progress 5 minutes after the last restart", running)
		}
	}
	byID := map[string]client.Job{}
	for _, j := range jobs {
		byID[j.ID] = j
	}
	backups := map[string]int{}
	for id, disk := range w.backups {
		j, ok := byID[id]
		if !ok {
			t.Fatalf("backup job %s of %s is not listed", id, disk)
		}
		if err := e2e.JobError(j); err != nil {
			t.Fatal(err)
		}
		backups[disk]++
	}
	for id, want := range w.restores {
		j, ok := byID[id]
		if !ok {
			t.Fatalf("restore job %s to %s is not listed", id, want.target)
		}
		if err := e2e.JobError(j); err != nil {
			t.Fatal(err)
		}
		got, err := e2e.DiskSHA256(ctx, c, client.Disks, rgRestores, want.target)
		if err != nil {
			t.Fatalf("read restored %s: %v", want.target, err)
		}
		if got != want.sha {
			t.Fatalf("%v: %s reads sha256 %s, want %s", errCorrupt, want.target, got, want.sha)
		}
	}
	for _, d := range disks {
		n, err := checkPoints(ctx, c, d)
		if err != nil {
			t.Fatal(err)
		}
		if want := 1 + backups[d.name]; n != want {
			t.Fatalf("%s lists %d recovery points, want %d", d.instance, n, want)
		}
	}
	t.Logf("%d backups and %d restores ran across three restarts", len(w.backups), len(w.restores))
	for _, p := range f.nodes {
		if err := p.alive(); err != nil {
			t.Fatal(err)
		}
	}
}
