package e2e

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/identity"
	"coffer/internal/rbac"
)

// protectedDisk is a disk protected by a backup instance, set up through
// the client: group rg (disk, snapshots and vault in it: rg-disks,
// rg-snaps, rg-vault), vault v1, policy DiskPolicy, instance data1-bi.
type protectedDisk struct {
	c         *client.Client
	principal string // the vault's identity
	diskID    string
}

func protectForJobs(t *testing.T, env *Env) protectedDisk {
	t.Helper()
	ctx := context.Background()
	c := env.Client("")
	for _, g := range []string{"rg-disks", "rg-snaps", "rg-vault"} {
		if _, err := c.CreateGroup(ctx, g, "local", nil); err != nil {
			t.Fatal(err)
		}
	}
	d, err := c.CreateDisk(ctx, "rg-disks", "data1", client.DiskSpec{Location: "local", SizeGB: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.CreateVault(ctx, "rg-vault", "v1", "local", "")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := c.PutPolicy(ctx, "rg-vault", "v1", "DiskPolicy", defaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	p := protectedDisk{c: c, principal: v.PrincipalID(), diskID: d.ID}
	snapRG := "/subscriptions/" + env.Admin.SubscriptionID + "/resourceGroups/rg-snaps"
	body := client.InstanceBody(d.ID, "local", pol.ID, snapRG)
	// Without roles the validation fails: a Failed ValidateForBackup job.
	if _, err := c.ValidateForBackup(ctx, "rg-vault", "v1", body); err == nil {
		t.Fatal("validation without roles succeeded")
	}
	for _, g := range []struct{ role, scope string }{{rbac.RoleDiskBackupReader, d.ID}, {rbac.RoleDiskSnapshotContributor, snapRG}} {
		if _, err := c.CreateRoleAssignment(ctx, g.scope, identity.NewGUID(), g.role, p.principal, "ServicePrincipal"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.ValidateForBackup(ctx, "rg-vault", "v1", body); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if _, err := c.PutInstance(ctx, "rg-vault", "v1", "data1-bi", body); err != nil {
		t.Fatalf("protect: %v", err)
	}
	return p
}

// backupNow triggers an on-demand backup and waits for its job to end.
func (p protectedDisk) backupNow(t *testing.T) client.Job {
	t.Helper()
	ctx := context.Background()
	id, err := p.c.BackupNow(ctx, "rg-vault", "v1", "data1-bi", "BackupHourly", "Default")
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		j, err := p.c.GetJob(ctx, "rg-vault", "v1", id[strings.LastIndex(id, "/")+1:])
		if err != nil {
			t.Fatal(err)
		}
		if j.Properties.Status != "InProgress" {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("backup job %s still %s", id, j.Properties.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestJobsFilter lists a vault's jobs (a failed and a completed validation,
// a completed on-demand backup) under $filters with or, not, repeated and
// parenthesised clauses: each answer is exactly the jobs the filter
// describes, and a filter the server cannot evaluate is a 400
// InvalidFilter naming what is wrong, never a list.
func TestJobsFilter(t *testing.T) {
	env := Start(t, Options{})
	p := protectForJobs(t, env)
	p.backupNow(t)
	ctx := context.Background()
	list := func(filter string) ([]string, error) {
		js, err := p.c.ListJobs(ctx, "rg-vault", "v1", filter)
		var out []string
		for _, j := range js {
			out = append(out, j.Properties.Operation+"/"+j.Properties.Status)
		}
		slices.Sort(out)
		return out, err
	}
	all, err := list("")
	if err != nil || strings.Join(all, ",") != "Backup/Completed,ValidateForBackup/Completed,ValidateForBackup/Failed" {
		t.Fatalf("all jobs: %v %v", all, err)
	}
	tests := []struct{ filter, want string }{
		{"status eq 'Failed' or operation eq 'Backup'", "Backup/Completed,ValidateForBackup/Failed"},
		{"status eq 'Failed' or status eq 'Completed'", "Backup/Completed,ValidateForBackup/Completed,ValidateForBackup/Failed"},
		{"status eq 'Failed' and status eq 'Completed'", ""},
		{"operation eq 'Backup' and operation eq 'ValidateForBackup'", ""},
		{"operation eq 'ValidateForBackup' and status ne 'Failed'", "ValidateForBackup/Completed"},
		{"not (operation eq 'OnDemandBackup')", "ValidateForBackup/Completed,ValidateForBackup/Failed"},
		{"(status eq 'Failed' or status eq 'Completed') and operation eq 'Backup'", "Backup/Completed"},
		{"startTime ge '2000-01-01T00:00:00Z' and startTime le '2000-12-31T00:00:00Z'", ""},
		{"startTime ge '2000-01-01T00:00:00Z' and endTime ge '2000-01-01T00:00:00Z' and operation eq 'Backup'", "Backup/Completed"},
	}
	for _, tc := range tests {
		got, err := list(tc.filter)
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("$filter=%s: %v %v, want [%s]", tc.filter, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ filter, says string }{
		{"status eq 'Done'", "status 'Done' is not one of"},
		{"status eq 'Failed' xor status eq 'Completed'", "expected 'and', 'or' or the end"},
		{"startTime eq '2026-01-01T00:00:00Z'", "startTime takes gt, ge, lt or le"},
		{"dataSourceName eq 'data1'", "unknown property 'dataSourceName'"},
		{"status eq 'Failed' and", "expected a property name"},
	} {
		got, err := list(tc.filter)
		e := client.AsError(err)
		if e == nil || e.StatusCode != http.StatusBadRequest || e.Code != "InvalidFilter" || !strings.Contains(e.Message, tc.says) {
			t.Errorf("$filter=%s: %v %v; want 400 InvalidFilter saying %q", tc.filter, got, err, tc.says)
		}
	}

	// The CLI quotes what it is given: a status cannot widen the filter.
	cliAgainst(t, env)
	coffer := func(args ...string) (int, string, string) { return runCLI("", false, args...) }
	if code, out, errs := coffer("job", "list", "-g", "rg-vault", "-v", "v1", "--status", "Failed", "-o", "tsv"); code != 0 ||
		strings.Count(out, "\n") != 1 || !strings.Contains(out, "\tValidateForBackup\tFailed\t") {
		t.Fatalf("job list --status Failed: %d %q %s", code, out, errs)
	}
	code, out, errs := coffer("job", "list", "-g", "rg-vault", "-v", "v1", "--status", "Failed' or status eq 'Completed", "-o", "tsv")
	if code != 1 || out != "" || !strings.Contains(errs, "InvalidFilter") {
		t.Fatalf("job list with a quote in --status: exit %d, %q, %s", code, out, errs)
	}
}
