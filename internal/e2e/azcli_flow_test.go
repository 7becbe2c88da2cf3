package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/identity"
	"coffer/internal/rbac"
	"coffer/internal/testenv"
)

// azCLI runs Debian's Azure CLI against a TLS server registered as the
// custom cloud "coffer", with a configuration directory of its own.
type azCLI struct {
	t   *testing.T
	bin string
	env []string
}

// newAzCLI registers env's server as a cloud in a new Azure CLI
// configuration and makes it the active cloud (no one is logged in yet).
func newAzCLI(t *testing.T, env *Env) *azCLI {
	t.Helper()
	a := &azCLI{t: t, bin: testenv.NeedProgram(t, "az")}
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, env.Server.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	a.env = append(os.Environ(), "AZURE_CONFIG_DIR="+filepath.Join(dir, "az"), "REQUESTS_CA_BUNDLE="+ca,
		"AZURE_CORE_COLLECT_TELEMETRY=false", "AZURE_CORE_NO_COLOR=true", "AZURE_CORE_ONLY_SHOW_ERRORS=true")
	a.run("cloud", "register", "-n", "coffer", "--endpoint-resource-manager", env.Endpoint+"/")
	a.run("cloud", "set", "-n", "coffer")
	return a
}

// exec runs az and returns its standard output and error.
func (a *azCLI) exec(args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.bin, args...)
	cmd.Env = a.env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// run runs az, failing the test if it fails, and returns its output.
