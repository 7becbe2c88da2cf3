package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/identity"
	"coffer/internal/rbac"
)

// Scope levels at which a row holds a role. Each names scopes of the
// fixtures and of the row's own resources (see scopesAt).
const (
	levelResource          = "resource"
	levelGroup             = "resource group"
	levelSubscription      = "subscription"
	levelOwnGroup          = "own group"
	levelOtherSubscription = "another subscription"
)

// mxRole is a role a row holds at a level.
type mxRole struct {
	role  rbac.RoleDefinition
	level string
}

// mxGrant is one role assignment of a row.
type mxGrant struct {
	role  rbac.RoleDefinition
	scope string
}

// mxPrincipal is one row of the matrix: a service principal holding one
// built-in role at one scope level (on every resource of the fixtures
// that level names), or an edge case (no role, roles in another
// subscription, read access to the fixtures with write access to a group
// of its own, no token).
type mxPrincipal struct {
	index    int
	label    string
	roles    []mxRole
	id       string
	clientID string
	secret   string
	token    string    // "" for the row without a token
	grants   []mxGrant // its role assignments

	// Set by earlier cells of the row, used by later ones.
	readGrant, writeGrant, snapGrant *client.AccessURI
	apiToken, apiTokenID             string

	// Prepared for its own cells: admin grants on de/se disks whose
	// endGetAccess cells must revoke them, and the sink principal its role
	// assignment cells assign to.
	endDiskSAS, endSnapSAS string
	sink                   string
}

// matrix holds the server, the shared fixtures and the rows.
type matrix struct {
	env   *Env
	admin *client.Client
	http  *http.Client

	sub, sub2, tenant string
	rg                string // the fixtures' group, in sub
	otherRG           string // a group in sub2

	adminSAS, adminSnapSAS   string // admin's Write grant on d, Read grant on s
	opRead, opWrite, opVault string // operation IDs: admin's Read and Write grants on d, vault PUT
	rpName, jobName          string
	sharedSink               string // a principal with a fixture assignment at d
	fixtureAssignment        string // its name
	adminTokenID, adminAPI   string // an API token of the admin
	vaultBody                map[string]any

	rows []*mxPrincipal

	mu       sync.Mutex
	declared map[string][]mxNeed
}

// The fixtures' names; per-row disposables add "-NN".
const (
	mxDisk   = "d"  // data-path disk: each row owns a 1 MiB region
	mxPD     = "pd" // the protected disk
	mxSnap   = "s"  // snapshot of d after the regions were filled
	mxVault  = "vault"
	mxPolicy = "policy"
	mxBI     = "bi"
	// mxBackupBIs is how many instances share the backup column's rows,
	// so that none gets more than MaxAdhocBackupsPerDay.
	mxBackupBIs = 5
	// mxSnapGroup holds the backups' snapshots.
	mxSnapGroup = "mx-snaps"
	regionSize  = 1 << 20
	subRange    = 64 << 10 // one 64 KiB block per data-path cell
)

func (m *matrix) groupID(name string) string {
	return "/subscriptions/" + m.sub + "/resourceGroups/" + name
}

func (m *matrix) diskID(name string) string {
	return m.groupID(m.rg) + "/providers/Microsoft.Compute/disks/" + name
}

func (m *matrix) snapID(name string) string {
	return m.groupID(m.rg) + "/providers/Microsoft.Compute/snapshots/" + name
}

func (m *matrix) vaultID(name string) string {
	return m.groupID(m.rg) + "/providers/Microsoft.DataProtection/backupVaults/" + name
}

func (m *matrix) policyID(name string) string {
	return m.vaultID(mxVault) + "/backupPolicies/" + name
}

func (m *matrix) biID(name string) string { return m.vaultID(mxVault) + "/backupInstances/" + name }

// backupDisks are the protected disks: pd (of instance bi, which holds
// the recovery point) and pd-1… of bi-1….
func backupDisks() []string {
	out := []string{mxPD}
	for i := 1; i < mxBackupBIs; i++ {
		out = append(out, fmt.Sprintf("%s-%d", mxPD, i))
	}
	return out
}

