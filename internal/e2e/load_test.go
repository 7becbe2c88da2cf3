package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/identity"
	"coffer/internal/nbd/nbdtest"
	"coffer/internal/rbac"
	"coffer/internal/store/postgres/pgtest"
)

var (
	loadDuration = flag.Duration("load.duration", 15*time.Second, "how long TestLoad's clients run (the full run: 60s)")
	loadClients  = flag.Int("load.clients", 200, "concurrent API clients of TestLoad")
	loadNBD      = flag.Int("load.nbd", 8, "concurrent NBD clients of TestLoad")
	loadOut      = flag.String("load.out", "", "write TestLoad's figures as JSON to this file")
	loadProfile  = flag.String("load.profile", "", "write CPU, mutex and block profiles of TestLoad's run into this directory")
	loadDB       = flag.String("load.db", "", "serve --db of TestLoad's server: empty for SQLite, postgres for a throwaway PostgreSQL cluster (or $COFFER_TEST_POSTGRES's), or a postgres:// URL")
)

// TestLoad runs -load.clients API clients (each sends its next request as
// soon as the last one is answered: GETs and small PUTs and PATCHes of
// resource groups, tags and disks, vault and policy reads, job and
// recovery-point lists) and -load.nbd NBD clients writing and reading back
// their own region of one disk, while that disk is backed up again and
// again, for -load.duration. It reports throughput, p50/p99/max per kind
// of request and the error rate (in the log and, with -load.out, as JSON)
// and asserts only correctness: no request failed, /healthz answered ok
// throughout, every acknowledged write is visible afterwards, every NBD
// read returned what was written and every backup completed. Figures are
// never thresholds here; docs/operations.md records them.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test skipped in -short mode")
	}
	db := *loadDB
	if db == "postgres" {
		db = pgtest.Start(t).NewDatabase(t)
	}
	env := Start(t, Options{DB: db})
	ctx := context.Background()
	c := env.Client("")
	lt := newLoadTest(t, env, *loadClients)
	createGroups(t, ctx, c, "load-disks", "load-snaps", "load-vault", "load-restore")
	nbdDisk, err := c.CreateDisk(ctx, "load-disks", "nbd", client.DiskSpec{Location: "local", SizeGB: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	bi := protectDisk(t, ctx, c, nbdDisk.ID, "load-vault", "vault", "load-snaps", "load-restore", 4)
	lt.vault, lt.instance = bi.vault, bi.name
	lt.setup(ctx, c)
	grant, err := c.GrantAccess(ctx, client.Disks, "load-disks", "nbd", "Write", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nbdAddr, nbdExport := parseNBDURL(t, grant.NBDURL)

	stopProfiles := startProfiles(t, *loadProfile)
	runCtx, stop := context.WithTimeout(ctx, *loadDuration)
	defer stop()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range lt.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lt.clients[i].run(runCtx, lt)
		}()
	}
	nbds := make([]*nbdLoadClient, *loadNBD)
	const region = 64 << 20
	for i := range nbds {
		nbds[i] = &nbdLoadClient{off: int64(i) * region, size: region, model: map[int64]uint64{}, rng: rand.New(rand.NewPCG(uint64(i), 99))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			nbds[i].run(runCtx, nbdAddr, nbdExport)
		}()
	}
	var health loadHealth
	wg.Add(2)
	go func() {
		defer wg.Done()
		health.watch(runCtx, env)
	}()
	var backups loadBackups
	go func() {
		defer wg.Done()
		backups.run(runCtx, c, bi, nbdDisk.ID, "load-snaps")
	}()
	wg.Wait()
	elapsed := time.Since(start)
	stopProfiles()

	// Correctness after the run.
	rep := lt.report(elapsed, nbds, &health, &backups)
	rep.log(t)
	if *loadOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*loadOut, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range rep.firstErrors {
		t.Error(e)
	}
	if rep.Errors > 0 {
		t.Errorf("%d of %d requests failed", rep.Errors, rep.APIRequests+rep.NBDRequests)
	}
	if health.bad.Load() > 0 || health.ok.Load() == 0 {
		t.Errorf("/healthz: %d ok, %d not ok (%s)", health.ok.Load(), health.bad.Load(), health.firstBad())
	}
	if backups.completed.Load() == 0 || backups.failed.Load() > 0 {
		t.Errorf("snapshots during the run: %d completed, %d failed (%v)", backups.completed.Load(), backups.failed.Load(), backups.err())
	}
	lt.checkVisible(ctx, c)
	checkNBDModels(t, ctx, nbdAddr, nbdExport, nbds)
}

