package dataprotection_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/authorization"
	"coffer/internal/clock"
	"coffer/internal/dataprotection"
	"coffer/internal/identity"
	"coffer/internal/job"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/store/memstore"
	"coffer/internal/store/storetest"
	"coffer/internal/tenant"
	"coffer/internal/worker"
)

// fakeDisks is an in-memory Compute: disks and snapshots with their bytes.
// Like Compute, it makes Azure's linked access check of what a write reads
// from (the disk of a snapshot, the snapshot of a restore) through authz.
type fakeDisks struct {
	authz *authorization.Service
	mu    sync.Mutex
	disks map[string]*fakeDisk
	snaps map[string]*fakeSnap
	// block, when set, is called inside CreateSnapshot (restart tests).
	block func(ctx context.Context) error
	// after, when set, is called once the snapshot is committed.
	after func(ctx context.Context) error
	// afterDelete, when set, is called once a snapshot is deleted.
	afterDelete func(ctx context.Context) error
	// afterRestore, when set, is called once a disk is made from a
	// snapshot.
	afterRestore func(ctx context.Context) error
	// fail, when set, makes CreateSnapshot fail with it; with failLeaves
	// the failed snapshot stays as a resource that is not readable (as
	// Compute keeps a Failed snapshot).
	fail       error
	failLeaves bool
	// progress, when set, answers SnapshotProgress.
	progress func(snap resource.ID) progressAnswer
	// running counts snapshots in progress per disk, to catch overlaps.
	running    map[string]int
	maxRunning int
	clk        clock.Clock
	// saved* keep what a test removed, to put it back.
	saved     *fakeDisk
	savedSnap *fakeSnap
	savedKey  string
}

type fakeDisk struct {
	info dataprotection.DiskInfo
	data []byte
}

type fakeSnap struct {
	info   dataprotection.SnapshotInfo
	data   []byte
	failed bool
}

func newFakeDisks(clk clock.Clock) *fakeDisks {
	return &fakeDisks{disks: map[string]*fakeDisk{}, snaps: map[string]*fakeSnap{}, running: map[string]int{}, clk: clk}
}

func (f *fakeDisks) add(id resource.ID, location, sku string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disks[id.Key()] = &fakeDisk{info: dataprotection.DiskInfo{ID: id.String(), Name: id.Name(), Location: location, SKU: sku, SizeBytes: int64(len(data))},
		data: append([]byte(nil), data...)}
}

func (f *fakeDisks) write(id resource.ID, off int, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	copy(f.disks[id.Key()].data[off:], b)
}

func (f *fakeDisks) hash(id resource.ID) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.disks[id.Key()]
	if !ok {
		return "missing"
	}
	h := sha256.Sum256(d.data)
	return hex.EncodeToString(h[:])
}

func (f *fakeDisks) snapshotCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.snaps)
}

func (f *fakeDisks) GetDisk(ctx context.Context, id resource.ID) (dataprotection.DiskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.disks[id.Key()]
	if !ok {
		return dataprotection.DiskInfo{}, fmt.Errorf("disk %s: %w", id, dataprotection.ErrNotFound)
	}
	return d.info, nil
}

func (f *fakeDisks) GetSnapshot(ctx context.Context, id resource.ID) (dataprotection.SnapshotInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.snaps[id.Key()]
	if !ok || s.failed {
		return dataprotection.SnapshotInfo{}, fmt.Errorf("snapshot %s: %w", id, dataprotection.ErrNotFound)
	}
	return s.info, nil
}

// linked makes Compute's linked access check.
func (f *fakeDisks) linked(ctx context.Context, as identity.Principal, own, linked authorization.Need) error {
	if f.authz == nil {
		return nil
	}
	return f.authz.RequireLinked(ctx, as, own, linked)
}

// progressAnswer is what the fake's SnapshotProgress answers.
type progressAnswer struct {
	dataprotection.SnapshotProgress
	Err error
}

func (f *fakeDisks) SnapshotProgress(ctx context.Context, snap resource.ID) (dataprotection.SnapshotProgress, error) {
	f.mu.Lock()
	fn := f.progress
	f.mu.Unlock()
	if fn == nil {
		return dataprotection.SnapshotProgress{}, nil
	}
	a := fn(snap)
	return a.SnapshotProgress, a.Err
}