func backupInstances() []string {
	out := []string{mxBI}
	for i := 1; i < mxBackupBIs; i++ {
		out = append(out, fmt.Sprintf("%s-%d", mxBI, i))
	}
	return out
}

// backupInstanceOf is the instance row p backs up.
func backupInstanceOf(p *mxPrincipal) string { return backupInstances()[p.index%mxBackupBIs] }

// own names row p's disposable resource of kind.
func own(kind string, p *mxPrincipal) string { return fmt.Sprintf("%s-%02d", kind, p.index) }

// region is the offset of row p's region of disk d.
func region(p *mxPrincipal) int64 { return int64(p.index) * regionSize }

// pattern is the content row p's region starts with; ^pattern is what its
// writes put there.
func pattern(p *mxPrincipal, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(p.index*37+i*11) | 0x80
	}
	return b
}

// newMatrix starts a server and builds the fixtures and the rows.
func newMatrix(ctx context.Context, t testing.TB) *matrix {
	m := newFixtures(ctx, t)
	m.rows = m.newRows()
	var errs []error
	var mu sync.Mutex
	forEachParallel(m.rows, 4, func(p *mxPrincipal) {
		if err := m.buildRow(ctx, p); err != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("row %s: %w", p.label, err))
			mu.Unlock()
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("matrix rows: %v", err)
	}
	if err := m.fillRegions(ctx); err != nil {
		t.Fatalf("matrix regions: %v", err)
	}
	return m
}

// newFixtures starts a server with the shared fixtures and no rows.
func newFixtures(ctx context.Context, t testing.TB) *matrix {
	env := Start(t, Options{})
	tr := env.HTTP.Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	m := &matrix{env: env, admin: env.Client(""), http: &http.Client{Transport: tr, Timeout: time.Minute},
		sub: env.Admin.SubscriptionID, tenant: env.Admin.TenantID, rg: "mx", otherRG: "mx-other", declared: map[string][]mxNeed{}}
	m.admin.HTTP = m.http
	if err := m.buildShared(ctx); err != nil {
		t.Fatalf("matrix fixtures: %v", err)
	}
	return m
}

// newRows lists the rows: each built-in role at each level, then the
// edge cases.
func (m *matrix) newRows() []*mxPrincipal {
	var rows []*mxPrincipal
	for _, r := range rbac.BuiltInRoles() {
		for _, lvl := range []string{levelResource, levelGroup, levelSubscription} {
			rows = append(rows, &mxPrincipal{label: r.RoleName + " @ " + lvl, roles: []mxRole{{r, lvl}}})
		}
	}
	builtin := func(id string) rbac.RoleDefinition {
		r, _ := rbac.BuiltInRoleByID(id)
		return r
	}
	rows = append(rows, &mxPrincipal{label: "no role"},
		&mxPrincipal{label: "Owner of another subscription", roles: []mxRole{{builtin(rbac.RoleOwner), levelOtherSubscription}}},
		// Copying a disk it may only read into a group it owns must not
		// give it the disk's data.
		&mxPrincipal{label: "Reader @ resource group + Contributor @ own group",
			roles: []mxRole{{builtin(rbac.RoleReader), levelGroup}, {builtin(rbac.RoleContributor), levelOwnGroup}}},
		&mxPrincipal{label: "no token"})
	for i, p := range rows {
		p.index = i
	}
	return rows
}

