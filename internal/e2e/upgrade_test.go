package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/clock"
	"coffer/internal/job"
	"coffer/internal/store/sqlite"
)

// fixture is the JSON beside an upgrade fixture (testdata/upgrade/README.md).
type fixture struct {
	Commit        string    `json:"commit"`
	MadeAt        time.Time `json:"madeAt"`
	ResourceGroup string    `json:"resourceGroup"`
	SnapshotGroup string    `json:"snapshotResourceGroup"`
	Vault         string    `json:"vault"`
	Policy        string    `json:"policy"`
	Instance      string    `json:"instance"`
	Disks         map[string]struct {
		SizeBytes int64  `json:"sizeBytes"`
		SHA256    string `json:"sha256"`
	} `json:"disks"`
	RecoveryPoints []struct {
		Name   string `json:"name"`
		SHA256 string `json:"sha256"`
	} `json:"recoveryPoints"`
	Principal struct {
		PrincipalID  string `json:"principalId"`
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
		Role         string `json:"role"`
		APIToken     string `json:"apiToken"`
	} `json:"principal"`
	Grant struct {
		Disk      string `json:"disk"`
		AccessSAS string `json:"accessSAS"`
	} `json:"grant"`
}

// TestUpgrade opens each data directory that a past release wrote
// (testdata/upgrade, one per release) with the current code, and checks
// that it migrates and that everything the release held still works: every
// resource lists, every recovery point restores byte-identical to the
// SHA-256 recorded when it was taken, the admin's and a principal's
// credentials work (and the principal's role still limits it), a grant
// made before the upgrade still reads, and verify is clean.
func TestUpgrade(t *testing.T) {
	names, err := filepath.Glob(filepath.Join("testdata", "upgrade", "*.json"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no upgrade fixtures in testdata/upgrade (%v)", err)
	}
	for _, name := range names {
		t.Run(strings.TrimSuffix(filepath.Base(name), ".json"), func(t *testing.T) { testUpgrade(t, name) })
	}
}

func testUpgrade(t *testing.T, manifest string) {
	var fx fixture
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatalf("%s: %v", manifest, err)
	}
	dir := t.TempDir()
	if err := untarGz(strings.TrimSuffix(manifest, ".json")+".tar.gz", dir); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	before := appliedMigrations(t, filepath.Join(data, "metadata.db"))

	// The server runs as if a minute after the fixture was made, so the
	// tokens, the grant and the recovery points are as young as then.
	shift := time.Until(fx.MadeAt.Add(time.Minute))
	e := Start(t, Options{DataDir: data, Clock: clock.Shifted{D: shift}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	st, ok := e.Server.Store().(*sqlite.Store)
	if !ok {
		t.Fatalf("store is %T, want *sqlite.Store", e.Server.Store())
	}
	after, err := st.Applied(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := sqlite.Migrations(); !slices.Equal(after, want) {
		t.Fatalf("after opening, migrations applied %v, want %v", after, want)
	}
	t.Logf("fixture from %s (%s): migrations %v applied at open", fx.Commit, fx.MadeAt.Format(time.DateOnly), newOnly(after, before))

	// The admin's token (admin.json) and client secret.
	admin := e.Client("")
	self, err := admin.Self(ctx)
	if err != nil || self.PrincipalID != e.Admin.PrincipalID {
		t.Fatalf("admin token: self = %+v, %v", self, err)
	}
	if tok, err := admin.ClientCredentials(ctx, e.Admin.TenantID, e.Admin.ClientID, e.Admin.ClientSecret); err != nil {
		t.Fatalf("admin client secret: %v", err)
	} else if _, err := e.Client(tok).Self(ctx); err != nil {
		t.Fatalf("access token from the admin's client secret: %v", err)
	}

	rg, vault := fx.ResourceGroup, fx.Vault
	checkListed(t, "groups", func() ([]string, error) {
		gs, err := admin.ListGroups(ctx)
		return nameList(gs, func(g client.Group) string { return g.Name }), err
	}, rg, fx.SnapshotGroup)
	disks := make([]string, 0, len(fx.Disks))
	for d := range fx.Disks {
		disks = append(disks, d)
	}
	checkListed(t, "disks", func() ([]string, error) {
		ds, err := admin.ListDisks(ctx, rg)
		return nameList(ds, func(d client.Disk) string { return d.Name }), err
	}, disks...)
	snaps, err := admin.ListSnapshots(ctx, fx.SnapshotGroup)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != len(fx.RecoveryPoints) {
		t.Errorf("%d snapshots in %s, want one per recovery point (%d)", len(snaps), fx.SnapshotGroup, len(fx.RecoveryPoints))
	}
	for _, s := range snaps {
		if s.Properties.ProvisioningState != "Succeeded" {
			t.Errorf("snapshot %s is %s", s.Name, s.Properties.ProvisioningState)
		}
	}
	checkListed(t, "vaults", func() ([]string, error) {
		vs, err := admin.ListVaults(ctx, rg)
		return nameList(vs, func(v client.Vault) string { return v.Name }), err
	}, vault)
	checkListed(t, "policies", func() ([]string, error) {
		ps, err := admin.ListPolicies(ctx, rg, vault)
		return nameList(ps, func(p client.Policy) string { return p.Name }), err
	}, fx.Policy)
	checkListed(t, "backup instances", func() ([]string, error) {
		is, err := admin.ListInstances(ctx, rg, vault)
		return nameList(is, func(i client.Instance) string { return i.Name }), err
	}, fx.Instance)
	if bi, err := admin.GetInstance(ctx, rg, vault, fx.Instance); err != nil || bi.Properties.CurrentProtectionState != "ProtectionConfigured" {
		t.Errorf("instance %s: %s, %v", fx.Instance, bi.Properties.CurrentProtectionState, err)
	}
	var rpNames []string
	for _, rp := range fx.RecoveryPoints {
		rpNames = append(rpNames, rp.Name)
	}
	checkListed(t, "recovery points", func() ([]string, error) {
		rps, err := admin.ListRecoveryPoints(ctx, rg, vault, fx.Instance, "")
		return nameList(rps, func(r client.RecoveryPoint) string { return r.Name }), err
	}, rpNames...)
	jobs, err := admin.ListJobs(ctx, rg, vault, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Properties.Status == string(job.InProgress) {
			t.Errorf("job %s (%s) is InProgress", j.Name, j.Properties.Operation)
		}
	}
	checkListed(t, "principals", func() ([]string, error) {
		ps, err := admin.ListPrincipals(ctx)
		return nameList(ps, func(p client.Principal) string { return p.PrincipalID }), err
	}, fx.Principal.PrincipalID)
	groupScope := "/subscriptions/" + e.Admin.SubscriptionID + "/resourceGroups/" + rg
	checkListed(t, "role assignments of the principal", func() ([]string, error) {
		as, err := admin.ListRoleAssignments(ctx, groupScope, "principalId eq '"+fx.Principal.PrincipalID+"'")
		return nameList(as, func(a client.RoleAssignment) string { return a.Properties.Scope }), err
	}, groupScope)

	// The principal's API token and its client secret, with its role: it
	// reads the group and may not write there.
	op := e.Client(fx.Principal.APIToken)
	if ds, err := op.ListDisks(ctx, rg); err != nil || len(ds) != len(fx.Disks) {
		t.Errorf("principal's token lists %d disks, %v", len(ds), err)
	}
	_, err = op.CreateDisk(ctx, rg, "denied", client.DiskSpec{Location: "local", SizeGB: 1}, true)
	if e := client.AsError(err); e == nil || e.StatusCode != http.StatusForbidden {
		t.Errorf("a %s creating a disk: %v, want 403", fx.Principal.Role, err)
	}
	if _, err := op.ClientCredentials(ctx, e.Admin.TenantID, fx.Principal.ClientID, fx.Principal.ClientSecret); err != nil {
		t.Errorf("principal's client secret: %v", err)
	}

	// The grant made before the upgrade still reads its disk, at the new
	// endpoint.
	sas, err := url.Parse(fx.Grant.AccessSAS)
	if err != nil {
		t.Fatal(err)
	}
	ep, _ := url.Parse(e.Endpoint)
	sas.Scheme, sas.Host = ep.Scheme, ep.Host
	if sum, err := SASSHA256(ctx, admin, sas.String()); err != nil {
		t.Errorf("reading through the grant made before the upgrade: %v", err)
	} else if want := fx.Disks[fx.Grant.Disk].SHA256; sum != want {
		t.Errorf("the grant on %s reads sha256 %s, want %s", fx.Grant.Disk, sum, want)
	}

	// The disks read as recorded, and each recovery point restores
	// byte-identical to what the disk held when it was taken.
	for _, d := range disks {
		if sum, err := DiskSHA256(ctx, admin, client.Disks, rg, d); err != nil {
			t.Error(err)
		} else if sum != fx.Disks[d].SHA256 {
			t.Errorf("disk %s: sha256 %s, want %s", d, sum, fx.Disks[d].SHA256)
		}
	}
	for i, rp := range fx.RecoveryPoints {
		sum, err := RestoreAndHash(ctx, admin, rg, vault, fx.Instance, rp.Name, rg, fmt.Sprintf("upgrade-rp%d", i), "local")
		if err != nil {
			t.Errorf("recovery point %s: %v", rp.Name, err)
		} else if sum != rp.SHA256 {
			t.Errorf("recovery point %s restores to sha256 %s, want %s", rp.Name, sum, rp.SHA256)
		}
	}

	// A new backup on top of the old chain, then verify.
	pol, err := admin.GetPolicy(ctx, rg, vault, fx.Policy)
	if err != nil {
		t.Fatal(err)
	}
	rule, err := pol.BackupRule()
	if err != nil {
		t.Fatal(err)
	}
	id, err := admin.BackupNow(ctx, rg, vault, fx.Instance, rule, "Default")
	if err != nil {
		t.Fatal(err)
	}
	if j, err := WaitJob(ctx, admin, rg, vault, id); err != nil || JobError(j) != nil {
		t.Errorf("backup after the upgrade: %v %v", err, JobError(j))
	}
	var v struct {
		OK       bool            `json:"ok"`
		Chunks   int             `json:"chunks"`
		Problems json.RawMessage `json:"problems"`
	}
	if err := admin.Admin(ctx, "verify", &v); err != nil {
		t.Fatal(err)
	}
	if !v.OK || v.Chunks == 0 {
		t.Errorf("verify after the upgrade: ok=%v chunks=%d problems=%s", v.OK, v.Chunks, v.Problems)
	}
}

// appliedMigrations lists the migrations a fixture's database had before
// the current code opened it (read-only).
func appliedMigrations(t *testing.T, path string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM schema_migrations ORDER BY name`)
	if err != nil {
		t.Fatalf("read the fixture's migrations: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func newOnly(all, old []string) []string {
	var out []string
	for _, n := range all {
		if !slices.Contains(old, n) {
			out = append(out, n)
		}
	}
	return out
}

func nameList[T any](xs []T, name func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = name(x)
	}
	return out
}

// checkListed fails the test unless list succeeds and returns every name
// in want (case-insensitively).
func checkListed(t *testing.T, what string, list func() ([]string, error), want ...string) {
	t.Helper()
	got, err := list()
	if err != nil {
		t.Errorf("list %s: %v", what, err)
		return
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.EqualFold(g, w) }) {
			t.Errorf("%s: %q not listed (got %v)", what, w, got)
		}
	}
}

// untarGz unpacks a .tar.gz into dir, keeping modes and leaving all-zero
// 64 KiB blocks of regular files as holes (the fixtures' volumes are
// sparse).
func untarGz(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		target := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(target, filepath.Clean(dir)+string(filepath.Separator)) {
			return fmt.Errorf("%s: entry %q leaves the directory", path, h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, os.FileMode(h.Mode).Perm()); err != nil {
				return err
			}
		case tar.TypeReg, tar.TypeGNUSparse:
			if err := writeSparse(target, tr, h.Size, os.FileMode(h.Mode).Perm()); err != nil {
				return fmt.Errorf("%s: %s: %w", path, h.Name, err)
			}
		default:
			return fmt.Errorf("%s: entry %q has unexpected type %c", path, h.Name, h.Typeflag)
		}
	}
}

func writeSparse(path string, r io.Reader, size int64, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	zero := make([]byte, len(buf))
	var off int64
	for off < size {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-off)])
		if err != nil {
			f.Close()
			return err
		}
		if !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				f.Close()
				return err
			}
		}
		off += int64(n)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}