func (f *fakeDisks) CreateSnapshot(ctx context.Context, as identity.Principal, snap, disk resource.ID) (dataprotection.SnapshotInfo, error) {
	if err := f.linked(ctx, as, authorization.Need{Action: dataprotection.ActionSnapshotWrite, Scope: snap.String()},
		authorization.Need{Action: dataprotection.ActionDiskBeginGetAccess, Scope: disk.String()}); err != nil {
		return dataprotection.SnapshotInfo{}, err
	}
	f.mu.Lock()
	f.running[disk.Key()]++
	f.maxRunning = max(f.maxRunning, f.running[disk.Key()])
	d, ok := f.disks[disk.Key()]
	var data []byte
	if ok {
		data = append([]byte(nil), d.data...)
	}
	block, fail := f.block, f.fail
	if fail != nil && f.failLeaves && ok {
		f.snaps[snap.Key()] = &fakeSnap{info: dataprotection.SnapshotInfo{ID: snap.String()}, failed: true}
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running[disk.Key()]--
		f.mu.Unlock()
	}()
	if !ok {
		return dataprotection.SnapshotInfo{}, dataprotection.ErrNotFound
	}
	if fail != nil {
		return dataprotection.SnapshotInfo{}, fail
	}
	if block != nil {
		if err := block(ctx); err != nil {
			return dataprotection.SnapshotInfo{}, err
		}
	}
	info := dataprotection.SnapshotInfo{ID: snap.String(), Location: d.info.Location, SourceDisk: disk.String(), SizeBytes: int64(len(data)),
		Incremental: true, TimeCreated: f.clk.Now(), DiskSKU: d.info.SKU}
	f.mu.Lock()
	f.snaps[snap.Key()] = &fakeSnap{info: info, data: data}
	after := f.after
	f.mu.Unlock()
	if after != nil {
		if err := after(ctx); err != nil {
			return dataprotection.SnapshotInfo{}, err
		}
	}
	return info, nil
}

func (f *fakeDisks) DeleteSnapshot(ctx context.Context, as identity.Principal, snap resource.ID) error {
	f.mu.Lock()
	if _, ok := f.snaps[snap.Key()]; !ok {
		f.mu.Unlock()
		return dataprotection.ErrNotFound
	}
	delete(f.snaps, snap.Key())
	after := f.afterDelete
	f.mu.Unlock()
	if after != nil {
		return after(ctx)
	}
	return nil
}

func (f *fakeDisks) hasSnapshot(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.snaps[resource.MustParse(id).Key()]
	return ok
}