// buildShared creates what every row uses: a second subscription, the
// group, disks d and pd, snapshot s, vault v with policy p and backup
// instance bi (with one recovery point), the admin's grants and API token.
func (m *matrix) buildShared(ctx context.Context) error {
	a := m.admin
	alias, err := a.CreateSubscription(ctx, "mx-other", "matrix: another subscription", "")
	if err != nil {
		return err
	}
	m.sub2 = alias.Properties.SubscriptionID
	other := *a
	other.Subscription = m.sub2
	if _, err := other.CreateGroup(ctx, m.otherRG, "local", nil); err != nil {
		return err
	}
	for _, g := range []string{m.rg, mxSnapGroup} {
		if _, err := a.CreateGroup(ctx, g, "local", nil); err != nil {
			return err
		}
	}
	for _, d := range append([]string{mxDisk}, backupDisks()...) {
		if _, err := a.CreateDisk(ctx, m.rg, d, client.DiskSpec{Location: "local", SizeGB: 1}, true); err != nil {
			return err
		}
	}
	w, opWrite, err := m.adminGrant(ctx, client.Disks, mxDisk, "Write")
	if err != nil {
		return err
	}
	m.adminSAS, m.opWrite = w.AccessSAS, opWrite
	if _, m.opRead, err = m.adminGrant(ctx, client.Disks, mxDisk, "Read"); err != nil {
		return err
	}
	pw, _, err := m.adminGrant(ctx, client.Disks, mxPD, "Write")
	if err != nil {
		return err
	}
	if err := a.PutPages(ctx, pw.AccessSAS, 0, make([]byte, regionSize)); err != nil {
		return err
	}
	if err := a.RevokeAccess(ctx, client.Disks, m.rg, mxPD); err != nil {
		return err
	}

	// The vault, its identity's roles, policy, instance, a recovery point.
	m.vaultBody = map[string]any{"location": "local", "identity": map[string]any{"type": "SystemAssigned"},
		"properties": map[string]any{"storageSettings": []any{map[string]any{"datastoreType": "VaultStore", "type": "LocallyRedundant"}}}}
	resp, err := a.Do(ctx, http.MethodPut, m.vaultID(mxVault), client.DataProtectionVersion, nil, m.vaultBody, nil)
	if err != nil {
		return err
	}
	m.opVault = lastSegment(resp.Header.Get("Azure-AsyncOperation"))
	v, err := a.GetVault(ctx, m.rg, mxVault)
	if err != nil {
		return err
	}
	for _, r := range []struct{ role, scope string }{
		{rbac.RoleDiskBackupReader, m.groupID(m.rg)},
		{rbac.RoleDiskSnapshotContributor, m.groupID(mxSnapGroup)},
		{rbac.RoleDiskRestoreOperator, m.groupID(m.rg)},
	} {
		if err := m.assign(ctx, r.scope, r.role, v.PrincipalID()); err != nil {
			return err
		}
	}
	if _, err := a.PutPolicy(ctx, m.rg, mxVault, mxPolicy, defaultPolicy()); err != nil {
		return err
	}
	for i, d := range backupDisks() {
		if _, err := a.PutInstance(ctx, m.rg, mxVault, backupInstances()[i], m.instanceBody(d)); err != nil {
			return err
		}
	}
	job, err := a.BackupNow(ctx, m.rg, mxVault, mxBI, "BackupHourly", "Default")
	if err != nil {
		return err
	}
	if err := m.waitJob(ctx, job); err != nil {
		return err
	}
	m.jobName = lastSegment(job)
	rps, err := a.ListRecoveryPoints(ctx, m.rg, mxVault, mxBI, "")
	if err != nil || len(rps) != 1 {
		return fmt.Errorf("recovery points: %d, %v", len(rps), err)
	}
	m.rpName = rps[0].Name

	sink, err := a.CreateServicePrincipal(ctx, "mx-sink")
	if err != nil {
		return err
	}
	m.sharedSink = sink.PrincipalID
	m.fixtureAssignment = identity.NewGUID()
	if _, err := a.CreateRoleAssignment(ctx, m.diskID(mxDisk), m.fixtureAssignment, rbac.RoleReader, sink.PrincipalID, "ServicePrincipal"); err != nil {
		return err
	}
	// An API token takes fresh credentials (an access token from the
	// client-credentials grant).
	access, err := a.ClientCredentials(ctx, m.tenant, m.env.Admin.ClientID, m.env.Admin.ClientSecret)
	if err != nil {
		return err
	}
	fresh := m.env.Client(access)
	fresh.HTTP = m.http
	tok, err := fresh.CreateToken(ctx, 1, "matrix: a token rows must not revoke")
	if err != nil {
		return err
	}
	m.adminTokenID, m.adminAPI = tok.ID, tok.Token
	return nil
}