// loadTest is the API side of TestLoad.
type loadTest struct {
	t        *testing.T
	env      *Env
	http     *http.Client
	sub      string
	vault    string
	instance string
	clients  []*apiLoadClient
	kinds    []loadKind
	pick     []int // kinds by weight
}

// loadKind is one kind of request in the mix.
type loadKind struct {
	name   string
	weight int
	// do sends one request for client lc; write kinds return the value
	// they wrote so that it is checked afterwards.
	do func(ctx context.Context, lt *loadTest, lc *apiLoadClient) error
}

func newLoadTest(t *testing.T, env *Env, n int) *loadTest {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = n+16, n+16
	lt := &loadTest{t: t, env: env, http: &http.Client{Transport: tr, Timeout: time.Minute}, sub: env.Admin.SubscriptionID}
	lt.kinds = []loadKind{
		{"GET group", 15, func(ctx context.Context, lt *loadTest, lc *apiLoadClient) error {
			return lt.send(ctx, lc, "GET", lt.groupPath(lc), client.ResourcesVersion, nil, http.StatusOK)
		}},
		{"PUT group", 10, func(ctx context.Context, lt *loadTest, lc *apiLoadClient) error {
			seq := lc.next()
			err := lt.send(ctx, lc, "PUT", lt.groupPath(lc), client.ResourcesVersion, map[string]any{"location": "local", "tags": seqTags(seq)}, http.StatusOK)
			lc.acked(&lc.groupSeq, seq, err)
			return err
		}},
		{"PATCH group", 5, func(ctx context.Context, lt *loadTest, lc *apiLoadClient) error {
			seq := lc.next()
			err := lt.send(ctx, lc, "PATCH", lt.groupPath(lc), client.ResourcesVersion, map[string]any{"tags": seqTags(seq)}, http.StatusOK)
			lc.acked(&lc.groupSeq, seq, err)
			return err
		}},
		{"GET disk", 15, func(ctx context.Context, lt *loadTest, lc *apiLoadClient) error {
			return lt.send(ctx, lc, "GET", lt.diskPath(lc), client.ComputeVersion, nil, http.StatusOK)
		}},
		{"PATCH disk", 10, func(ctx context.Context, lt *loadTest, lc *apiLoadClient) error {
			seq := lc.next()
			err := lt.send(ctx, lc, "PATCH", lt.diskPath(lc), client.ComputeVersion, map[string]any{"tags": seqTags(seq)}, http.StatusOK)
			lc.acked(&lc.diskSeq, seq, err)
			return err
		}},
		{"PUT disk", 5, func(ctx context.Context, lt *loadTest, lc *apiLoadClient) error {
			seq := lc.next()
			err := lt.send(ctx, lc, "PUT", lt.diskPath(lc), client.ComputeVersion, map[string]any{"location": "local", "tags": seqTags(seq),
				"properties": map[string]any{"creationData": map[string]any{"createOption": "Empty"}, "diskSizeGB": 1}}, http.StatusOK)
			lc.acked(&lc.diskSeq, seq, err)
			return err
		}},
		{"GET vault", 10, func(ctx context.Context, lt *loadTest, lc *apiLoadClient) error {
			return lt.send(ctx, lc, "GET", lt.vaultPath(), client.DataProtectionVersion, nil, http.StatusOK)
		}},
		{"GET policy", 10, func(ctx context.Context, lt *loadTest, lc *apiLoadClient) error {
			return lt.send(ctx, lc, "GET", lt.vaultPath()+"/backupPolicies/hourly", client.DataProtectionVersion, nil, http.StatusOK)
		}},
		{"LIST jobs", 10, func(ctx context.Context, lt *loadTest, lc *apiLoadClient) error {
			return lt.send(ctx, lc, "GET", lt.vaultPath()+"/backupJobs", client.DataProtectionVersion, nil, http.StatusOK)
		}},
		{"LIST recovery points", 10, func(ctx context.Context, lt *loadTest, lc *apiLoadClient) error {
			return lt.send(ctx, lc, "GET", lt.vaultPath()+"/backupInstances/"+lt.instance+"/recoveryPoints", client.DataProtectionVersion, nil, http.StatusOK)
		}},
	}
	for k, kd := range lt.kinds {
		for range kd.weight {
			lt.pick = append(lt.pick, k)
		}
	}
	for i := range n {
		lt.clients = append(lt.clients, &apiLoadClient{id: i, rng: rand.New(rand.NewPCG(uint64(i), 7)),
			lat: make([][]time.Duration, len(lt.kinds)), errs: make([]int, len(lt.kinds))})
	}
	return lt
}