func (f *fakeDisks) CreateDiskFromSnapshot(ctx context.Context, as identity.Principal, disk, snap resource.ID, location, sku string) (dataprotection.DiskInfo, error) {
	if err := f.linked(ctx, as, authorization.Need{Action: dataprotection.ActionDiskWrite, Scope: disk.String()},
		authorization.Need{Action: dataprotection.ActionSnapshotBeginGetAccess, Scope: snap.String()}); err != nil {
		return dataprotection.DiskInfo{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.snaps[snap.Key()]
	if !ok {
		return dataprotection.DiskInfo{}, dataprotection.ErrNotFound
	}
	info := dataprotection.DiskInfo{ID: disk.String(), Name: disk.Name(), Location: location, SKU: sku, SizeBytes: int64(len(s.data))}
	f.disks[disk.Key()] = &fakeDisk{info: info, data: append([]byte(nil), s.data...)}
	if after := f.afterRestore; after != nil {
		f.mu.Unlock()
		defer f.mu.Lock()
		return info, after(ctx)
	}
	return info, nil
}

func (f *fakeDisks) DeleteDisk(ctx context.Context, disk resource.ID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.disks[disk.Key()]; !ok {
		return dataprotection.ErrNotFound
	}
	delete(f.disks, disk.Key())
	return nil
}

// VerifySnapshot finds a snapshot's bytes intact unless its disk's
// snapshot was marked failed.
func (f *fakeDisks) VerifySnapshot(ctx context.Context, snap resource.ID) (dataprotection.SnapshotCheck, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sn, ok := f.snaps[snap.Key()]
	if !ok {
		return dataprotection.SnapshotCheck{}, dataprotection.ErrNotFound
	}
	if sn.failed {
		return dataprotection.SnapshotCheck{Chunks: 1, Problems: []string{"chunk 0: corrupt"}}, nil
	}
	return dataprotection.SnapshotCheck{Chunks: int64(len(sn.data)/65536 + 1)}, nil
}

// fakeIdentities creates managed identities as bare principals.
type fakeIdentities struct{}

func (fakeIdentities) CreateManagedIdentityTx(ctx context.Context, tx store.Tx, resourceID, name string) (identity.Principal, error) {
	p := identity.Principal{ID: identity.NewGUID(), Kind: identity.ManagedIdentity, DisplayName: name, ResourceID: resourceID, TenantID: "tenant-1"}
	b, _ := json.Marshal(p)
	return p, tx.Put(ctx, &store.Object{Kind: "identity.principal", Key: "/principals/" + p.ID, Data: b}, store.PutOptions{})
}

func (fakeIdentities) DeleteTx(ctx context.Context, tx store.Tx, id string) error { return nil }

// env is a dataprotection service on an in-memory store and a fake clock.
type env struct {
	t      testing.TB
	ctx    context.Context
	st     store.Store
	clk    *clock.Fake
	disks  *fakeDisks
	tenant *tenant.Service
	authz  *authorization.Service
	queue  *job.Queue
	svc    *dataprotection.Service
	pool   *worker.Pool
	sched  *dataprotection.Scheduler
}

const (
	subA = "aaaaaaaa-0000-0000-0000-000000000001"
	subB = "bbbbbbbb-0000-0000-0000-000000000002"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newEnv(t *testing.T, start time.Time) *env {
	t.Helper()
	// Every Update runs its function twice, as PostgreSQL may (the store
	// contract): each test here also checks that the service's Update
	// functions are safe to re-run.
	return newEnvOn(t, storetest.Rerun(memstore.New()), clock.NewFake(start), nil)
}

// newEnvOn builds the service on st (a "restart" passes the same store and
// fake disks).
func newEnvOn(t testing.TB, st store.Store, clk *clock.Fake, disks *fakeDisks) *env {
	t.Helper()
	e := &env{t: t, ctx: context.Background(), st: st, clk: clk, disks: disks}
	if e.disks == nil {
		e.disks = newFakeDisks(clk)
	}
	e.tenant = &tenant.Service{Store: st, Clock: clk, TenantID: "tenant-1", Regions: []string{"local", "east"}}
	e.authz = &authorization.Service{Store: st, Clock: clk}
	e.disks.authz = e.authz
	e.queue = job.NewQueue(st, clk)
	e.queue.Backoff = func(int) time.Duration { return time.Second }
	e.svc = &dataprotection.Service{Store: st, Clock: clk, Queue: e.queue, Authz: e.authz, Identities: fakeIdentities{},
		Groups: e.tenant, Disks: e.disks, Logger: quiet, TenantID: "tenant-1"}
	e.pool = worker.NewPool(e.queue, clk, quiet, 1)
	e.pool.Handle(dataprotection.TaskBackup, e.svc.ExecBackup)
	e.pool.Handle(dataprotection.TaskRestore, e.svc.ExecRestore)
	e.pool.Handle(dataprotection.TaskRetention, e.svc.ExecRetention)
	e.pool.Handle(dataprotection.TaskDeleteInstance, e.svc.ExecDeleteInstance)
	e.pool.Dead = e.svc.FailTask
	e.sched = dataprotection.NewScheduler(e.svc, clk, quiet)
	if disks == nil {
		e.update(func(tx store.Tx) error {
			for _, s := range []string{subA, subB} {
				if _, err := e.tenant.CreateSubscription(e.ctx, tx, s, s, "test"); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return e
}

func (e *env) update(fn func(tx store.Tx) error) {
	e.t.Helper()
	if err := e.st.Update(e.ctx, fn); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) group(sub, name, location string) resource.ID {
	e.t.Helper()
	id := resource.GroupID(sub, name)
	e.update(func(tx store.Tx) error {
		_, _, err := e.tenant.PutGroup(e.ctx, tx, id, tenant.PutGroupInput{Location: location}, "test", "User")
		return err
	})
	return id
}

func diskID(sub, rg, name string) resource.ID {
	return resource.GroupID(sub, rg).Child("Microsoft.Compute/disks", name)
}

func (e *env) vault(sub, rg, name, location string, withIdentity bool) (resource.ID, string) {
	e.t.Helper()
	id := dataprotection.VaultID(sub, rg, name)
	in := dataprotection.VaultInput{Location: location, StorageSettings: []dataprotection.StorageSetting{{DatastoreType: "VaultStore", Type: "LocallyRedundant"}}}
	if withIdentity {
		in.IdentityType = dataprotection.IdentitySystemAssigned
	}
	v, _, err := e.svc.PutVault(e.ctx, dataprotection.Caller{Name: "test"}, id, in)
	if err != nil {
		e.t.Fatalf("put vault: %v", err)
	}
	if v.Identity == nil {
		return id, ""
	}
	return id, v.Identity.PrincipalID
}

func (e *env) policy(vault resource.ID, name string, props any) resource.ID {
	e.t.Helper()
	id := vault.Child("backupPolicies", name)
	var r dataprotection.BaseBackupPolicyResource
	if err := json.Unmarshal(mustJSON(map[string]any{"properties": props}), &r); err != nil {
		e.t.Fatalf("decode policy: %v", err)
	}
	if _, _, err := e.svc.PutPolicy(e.ctx, id, r.Properties); err != nil {
		e.t.Fatalf("put policy: %v", err)
	}
	return id
}

func (e *env) assign(principal, roleGUID, scope string) {
	e.t.Helper()
	e.update(func(tx store.Tx) error {
		_, err := e.authz.Assign(e.ctx, tx, principal, "ServicePrincipal", roleGUID, scope, "test")
		return err
	})
}

func (e *env) unassign(principal, roleGUID string) {
	e.t.Helper()
	e.update(func(tx store.Tx) error {
		as, err := e.authz.List(e.ctx, tx)
		if err != nil {
			return err
		}
		for _, a := range as {
			if strings.EqualFold(a.PrincipalID, principal) && strings.HasSuffix(strings.ToLower(a.RoleDefinitionID), roleGUID) {
				if _, err := e.authz.Delete(e.ctx, tx, a.Scope, a.Name); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func biJSON(disk resource.ID, location string, policy resource.ID, snapRG string) map[string]any {
	props := map[string]any{
		"objectType": "BackupInstance",
		"dataSourceInfo": map[string]any{"objectType": "Datasource", "datasourceType": "Microsoft.Compute/disks", "resourceID": disk.String(),
			"resourceLocation": location, "resourceName": disk.Name(), "resourceType": "Microsoft.Compute/disks", "resourceUri": ""},
		"policyInfo": map[string]any{"policyId": policy.String()},
	}
	if snapRG != "" {
		props["policyInfo"].(map[string]any)["policyParameters"] = map[string]any{"dataStoreParametersList": []any{map[string]any{
			"objectType": "AzureOperationalStoreParameters", "dataStoreType": "OperationalStore", "resourceGroupId": snapRG}}}
	}
	return props
}

// instance is the backup instance whose properties props holds in ARM's
// shape (the domain model decodes it as the API does).
func instance(props map[string]any) dataprotection.Instance {
	var in dataprotection.Instance
	if err := json.Unmarshal(mustJSON(props), &in); err != nil {
		panic(err)
	}
	return in
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// protect puts and configures a backup instance; it fails the test on error.
func (e *env) protect(bi resource.ID, props map[string]any) {
	e.t.Helper()
	if err := e.tryProtect(bi, props); err != nil {
		e.t.Fatalf("protect %s: %v", bi.Name(), err)
	}
}

func (e *env) tryProtect(bi resource.ID, props map[string]any) error {
	if _, _, err := e.svc.PutInstance(e.ctx, dataprotection.Caller{Name: "test"}, bi, dataprotection.InstanceInput{Properties: instance(props)}); err != nil {
		return err
	}
	_, err := e.svc.ConfigureInstance(e.ctx, bi)
	return err
}

func (e *env) drain() {
	e.t.Helper()
	if err := e.pool.Drain(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) job(jobID string) job.Resource {
	e.t.Helper()
	id := resource.MustParse(jobID)
	j, err := e.svc.GetJob(e.ctx, dataprotection.VaultID(id.Subscription, id.ResourceGroup, id.Names[0]), id.Name())
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

func (e *env) backupNow(bi resource.ID, rule, tag string) (string, error) {
	return e.svc.AdhocBackup(e.ctx, bi, dataprotection.BackupRequest{RuleName: rule, RetentionTag: tag})
}

func (e *env) rps(bi resource.ID) []dataprotection.RecoveryPointResource {
	e.t.Helper()
	rps, err := e.svc.ListRecoveryPoints(e.ctx, bi, dataprotection.RPFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return rps
}

func code(err error) string {
	if e := resource.AsError(err); e != nil {
		return e.Code
	}
	if err == nil {
		return ""
	}
	return "non-ARM error: " + err.Error()
}

// standard is the common setup: a vault in subscription A, a disk and a
// snapshot group in subscription A, the default policy, all roles.
type standard struct {
	vault     resource.ID
	principal string
	policy    resource.ID
	disk      resource.ID
	snapRG    resource.ID
	bi        resource.ID
}

func (e *env) standard(withRoles bool) standard {
	e.t.Helper()
	var s standard
	e.group(subA, "rg-vault", "local")
	e.group(subA, "rg-disks", "local")
	s.snapRG = e.group(subA, "rg-snaps", "local")
	s.vault, s.principal = e.vault(subA, "rg-vault", "vault1", "local", true)
	s.policy = e.policy(s.vault, "DiskPolicy", dataprotection.DefaultPolicyTemplate())
	s.disk = diskID(subA, "rg-disks", "data1")
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i * 31)
	}
	e.disks.add(s.disk, "local", "StandardSSD_LRS", data)
	s.bi = dataprotection.InstanceID(s.vault, "data1-bi")
	if withRoles {
		e.assign(s.principal, "3e5e47e6-65f7-47ef-90b5-e5dd4d455f24", s.disk.String())
		e.assign(s.principal, "7efff54f-a5b4-42b5-a1c5-5411624893ce", s.snapRG.String())
	}
	return s
}