// fillRegions writes each row's pattern into its region of d, then takes
// snapshot s (so the snapshot holds the patterns too) and the admin's Read
// grant on it.
func (m *matrix) fillRegions(ctx context.Context) error {
	for _, p := range m.rows {
		if err := m.admin.PutPages(ctx, m.adminSAS, region(p), pattern(p, regionSize)); err != nil {
			return err
		}
	}
	src := m.diskID(mxDisk)
	if _, err := m.admin.CreateSnapshot(ctx, m.rg, mxSnap, client.SnapshotSpec{Location: "local", Source: src, Incremental: true}, true); err != nil {
		return err
	}
	g, _, err := m.adminGrant(ctx, client.Snapshots, mxSnap, "Read")
	if err != nil {
		return err
	}
	m.adminSnapSAS = g.AccessSAS
	return nil
}

// buildRow creates row p's principal, its token, its disposable resources
// (which its destructive cells act on) and its role assignments.
func (m *matrix) buildRow(ctx context.Context, p *mxPrincipal) error {
	a := m.admin
	sp, err := a.CreateServicePrincipal(ctx, "mx-"+p.label)
	if err != nil {
		return err
	}
	p.id, p.clientID, p.secret = sp.PrincipalID, sp.ClientID, sp.ClientSecret
	if p.label != "no token" {
		if p.token, err = a.ClientCredentials(ctx, m.tenant, sp.ClientID, sp.ClientSecret); err != nil {
			return err
		}
	}
	sink, err := a.CreateServicePrincipal(ctx, own("mx-sink", p))
	if err != nil {
		return err
	}
	p.sink = sink.PrincipalID
	if _, err := a.CreateRoleAssignment(ctx, m.diskID(mxDisk), m.rowAssignment(p), rbac.RoleReader, p.sink, "ServicePrincipal"); err != nil {
		return err
	}
	for _, d := range []string{own("de", p), own("dd", p)} {
		if _, err := a.CreateDisk(ctx, m.rg, d, client.DiskSpec{Location: "local", SizeGB: 1}, true); err != nil {
			return err
		}
	}
	g, _, err := m.adminGrant(ctx, client.Disks, own("de", p), "Read")
	if err != nil {
		return err
	}
	p.endDiskSAS = g.AccessSAS
	for _, s := range []string{own("se", p), own("sd", p)} {
		if _, err := a.CreateSnapshot(ctx, m.rg, s, client.SnapshotSpec{Location: "local", Source: m.diskID(mxPD), Incremental: true}, true); err != nil {
			return err
		}
	}
	if g, _, err = m.adminGrant(ctx, client.Snapshots, own("se", p), "Read"); err != nil {
		return err
	}
	p.endSnapSAS = g.AccessSAS
	if _, err := a.Do(ctx, http.MethodPut, m.vaultID(own("vd", p)), client.DataProtectionVersion, nil, m.vaultBody, nil); err != nil {
		return err
	}
	if _, err := a.PutPolicy(ctx, m.rg, mxVault, own("pol", p), defaultPolicy()); err != nil {
		return err
	}
	if _, err := a.CreateGroup(ctx, own("g", p), "local", nil); err != nil {
		return err
	}

	for _, r := range p.roles {
		for _, s := range m.scopesAt(r.level, p) {
			if err := m.assign(ctx, s, r.role.ID, p.id); err != nil {
				return err
			}
			p.grants = append(p.grants, mxGrant{r.role, s})
		}
	}
	return nil
}

// scopesAt lists the scopes a role at level is assigned at for row p: at
// resource level every fixture and own resource the columns act on
// (children, such as a vault's policies and instances, inherit), at group
// level the fixtures' group and p's own group.
func (m *matrix) scopesAt(level string, p *mxPrincipal) []string {
	switch level {
	case levelResource:
		return []string{m.diskID(mxDisk), m.snapID(mxSnap), m.vaultID(mxVault),
			m.diskID(own("de", p)), m.diskID(own("dd", p)), m.diskID(own("c", p)), m.ownGroupDisk(p),
			m.snapID(own("se", p)), m.snapID(own("sd", p)), m.vaultID(own("vd", p))}
	case levelGroup:
		return []string{m.groupID(m.rg), m.groupID(own("g", p))}
	case levelSubscription:
		return []string{"/subscriptions/" + m.sub}
	case levelOwnGroup:
		return []string{m.groupID(own("g", p))}
	case levelOtherSubscription:
		return []string{"/subscriptions/" + m.sub2}
	}
	panic("unknown level " + level)
}