// setup creates each client's resource group and disk, and a service
// principal for it with Contributor on its group and Reader on the vault's
// group: the clients are 200 principals, and the authorization policy
// holds their 400 role assignments.
func (lt *loadTest) setup(ctx context.Context, c *client.Client) {
	t := lt.t
	var wg sync.WaitGroup
	errs := make(chan error, len(lt.clients))
	sem := make(chan struct{}, 8)
	for _, lc := range lt.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := c.CreateGroup(ctx, lc.group(), "local", nil); err != nil {
				errs <- err
				return
			}
			if _, err := c.CreateDisk(ctx, lc.group(), "d", client.DiskSpec{Location: "local", SizeGB: 1}, true); err != nil {
				errs <- err
				return
			}
			sp, err := c.CreateServicePrincipal(ctx, lc.group())
			if err != nil {
				errs <- err
				return
			}
			sub := "/subscriptions/" + lt.sub
			for _, a := range []struct{ role, scope string }{
				{rbac.RoleContributor, sub + "/resourceGroups/" + lc.group()},
				{rbac.RoleReader, sub + "/resourceGroups/load-vault"},
			} {
				if _, err := c.CreateRoleAssignment(ctx, a.scope, identity.NewGUID(), sub+"/providers/Microsoft.Authorization/roleDefinitions/"+a.role,
					sp.PrincipalID, "ServicePrincipal"); err != nil {
					errs <- err
					return
				}
			}
			if lc.token, err = c.ClientCredentials(ctx, lt.env.Admin.TenantID, sp.ClientID, sp.ClientSecret); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("set up the load clients: %v", err)
	}
}

func (lt *loadTest) groupPath(lc *apiLoadClient) string {
	return "/subscriptions/" + lt.sub + "/resourcegroups/" + lc.group()
}

func (lt *loadTest) diskPath(lc *apiLoadClient) string {
	return "/subscriptions/" + lt.sub + "/resourceGroups/" + lc.group() + "/providers/Microsoft.Compute/disks/d"
}

func (lt *loadTest) vaultPath() string {
	return "/subscriptions/" + lt.sub + "/resourceGroups/load-vault/providers/Microsoft.DataProtection/backupVaults/" + lt.vault
}

func seqTags(seq int) map[string]string { return map[string]string{"seq": strconv.Itoa(seq)} }