func (a *azCLI) run(args ...string) string {
	a.t.Helper()
	out, errOut, err := a.exec(args...)
	if err != nil {
		a.t.Fatalf("az %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// json runs az and decodes its JSON output into v.
func (a *azCLI) json(v any, args ...string) {
	a.t.Helper()
	out := a.run(args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		a.t.Fatalf("az %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (a *azCLI) login(clientID, secret string) {
	a.t.Helper()
	a.run("login", "--service-principal", "-u", clientID, "-p", secret, "--tenant", "adfs", "-o", "none")
}

// rest is `az rest` on an ARM path (or URL), with a JSON body when body is
// not nil, decoding the answer into out when out is not nil.
func (a *azCLI) rest(method, url string, body, out any) {
	a.t.Helper()
	args := a.restArgs(method, url, body)
	if out == nil {
		a.run(args...)
		return
	}
	a.json(out, args...)
}

func (a *azCLI) restArgs(method, url string, body any) []string {
	a.t.Helper()
	args := []string{"rest", "--method", method, "--url", url}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		args = append(args, "--body", string(b))
	}
	return args
}

// asyncHeader finds the Azure-AsyncOperation header in `az rest --verbose`'s log.
var asyncHeader = regexp.MustCompile(`(?i)'Azure-AsyncOperation': '([^']+)'`)

// restAsync is `az rest --verbose` for a request that starts a
// long-running operation: az rest does not follow one, but its verbose log
// shows the Azure-AsyncOperation header, whose URL restWait polls. It
// returns that URL and the answer's body.
func (a *azCLI) restAsync(method, url string, body any) (string, string) {
	a.t.Helper()
	args := append(a.restArgs(method, url, body), "--verbose")
	out, errOut, err := a.exec(args...)
	if err != nil {
		a.t.Fatalf("az %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	m := asyncHeader.FindStringSubmatch(errOut)
	if m == nil {
		a.t.Fatalf("az %s: no Azure-AsyncOperation header in\n%s", strings.Join(args, " "), errOut)
	}
	return m[1], out
}

// azOperation is an operation status as az rest prints it.
type azOperation struct {
	Status string `json:"status"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Properties struct {
		JobID string `json:"jobId"`
	} `json:"properties"`
}

// restWait polls an operation status URL with az rest until it ends. Each
// az start takes most of a second, which paces the polls.
func (a *azCLI) restWait(url string) azOperation {
	a.t.Helper()
	for i := 0; i < 120; i++ {
		var op azOperation
		a.rest("get", url, nil, &op)
		if op.Status != "InProgress" && op.Status != "Running" && op.Status != "" {
			return op
		}
	}
	a.t.Fatalf("operation %s did not end", url)
	return azOperation{}
}

// azJob is a backup job as az rest prints it.
type azJob struct {
	Name       string `json:"name"`
	Properties struct {
		Operation string `json:"operation"`
		Status    string `json:"status"`
	} `json:"properties"`
}

// waitJob polls a job (its ARM ID) with az rest until it ends.
func (a *azCLI) waitJob(id string) azJob {
	a.t.Helper()
	for i := 0; i < 120; i++ {
		var j azJob
		a.rest("get", id+"?api-version="+azDPVersion, nil, &j)
		if j.Properties.Status != "InProgress" {
			return j
		}
	}
	a.t.Fatalf("job %s did not end", id)
	return azJob{}
}

// The api-versions of the how-to pages' az rest calls (DataProtection's is
// the one az dataprotection's generated commands use).
const (
	azDPVersion   = "2023-05-01"
	azAuthVersion = "2022-04-01"
)

// TestAzureCLIDataProtection runs the whole flow of Azure's how-to pages
// (back up and restore managed disks) with Debian's Azure CLI against
// `serve --tls`: `az group` and `az disk` where az has commands, `az rest`
// on the ARM paths for everything else — vault (create, show, list in the
// group and in the subscription), policy, validate (refused without roles,
// then passed), role assignments (create, list with atScope() and
// principalId eq, delete with `az role assignment delete --ids`), backup
// instance, on-demand backup, recovery points, restore validation and
// restore, jobs — following long-running operations through the
// Azure-AsyncOperation header that `az rest --verbose` shows. The restored
// disk is the source disk at its recovery point, byte for byte (by hash).
func TestAzureCLIDataProtection(t *testing.T) {
	e := startDP(t, Options{})
	az := newAzCLI(t, e.Env)
	az.login(e.Admin.ClientID, e.Admin.ClientSecret)
	sub := "/subscriptions/" + e.sub
	for _, g := range []string{"rg-disks", "rg-snaps", "rg-vault", "rg-restore"} {
		e.group(t, g, "local") // az group create works (TestAzureCLI); each az call costs a second
	}
	var disk struct{ ID string }
	az.json(&disk, "disk", "create", "-g", "rg-disks", "-n", "data1", "--size-gb", "1", "-l", "local", "-o", "json")
	var grant struct{ AccessSAS string }
	az.json(&grant, "disk", "grant-access", "-g", "rg-disks", "-n", "data1", "--access-level", "Write", "--duration-in-seconds", "3600", "-o", "json")
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7) ^ 0xA1
	}
	for _, off := range []int64{0, 300 << 20} {
		if err := e.c.PutPages(e.ctx, grant.AccessSAS, off, buf); err != nil {
			t.Fatal(err)
		}
	}
	az.run("disk", "revoke-access", "-g", "rg-disks", "-n", "data1")
	want := e.hash(t, "rg-disks", "data1")

	// The vault, with its managed identity; listed in its group and in the
	// subscription.
	vault := sub + "/resourceGroups/rg-vault/providers/Microsoft.DataProtection/backupVaults/vault1"
	var v struct {
		ID       string
		Identity struct{ PrincipalID string }
	}
	az.rest("put", vault+"?api-version="+azDPVersion, map[string]any{"location": "local", "identity": map[string]any{"type": "SystemAssigned"},
		"properties": map[string]any{"storageSettings": []any{map[string]any{"datastoreType": "VaultStore", "type": "LocallyRedundant"}}}}, &v)
	var got struct {
		Properties struct{ ProvisioningState string }
	}
	az.rest("get", vault+"?api-version="+azDPVersion, nil, &got)
	if !identity.IsGUID(v.Identity.PrincipalID) || got.Properties.ProvisioningState != "Succeeded" {
		t.Fatalf("vault: %+v %+v", v, got)
	}
	msi := v.Identity.PrincipalID
	type list struct{ Value []struct{ ID, Name string } }
	for _, scope := range []string{sub + "/resourceGroups/rg-vault", sub} {
		var l list
		az.rest("get", scope+"/providers/Microsoft.DataProtection/backupVaults?api-version="+azDPVersion, nil, &l)
		if len(l.Value) != 1 || l.Value[0].Name != "vault1" {
			t.Fatalf("vaults of %s: %+v", scope, l)
		}
	}

	// The how-to page's policy: every 4 hours, kept 7 days.
	policy := vault + "/backupPolicies/DiskPolicy"
	var pol struct{ ID string }
	az.rest("put", policy+"?api-version="+azDPVersion, map[string]any{"properties": map[string]any{
		"datasourceTypes": []string{"Microsoft.Compute/disks"}, "objectType": "BackupPolicy",
		"policyRules": []any{
			map[string]any{"name": "BackupHourly", "objectType": "AzureBackupRule",
				"backupParameters": map[string]any{"backupType": "Incremental", "objectType": "AzureBackupParams"},
				"dataStore":        map[string]any{"dataStoreType": "OperationalStore", "objectType": "DataStoreInfoBase"},
				"trigger": map[string]any{"objectType": "ScheduleBasedTriggerContext",
					"schedule":        map[string]any{"repeatingTimeIntervals": []string{"R/2021-01-01T00:00:00+00:00/PT4H"}},
					"taggingCriteria": []any{map[string]any{"isDefault": true, "tagInfo": map[string]any{"tagName": "Default"}, "taggingPriority": 99}}}},
			map[string]any{"name": "Default", "objectType": "AzureRetentionRule", "isDefault": true,
				"lifecycles": []any{map[string]any{"deleteAfter": map[string]any{"duration": "P7D", "objectType": "AbsoluteDeleteOption"},
					"sourceDataStore": map[string]any{"dataStoreType": "OperationalStore", "objectType": "DataStoreInfoBase"}}}},
		}}}, &pol)
	var pols list
	az.rest("get", vault+"/backupPolicies?api-version="+azDPVersion, nil, &pols)
	if len(pols.Value) != 1 || !strings.EqualFold(pols.Value[0].ID, policy) {
		t.Fatalf("policies: %+v", pols)
	}

	// Validation without the vault identity's roles fails with Azure's code.
	snapRG := sub + "/resourceGroups/rg-snaps"
	bi := client.InstanceBody(disk.ID, "local", pol.ID, snapRG)
	validate := func() azOperation {
		st, _ := az.restAsync("post", vault+"/validateForBackup?api-version="+azDPVersion, map[string]any{"backupInstance": bi})
		return az.restWait(st)
	}
	if op := validate(); op.Status != "Failed" || op.Error == nil || op.Error.Code != "UserErrorMissingRequiredPermissions" {
		t.Fatalf("validate without roles: %+v", op)
	}

	// Role assignments through az rest: created, listed at a scope
	// (atScope()) and by principal (principalId eq).
	assign := func(scope, role string) string {
		id := scope + "/providers/Microsoft.Authorization/roleAssignments/" + identity.NewGUID()
		var a struct{ ID string }
		az.rest("put", id+"?api-version="+azAuthVersion, map[string]any{"properties": map[string]any{
			"roleDefinitionId": sub + "/providers/Microsoft.Authorization/roleDefinitions/" + role,
			"principalId":      msi, "principalType": "ServicePrincipal"}}, &a)
		if !strings.EqualFold(a.ID, id) {
			t.Fatalf("role assignment: %+v, want %s", a, id)
		}
		return a.ID
	}
	diskAssignment := assign(disk.ID, rbac.RoleDiskBackupReader)
	snapAssignment := assign(snapRG, rbac.RoleDiskSnapshotContributor)
	assignments := func(scope, filter string) []struct{ ID, Name string } {
		url := scope + "/providers/Microsoft.Authorization/roleAssignments?api-version=" + azAuthVersion
		if filter != "" {
			url += "&$filter=" + filter
		}
		var l list
		az.rest("get", url, nil, &l)
		return l.Value
	}
	if l := assignments(snapRG, "atScope()"); !hasID(l, snapAssignment) {
		t.Fatalf("atScope() at the snapshot group: %+v", l)
	}
	// The disk's assignment is below its group: listed there without a
	// filter, left out by atScope().
	diskRG := sub + "/resourceGroups/rg-disks"
	if l := assignments(diskRG, ""); !hasID(l, diskAssignment) {
		t.Fatalf("assignments at and below the disk group: %+v", l)
	}
	if l := assignments(diskRG, "atScope()"); hasID(l, diskAssignment) {
		t.Fatalf("atScope() at the disk group lists the disk's assignment below it: %+v", l)
	}
	var mine struct {
		Value []struct {
			Properties struct{ PrincipalID, Scope string }
		}
	}
	az.rest("get", sub+"/providers/Microsoft.Authorization/roleAssignments?api-version="+azAuthVersion+"&$filter="+
		fmt.Sprintf("principalId eq '%s'", msi), nil, &mine)
	if len(mine.Value) != 2 || mine.Value[0].Properties.PrincipalID != msi || mine.Value[1].Properties.PrincipalID != msi {
		t.Fatalf("principalId eq: %+v", mine)
	}
	if op := validate(); op.Status != "Succeeded" {
		t.Fatalf("validate: %+v", op)
	}

	// Protect: PUT the backup instance and follow its operation.
	instance := vault + "/backupInstances/data1-bi"
	st, _ := az.restAsync("put", instance+"?api-version="+azDPVersion, map[string]any{"properties": bi})
	if op := az.restWait(st); op.Status != "Succeeded" {
		t.Fatalf("protect: %+v", op)
	}
	var inst struct {
		Properties struct{ CurrentProtectionState string }
	}
	az.rest("get", instance+"?api-version="+azDPVersion, nil, &inst)
	if inst.Properties.CurrentProtectionState != "ProtectionConfigured" {
		t.Fatalf("instance: %+v", inst)
	}

	// An on-demand backup: its operation names the job, followed to its end.
	st, _ = az.restAsync("post", instance+"/backup?api-version="+azDPVersion, map[string]any{"backupRuleOptions": map[string]any{
		"ruleName": "BackupHourly", "triggerOption": map[string]any{"retentionTagOverride": "Default"}}})
	op := az.restWait(st)
	if op.Status != "Succeeded" || op.Properties.JobID == "" {
		t.Fatalf("backup: %+v", op)
	}
	if j := az.waitJob(op.Properties.JobID); j.Properties.Status != "Completed" || j.Properties.Operation != "Backup" {
		t.Fatalf("backup job: %+v", j)
	}
	var rps list
	az.rest("get", instance+"/recoveryPoints?api-version="+azDPVersion, nil, &rps)
	if len(rps.Value) != 1 {
		t.Fatalf("recovery points: %+v", rps)
	}

	// Restore to a new disk: the vault identity needs Disk Restore Operator
	// on the target group; validate, then restore and follow the job.
	restoreAssignment := assign(sub+"/resourceGroups/rg-restore", rbac.RoleDiskRestoreOperator)
	target := sub + "/resourceGroups/rg-restore/providers/Microsoft.Compute/disks/restored1"
	req := client.RestoreRequest(rps.Value[0].Name, target, "local")
	st, _ = az.restAsync("post", instance+"/validateRestore?api-version="+azDPVersion, map[string]any{"restoreRequestObject": req})
	if op := az.restWait(st); op.Status != "Succeeded" {
		t.Fatalf("validate restore: %+v", op)
	}
	st, _ = az.restAsync("post", instance+"/restore?api-version="+azDPVersion, req)
	op = az.restWait(st)
	if op.Status != "Succeeded" || op.Properties.JobID == "" {
		t.Fatalf("restore: %+v", op)
	}
	if j := az.waitJob(op.Properties.JobID); j.Properties.Status != "Completed" || j.Properties.Operation != "Restore" {
		t.Fatalf("restore job: %+v", j)
	}
	var restored struct{ DiskSizeGB int }
	az.json(&restored, "disk", "show", "-g", "rg-restore", "-n", "restored1", "-o", "json")
	if restored.DiskSizeGB != 1 {
		t.Fatalf("az disk show of the restored disk: %+v", restored)
	}
	if got := e.hash(t, "rg-restore", "restored1"); got != want {
		t.Fatalf("restored disk hash %s, want %s (the source at its recovery point)", got, want)
	}
	var jobs struct{ Value []azJob }
	az.rest("get", vault+"/backupJobs?api-version="+azDPVersion, nil, &jobs)
	ops := map[string]string{}
	for _, j := range jobs.Value {
		ops[j.Properties.Operation] = j.Properties.Status
	}
	if ops["Backup"] != "Completed" || ops["Restore"] != "Completed" {
		t.Fatalf("jobs: %+v", jobs)
	}

	// The Azure Backup docs advise revoking Disk Restore Operator after a
	// restore: az role assignment delete --ids does it.
	az.run("role", "assignment", "delete", "--ids", restoreAssignment)
	if l := assignments(sub+"/resourceGroups/rg-restore", "atScope()"); hasID(l, restoreAssignment) {
		t.Fatalf("the role assignment is still there after az role assignment delete: %+v", l)
	}
}

func hasID(items []struct{ ID, Name string }, id string) bool {
	for _, it := range items {
		if strings.EqualFold(it.ID, id) {
			return true
		}
	}
	return false
}