// ownGroupDisk is the disk that row p copies disk d into, in its own group.
func (m *matrix) ownGroupDisk(p *mxPrincipal) string {
	return m.groupID(own("g", p)) + "/providers/Microsoft.Compute/disks/" + own("c", p)
}

// rowAssignment is the name of the fixture assignment of row p's sink at
// d, which p's delete cell targets.
func (m *matrix) rowAssignment(p *mxPrincipal) string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", p.index)
}

func (m *matrix) assign(ctx context.Context, scope, role, principal string) error {
	_, err := m.admin.CreateRoleAssignment(ctx, scope, identity.NewGUID(), role, principal, "ServicePrincipal")
	return err
}

func (m *matrix) instanceBody(disk string) map[string]any {
	return client.InstanceBody(m.diskID(disk), "local", m.policyID(mxPolicy), m.groupID(mxSnapGroup))
}

// adminGrant grants access as the admin and returns the grant and the ID
// of its operation (whose result holds the grant).
func (m *matrix) adminGrant(ctx context.Context, typ, name, access string) (client.AccessURI, string, error) {
	var g client.AccessURI
	path := m.groupID(m.rg) + "/providers/Microsoft.Compute/" + typ + "/" + name + "/beginGetAccess"
	resp, err := m.admin.Do(ctx, http.MethodPost, path, client.ComputeVersion, nil, map[string]any{"access": access, "durationInSeconds": 3600}, nil)
	if err != nil {
		return g, "", err
	}
	loc := resp.Header.Get("Location")
	if _, err := m.admin.Do(ctx, http.MethodGet, loc, "", nil, nil, &g); err != nil {
		return g, "", err
	}
	return g, lastSegment(loc), nil
}

// waitJob waits until a job ends and fails unless it completed.
func (m *matrix) waitJob(ctx context.Context, id string) error {
	for {
		j, err := m.admin.GetJob(ctx, m.rg, mxVault, id)
		if err != nil {
			return err
		}
		switch j.Properties.Status {
		case "Completed":
			return nil
		case "InProgress":
		default:
			return fmt.Errorf("job %s ended %s: %+v", id, j.Properties.Status, j.Properties.ErrorDetails)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// exists reports whether an ARM resource exists (GET as the admin: 200 or
// 404).
func (m *matrix) exists(ctx context.Context, path, version string) (bool, error) {
	_, err := m.admin.Do(ctx, http.MethodGet, path, version, nil, nil, nil)
	if e := client.AsError(err); e != nil && e.StatusCode == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// wantExists checks that a resource exists or not.
func (m *matrix) wantExists(ctx context.Context, path, version string, want bool) error {
	ok, err := m.exists(ctx, path, version)
	if err != nil {
		return err
	}
	if ok != want {
		return fmt.Errorf("%s exists = %v after the request, want %v", path, ok, want)
	}
	return nil
}

// waitProvisioned waits until the disk at path has left provisioning
// state Creating, and fails unless it Succeeded.
func (m *matrix) waitProvisioned(ctx context.Context, path string) error {
	for i := 0; ; i++ {
		var d client.Disk
		if _, err := m.admin.Do(ctx, http.MethodGet, path, client.ComputeVersion, nil, nil, &d); err != nil {
			return err
		}
		switch st := d.Properties.ProvisioningState; st {
		case "Succeeded":
			return nil
		case "Creating", "Updating":
		default:
			return fmt.Errorf("%s is %s", path, st)
		}
		if i == 500 {
			return fmt.Errorf("%s is still being created", path)
		}
		if err := sleepCtx(ctx, 20); err != nil {
			return err
		}
	}
}

// grantWorks reports whether a SAS URL still answers.
func (m *matrix) grantWorks(ctx context.Context, sas string) (bool, error) {
	_, err := m.admin.DataSize(ctx, sas)
	if e := client.AsError(err); e != nil && e.StatusCode == http.StatusForbidden {
		return false, nil
	}
	return err == nil, err
}

func lastSegment(u string) string {
	if pu, err := url.Parse(u); err == nil {
		u = pu.Path
	}
	return u[strings.LastIndex(u, "/")+1:]
}

// decodeInto is json.Unmarshal with the answer in the error.
func decodeInto(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", b, err)
	}
	return nil
}