// send sends one request and reads the whole answer; a status other than
// want is an error carrying the answer.
func (lt *loadTest) send(ctx context.Context, lc *apiLoadClient, method, path, apiVersion string, body any, want int) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, lt.env.Endpoint+path+"?api-version="+apiVersion, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+lc.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := lt.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// checkVisible checks that each client's last acknowledged write of its
// group's and its disk's tags is what the API answers now.
func (lt *loadTest) checkVisible(ctx context.Context, c *client.Client) {
	t := lt.t
	writes := 0
	for _, lc := range lt.clients {
		g, err := c.GetGroup(ctx, lc.group())
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.GetDisk(ctx, lc.group(), "d")
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range []struct {
			what string
			tags map[string]string
			want int
		}{{"group " + lc.group(), g.Tags, lc.groupSeq}, {"disk of " + lc.group(), d.Tags, lc.diskSeq}} {
			if x.want == 0 {
				continue
			}
			writes++
			if got := x.tags["seq"]; got != strconv.Itoa(x.want) {
				t.Errorf("%s: tag seq %q, want %d (the last acknowledged write)", x.what, got, x.want)
			}
		}
	}
	t.Logf("%d groups and disks hold their last acknowledged write", writes)
}

// apiLoadClient is one API client: it owns a resource group and a disk in
// it, and sends one request after another.
type apiLoadClient struct {
	id    int
	token string // its principal's
	rng   *rand.Rand
	seq   int
	// groupSeq and diskSeq are the last acknowledged writes.
	groupSeq, diskSeq int
	lat               [][]time.Duration // per kind
	errs              []int
	firstErr          error
}

func (lc *apiLoadClient) group() string { return fmt.Sprintf("load-c%03d", lc.id) }

func (lc *apiLoadClient) next() int { lc.seq++; return lc.seq }

func (lc *apiLoadClient) acked(last *int, seq int, err error) {
	if err == nil {
		*last = seq
	}
}

// run sends requests until ctx ends; the request in flight then is
// answered and counted (cutting it off would leave its effect unknown).
func (lc *apiLoadClient) run(ctx context.Context, lt *loadTest) {
	for ctx.Err() == nil {
		k := lt.pick[lc.rng.IntN(len(lt.pick))]
		t0 := time.Now()
		err := lt.kinds[k].do(context.WithoutCancel(ctx), lt, lc)
		lc.lat[k] = append(lc.lat[k], time.Since(t0))
		if err != nil {
			lc.errs[k]++
			if lc.firstErr == nil {
				lc.firstErr = err
			}
		}
	}
}

// nbdLoadClient writes and reads back its own region of the disk over one
// NBD connection. Its model holds, per 4 KiB block, the seed the block's
// contents were generated from (absent: never written, zeros).
type nbdLoadClient struct {
	off, size int64
	model     map[int64]uint64
	rng       *rand.Rand
	reads     []time.Duration
	writes    []time.Duration
	flushes   int
	readErrs  int // failed reads and reads of other data than written
	writeErrs int // failed writes and flushes
	firstErr  error
}

const nbdLoadBlock = 4096

// nbdBlock fills b with the contents of block blk written with seed.
func nbdBlock(b []byte, seed uint64, blk int64) {
	if seed == 0 {
		clear(b)
		return
	}
	fillRandom(b, rand.New(rand.NewPCG(seed, uint64(blk))))
}

func (nc *nbdLoadClient) fail(read bool, err error) {
	if read {
		nc.readErrs++
	} else {
		nc.writeErrs++
	}
	if nc.firstErr == nil {
		nc.firstErr = err
	}
}

func (nc *nbdLoadClient) run(ctx context.Context, addr, export string) {
	cl, err := nbdtest.Dial(ctx, addr, export, nbdtest.Options{})
	if err != nil {
		nc.fail(false, fmt.Errorf("nbd connect: %w", err))
		return
	}
	defer cl.Close()
	buf := make([]byte, 16*nbdLoadBlock)
	want := make([]byte, nbdLoadBlock)
	blocks := nc.size / nbdLoadBlock
	for i := 0; ctx.Err() == nil; i++ {
		n := 1 + nc.rng.Int64N(16)
		first := nc.off/nbdLoadBlock + nc.rng.Int64N(blocks-n+1)
		p := buf[:n*nbdLoadBlock]
		t0 := time.Now()
		if nc.rng.IntN(2) == 0 {
			seed := nc.rng.Uint64() | 1
			for j := range n {
				nbdBlock(p[j*nbdLoadBlock:(j+1)*nbdLoadBlock], seed, first+j)
			}
			t0 = time.Now()
			if _, err := cl.WriteAt(p, first*nbdLoadBlock); err != nil {
				nc.fail(false, fmt.Errorf("nbd write of %d blocks at block %d: %w", n, first, err))
				return
			}
			nc.writes = append(nc.writes, time.Since(t0))
			for j := range n {
				nc.model[first+j] = seed
			}
		} else {
			if _, err := cl.ReadAt(p, first*nbdLoadBlock); err != nil {
				nc.fail(true, fmt.Errorf("nbd read of %d blocks at block %d: %w", n, first, err))
				return
			}
			nc.reads = append(nc.reads, time.Since(t0))
			for j := range n {
				nbdBlock(want, nc.model[first+j], first+j)
				if !bytes.Equal(p[j*nbdLoadBlock:(j+1)*nbdLoadBlock], want) {
					nc.fail(true, fmt.Errorf("nbd read of block %d returned other data than was written", first+j))
				}
			}
		}
		if i%64 == 63 {
			if _, err := cl.Do(nbdtest.CmdFlush, 0, 0, 0, nil); err != nil {
				nc.fail(false, fmt.Errorf("nbd flush: %w", err))
				return
			}
			nc.flushes++
		}
	}
	cl.Disconnect()
}

// checkNBDModels reads every client's region over a new connection and
// compares it with the client's model.
func checkNBDModels(t *testing.T, ctx context.Context, addr, export string, ncs []*nbdLoadClient) {
	cl, err := nbdtest.Dial(ctx, addr, export, nbdtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	want := make([]byte, nbdLoadBlock)
	bad := 0
	for _, nc := range ncs {
		for pos := nc.off; pos < nc.off+nc.size; pos += chunk {
			if _, err := cl.ReadAt(buf, pos); err != nil {
				t.Fatal(err)
			}
			for j := int64(0); j < chunk/nbdLoadBlock; j++ {
				blk := pos/nbdLoadBlock + j
				nbdBlock(want, nc.model[blk], blk)
				if !bytes.Equal(buf[j*nbdLoadBlock:(j+1)*nbdLoadBlock], want) {
					bad++
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d blocks of the NBD disk differ from what its clients wrote", bad)
	}
	cl.Disconnect()
}

// loadHealth polls /healthz during the run.
type loadHealth struct {
	ok, bad atomic.Int64
	mu      sync.Mutex
	first   string
}

func (h *loadHealth) watch(ctx context.Context, env *Env) {
	for ctx.Err() == nil {
		resp, err := env.HTTP.Get(env.Endpoint + "/healthz")
		var body []byte
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		switch {
		case err == nil && resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"ok"`)):
			h.ok.Add(1)
		default:
			h.bad.Add(1)
			h.mu.Lock()
			if h.first == "" {
				h.first = fmt.Sprintf("%v %s", err, body)
			}
			h.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (h *loadHealth) firstBad() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.first
}

// loadBackups snapshots the NBD disk, one snapshot after another: first
// on-demand backups of its backup instance, as many as a day allows
// (adhocBackupsPerDay), then incremental snapshots through
// Microsoft.Compute, which take the same path through the block engine
// and the chunk store.
type loadBackups struct {
	completed, failed atomic.Int64
	backups           int // of completed: on-demand backups
	mu                sync.Mutex
	durations         []time.Duration
	first             error
}

// adhocBackupsPerDay is Azure's (and Coffer's) cap on on-demand backups of
// one backup instance per day.
const adhocBackupsPerDay = 10

func (b *loadBackups) run(ctx context.Context, c *client.Client, p protection, diskID, snapGroup string) {
	for i := 0; ctx.Err() == nil; i++ {
		t0 := time.Now()
		// A snapshot is waited for beyond the end of the run: one cut
		// short would say nothing.
		wctx := context.WithoutCancel(ctx)
		var err error
		if i < adhocBackupsPerDay {
			var jobID string
			if jobID, err = c.BackupNow(wctx, p.rg, p.vault, p.name, "BackupIntervals", "Default"); err == nil {
				err = waitJobStatus(wctx, c, p, jobID)
			}
		} else {
			var sn client.Snapshot
			sn, err = c.CreateSnapshot(wctx, snapGroup, fmt.Sprintf("load-%d", i), client.SnapshotSpec{Location: "local", Source: diskID, Incremental: true}, true)
			if err == nil && sn.Properties.ProvisioningState != "Succeeded" {
				err = fmt.Errorf("snapshot %s: provisioning state %s", sn.Name, sn.Properties.ProvisioningState)
			}
		}
		b.mu.Lock()
		if err != nil {
			b.failed.Add(1)
			if b.first == nil {
				b.first = err
			}
		} else {
			b.completed.Add(1)
			if i < adhocBackupsPerDay {
				b.backups++
			}
			b.durations = append(b.durations, time.Since(t0))
		}
		b.mu.Unlock()
	}
}

func (b *loadBackups) err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.first
}

func waitJobStatus(ctx context.Context, c *client.Client, p protection, id string) error {
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		j, err := c.GetJob(ctx, p.rg, p.vault, id)
		if err != nil {
			return err
		}
		switch j.Properties.Status {
		case "Completed":
			return nil
		case "InProgress", "NotStarted":
		default:
			return fmt.Errorf("backup job %s: %s %+v", id, j.Properties.Status, j.Properties.ErrorDetails)
		}
	}
	return fmt.Errorf("backup job %s did not end within 5 minutes", id)
}

func parseNBDURL(t *testing.T, s string) (addr, export string) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "nbd" {
		t.Fatalf("NBD URL %q: %v", s, err)
	}
	return u.Host, strings.TrimPrefix(u.Path, "/")
}

// startProfiles starts a CPU profile and mutex and block profiling when
// dir is set; the returned function writes them.
func startProfiles(t *testing.T, dir string) func() {
	if dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cpu, err := os.Create(filepath.Join(dir, "cpu.pprof"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		t.Fatal(err)
	}
	runtime.SetMutexProfileFraction(10)
	runtime.SetBlockProfileRate(int(10 * time.Microsecond))
	return func() {
		pprof.StopCPUProfile()
		cpu.Close()
		for _, name := range []string{"mutex", "block", "goroutine"} {
			f, err := os.Create(filepath.Join(dir, name+".pprof"))
			if err != nil {
				t.Fatal(err)
			}
			pprof.Lookup(name).WriteTo(f, 0)
			f.Close()
		}
		runtime.SetMutexProfileFraction(0)
		runtime.SetBlockProfileRate(0)
		t.Logf("profiles written to %s", dir)
	}
}

// loadReport is TestLoad's figures.
type loadReport struct {
	Clients      int          `json:"clients"`
	NBDClients   int          `json:"nbdClients"`
	Seconds      float64      `json:"seconds"`
	APIRequests  int          `json:"apiRequests"`
	APIPerSecond float64      `json:"apiRequestsPerSecond"`
	NBDRequests  int          `json:"nbdRequests"`
	Errors       int          `json:"errors"` // API and NBD
	ErrorRate    float64      `json:"errorRate"`
	Kinds        []kindReport `json:"kinds"`
	// Snapshots completed during the run, OnDemandBackups of them
	// through the backup instance, the rest through Microsoft.Compute.
	Snapshots       int64   `json:"snapshots"`
	OnDemandBackups int     `json:"onDemandBackups"`
	SnapshotP50     float64 `json:"snapshotP50Seconds"`
	HealthPolls     int64   `json:"healthPolls"`
	GoVersion       string  `json:"goVersion"`
	firstErrors     []string
}

type kindReport struct {
	Kind      string  `json:"kind"`
	Count     int     `json:"count"`
	Errors    int     `json:"errors"`
	PerSecond float64 `json:"perSecond"`
	P50ms     float64 `json:"p50ms"`
	P99ms     float64 `json:"p99ms"`
	Maxms     float64 `json:"maxms"`
}

func kindOf(name string, lat []time.Duration, errs int, secs float64) kindReport {
	slices.Sort(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	return kindReport{Kind: name, Count: len(lat), Errors: errs, PerSecond: float64(len(lat)) / secs, P50ms: q(0.50), P99ms: q(0.99), Maxms: q(1)}
}

func (lt *loadTest) report(elapsed time.Duration, nbds []*nbdLoadClient, h *loadHealth, b *loadBackups) loadReport {
	secs := elapsed.Seconds()
	rep := loadReport{Clients: len(lt.clients), NBDClients: len(nbds), Seconds: secs, HealthPolls: h.ok.Load() + h.bad.Load(),
		Snapshots: b.completed.Load(), GoVersion: runtime.Version()}
	var all, writes []time.Duration
	allErrs, writeErrs := 0, 0
	for k, kd := range lt.kinds {
		var lat []time.Duration
		errs := 0
		for _, lc := range lt.clients {
			lat = append(lat, lc.lat[k]...)
			errs += lc.errs[k]
		}
		all, allErrs = append(all, lat...), allErrs+errs
		if !strings.HasPrefix(kd.name, "GET") && !strings.HasPrefix(kd.name, "LIST") {
			writes, writeErrs = append(writes, lat...), writeErrs+errs
		}
		rep.Kinds = append(rep.Kinds, kindOf(kd.name, lat, errs, secs))
	}
	rep.Kinds = append(rep.Kinds, kindOf("all writes (PUT, PATCH)", writes, writeErrs, secs), kindOf("all API requests", all, allErrs, secs))
	var reads, nwrites []time.Duration
	rerrs, werrs := 0, 0
	for _, nc := range nbds {
		reads, nwrites = append(reads, nc.reads...), append(nwrites, nc.writes...)
		rerrs, werrs = rerrs+nc.readErrs, werrs+nc.writeErrs
		if nc.firstErr != nil {
			rep.firstErrors = append(rep.firstErrors, nc.firstErr.Error())
		}
	}
	rep.Kinds = append(rep.Kinds, kindOf("NBD read (4-64 KiB)", reads, rerrs, secs), kindOf("NBD write (4-64 KiB)", nwrites, werrs, secs))
	for _, lc := range lt.clients {
		if lc.firstErr != nil && len(rep.firstErrors) < 5 {
			rep.firstErrors = append(rep.firstErrors, lc.firstErr.Error())
		}
	}
	rep.APIRequests, rep.NBDRequests, rep.Errors = len(all), len(reads)+len(nwrites), allErrs+rerrs+werrs
	rep.APIPerSecond = float64(len(all)) / secs
	if n := rep.APIRequests + rep.NBDRequests; n > 0 {
		rep.ErrorRate = float64(rep.Errors) / float64(n)
	}
	b.mu.Lock()
	rep.OnDemandBackups = b.backups
	if d := b.durations; len(d) > 0 {
		slices.Sort(d)
		rep.SnapshotP50 = d[len(d)/2].Seconds()
	}
	b.mu.Unlock()
	return rep
}

func (r loadReport) log(t *testing.T) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d API clients and %d NBD clients for %.1f s: %d API requests (%.0f/s) and %d NBD requests, %d errors (rate %g); "+
		"%d snapshots (%d on-demand backups), p50 %.2f s; %d /healthz polls\n",
		r.Clients, r.NBDClients, r.Seconds, r.APIRequests, r.APIPerSecond, r.NBDRequests, r.Errors, r.ErrorRate,
		r.Snapshots, r.OnDemandBackups, r.SnapshotP50, r.HealthPolls)
	fmt.Fprintf(&sb, "%-26s %8s %8s %7s %9s %9s %9s\n", "kind", "count", "per s", "errors", "p50 ms", "p99 ms", "max ms")
	for _, k := range r.Kinds {
		fmt.Fprintf(&sb, "%-26s %8d %8.1f %7d %9.1f %9.1f %9.1f\n", k.Kind, k.Count, k.PerSecond, k.Errors, k.P50ms, k.P99ms, k.Maxms)
	}
	t.Log("\n" + sb.String())
}
