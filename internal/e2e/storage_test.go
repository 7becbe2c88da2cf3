package e2e

import (
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dataprotection/armdataprotection/v3"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"coffer/internal/client"
	"coffer/internal/compute"
	"coffer/internal/rbac"
	"coffer/internal/testenv"
)

// putRandom writes n bytes of random (incompressible) data at off through
// a write SAS URL.
func putRandom(t *testing.T, e *dpEnv, sas string, off, n int64) {
	t.Helper()
	buf := make([]byte, 4<<20)
	for done := int64(0); done < n; done += int64(len(buf)) {
		rand.Read(buf)
		if err := e.c.PutPages(e.ctx, sas, off+done, buf[:min(int64(len(buf)), n-done)]); err != nil {
			t.Fatalf("write at %d: %v", off+done, err)
		}
	}
}

// health reads /healthz.
func health(t *testing.T, env *Env) map[string]any {
	t.Helper()
	st, body, _ := raw(t, env, "GET", "/healthz", "-", nil, nil)
	if st != http.StatusOK {
		t.Fatalf("healthz: %d %v", st, body)
	}
	return body
}

// metricsText reads /metrics.
func metricsText(t *testing.T, env *Env) string {
	t.Helper()
	resp, err := env.HTTP.Get(env.Endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// want507 checks that err is Azure's 507 InsufficientStorage.
func want507(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s on a full data filesystem succeeded", what)
	}
	if st, code := responseCode(t, err); st != http.StatusInsufficientStorage || code != "InsufficientStorage" {
		t.Fatalf("%s on a full data filesystem: %d %s (%v), want 507 InsufficientStorage", what, st, code, err)
	}
}

// Suite point 3 (disk full), defect 5: with the data directory on a small
// ext4 that fills up, a backup that runs out of space fails its job with
// the clear error and commits nothing; metadata writes, backups, restores,
// SAS page writes and NBD writes answer 507 InsufficientStorage (or
// ENOSPC over NBD); /healthz and /metrics say degraded; nothing committed
// is damaged; once space is freed the same requests succeed without a
// restart, the old recovery point restores byte-identical and verify is
// clean.
func TestDiskFull(t *testing.T) {
	nbdcopy := testenv.NeedProgram(t, "nbdcopy")
	mnt := testenv.SmallFilesystem(t, "ext4", 192<<20)
	start := time.Now()
	const reserve = 8 << 20
	e := startDP(t, Options{DataDir: filepath.Join(mnt, "data"), MinFree: reserve, HydrationRetry: time.Second})
	const loc = "local"
	for _, g := range []string{"rg-disks", "rg-snaps", "rg-vault", "rg-restore"} {
		e.group(t, g, loc)
	}
	src := e.disk(t, "rg-disks", "data1", loc, "StandardSSD_LRS")
	e.disk(t, "rg-disks", "target", loc, "StandardSSD_LRS")
	sas := e.sas(t, "rg-disks", "data1", armcompute.AccessLevelWrite)
	putRandom(t, e, sas, 0, 2<<20)
	e.endAccess(t, "rg-disks", "data1")
	hash1 := e.hash(t, "rg-disks", "data1")

	v := e.vault(t, "rg-vault", "vault1", loc)
	principal := *v.Identity.PrincipalID
	pol := e.policy(t, "rg-vault", "vault1", "DiskPolicy", defaultPolicy())
	snapRG := "/subscriptions/" + e.sub + "/resourceGroups/rg-snaps"
	e.grantRole(t, principal, rbac.RoleDiskBackupReader, *src.ID)
	e.grantRole(t, principal, rbac.RoleDiskSnapshotContributor, snapRG)
	e.grantRole(t, principal, rbac.RoleDiskRestoreOperator, "/subscriptions/"+e.sub+"/resourceGroups/rg-restore")
	if _, err := e.protect("rg-vault", "vault1", "data1-bi", biBody(*src.ID, loc, *pol.ID, snapRG)); err != nil {
		t.Fatalf("protect: %v", err)
	}
	if j := e.backupNow(t, "rg-vault", "vault1", "data1-bi", "BackupHourly", "Default"); *j.Status != "Completed" {
		t.Fatalf("first backup: %+v", j)
	}
	rps := e.recoveryPoints(t, "rg-vault", "vault1", "data1-bi", nil)
	if len(rps) != 1 {
		t.Fatalf("%d recovery points", len(rps))
	}
	rp1 := *rps[0].Name

	// 24 MiB of new incompressible data for the next backup; grants to
	// write the target disk over SAS and NBD, made while there is room.
	sas = e.sas(t, "rg-disks", "data1", armcompute.AccessLevelWrite)
	putRandom(t, e, sas, 64<<20, 24<<20)
	e.endAccess(t, "rg-disks", "data1")
	tgt, err := e.c.GrantAccess(e.ctx, client.Disks, "rg-disks", "target", "Write", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir() // not on the small filesystem
	certs := filepath.Join(tmp, "certs")
	if err := os.Mkdir(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "ca-cert.pem"), e.Server.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	nbdURL := tgt.NBDURL + "?tls-certificates=" + certs
	img := filepath.Join(tmp, "img")
	imgData := make([]byte, 4<<20)
	rand.Read(imgData)
	if err := os.WriteFile(img, imgData, 0o600); err != nil {
		t.Fatal(err)
	}

	// Fill the filesystem, then give back 16 MiB: above the reserve, so
	// the backup starts, but less than the pack it has to write.
	t.Logf("%v: set up, first backup done", time.Since(start))
	filler := testenv.Fill(t, mnt)
	fi, err := os.Stat(filler)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filler, max(0, fi.Size()-16<<20)); err != nil {
		t.Fatal(err)
	}
	j := e.backupNow(t, "rg-vault", "vault1", "data1-bi", "BackupHourly", "Default")
	if *j.Status != "Failed" || len(j.ErrorDetails) == 0 || *j.ErrorDetails[0].Code != "InsufficientStorage" ||
		!strings.Contains(*j.ErrorDetails[0].Message, mnt) || len(j.ErrorDetails[0].RecommendedAction) == 0 {
		t.Fatalf("backup that ran out of space: status %s, errors %+v; want Failed with InsufficientStorage naming %s and a recommended action",
			*j.Status, j.ErrorDetails, mnt)
	}
	if rps := e.recoveryPoints(t, "rg-vault", "vault1", "data1-bi", nil); len(rps) != 1 {
		t.Fatalf("a backup that failed for space committed a recovery point: %d", len(rps))
	}

	// Now completely full.
	filler2 := testenv.Fill(t, mnt)
	_, err = e.groups.CreateOrUpdate(e.ctx, "rg-new", armresources.ResourceGroup{Location: to.Ptr(loc)}, nil)
	want507(t, "creating a resource group", err)
	if st, body, _ := raw(t, e.Env, "PUT", "/subscriptions/"+e.sub+"/resourcegroups/rg-new2?api-version=2021-04-01", "", []byte(`{"location":"local"}`), nil); st != http.StatusInsufficientStorage ||
		errCode(body) != "InsufficientStorage" || !strings.Contains(body["error"].(map[string]any)["message"].(string), e.DataDir) {
		t.Fatalf("create group on a full filesystem: %d %v; want 507 naming %s", st, body, e.DataDir)
	}
	_, err = e.bis.BeginAdhocBackup(e.ctx, "rg-vault", "vault1", "data1-bi", armdataprotection.TriggerBackupRequest{BackupRuleOptions: &armdataprotection.AdHocBackupRuleOptions{
		RuleName: to.Ptr("BackupHourly"), TriggerOption: &armdataprotection.AdhocBackupTriggerOption{RetentionTagOverride: to.Ptr("Default")}}}, nil)
	want507(t, "an on-demand backup", err)
	_, err = e.bis.BeginTriggerRestore(e.ctx, "rg-vault", "vault1", "data1-bi",
		e.restoreRequest(rp1, "/subscriptions/"+e.sub+"/resourceGroups/rg-restore/providers/Microsoft.Compute/disks/r1", loc), nil)
	want507(t, "a restore", err)
	_, err = e.disks.BeginCreateOrUpdate(e.ctx, "rg-disks", "new", armcompute.Disk{Location: to.Ptr(loc),
		Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionEmpty)}, DiskSizeGB: to.Ptr[int32](1)}}, nil)
	want507(t, "creating a disk", err)

	// Data plane: a SAS page write into unallocated space, and an NBD write.
	werr := e.c.PutPages(e.ctx, tgt.AccessSAS, 128<<20, make([]byte, 4<<20))
	var ce *client.Error
	if !errors.As(werr, &ce) || ce.StatusCode != http.StatusInsufficientStorage || ce.Code != "InsufficientStorage" {
		t.Fatalf("SAS page write on a full filesystem: %v, want 507 InsufficientStorage", werr)
	}
	out, nerr := exec.Command(nbdcopy, img, nbdURL).CombinedOutput()
	if nerr == nil || !strings.Contains(string(out), "No space left on device") {
		t.Fatalf("NBD write on a full filesystem: %v: %s; want ENOSPC", nerr, out)
	}

	h := health(t, e.Env)
	storage, _ := h["storage"].(map[string]any)
	if h["status"] != "degraded" || storage == nil || storage["freeBytes"].(float64) >= reserve || storage["lastNoSpaceError"] == nil {
		t.Fatalf("healthz on a full filesystem: %v", h)
	}
	if m := metricsText(t, e.Env); !strings.Contains(m, "coffer_storage_degraded 1") || !strings.Contains(m, "coffer_data_free_bytes ") {
		t.Fatalf("metrics on a full filesystem:\n%s", m)
	}

	// Space returns: everything works again, without a restart.
	for _, f := range []string{filler, filler2} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if h := health(t, e.Env); h["status"] != "ok" {
		t.Fatalf("healthz after freeing space: %v", h)
	}
	e.group(t, "rg-new", loc)
	if err := e.c.PutPages(e.ctx, tgt.AccessSAS, 128<<20, make([]byte, 4<<20)); err != nil {
		t.Fatalf("SAS page write after freeing space: %v", err)
	}
	if out, err := exec.Command(nbdcopy, img, nbdURL).CombinedOutput(); err != nil {
		t.Fatalf("NBD write after freeing space: %v: %s", err, out)
	}
	back, err := e.c.ReadRange(e.ctx, tgt.AccessSAS, 0, int64(len(imgData)))
	if err != nil || bytesHash(back) != bytesHash(imgData) {
		t.Fatalf("NBD write after freeing space reads back differently: %v", err)
	}
	t.Logf("%v: full-filesystem checks done", time.Since(start))
	if j := e.backupNow(t, "rg-vault", "vault1", "data1-bi", "BackupHourly", "Default"); *j.Status != "Completed" {
		t.Fatalf("backup after freeing space: %+v", j)
	}
	hash2 := e.hash(t, "rg-disks", "data1")
	rps = e.recoveryPoints(t, "rg-vault", "vault1", "data1-bi", nil)
	if len(rps) != 2 {
		t.Fatalf("%d recovery points after the second backup", len(rps))
	}
	rp2 := *rps[0].Name
	if rp2 == rp1 {
		rp2 = *rps[1].Name
	}

	// A restore whose hydration runs out of space: the disk is there and
	// reads right, the disk and the job say why it is not complete, and it
	// completes by itself once space is back.
	filler3 := testenv.Fill(t, mnt)
	if fi, err = os.Stat(filler3); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filler3, max(0, fi.Size()-16<<20)); err != nil {
		t.Fatal(err)
	}
	r2 := "/subscriptions/" + e.sub + "/resourceGroups/rg-restore/providers/Microsoft.Compute/disks/r2"
	jobID, err := e.restore("rg-vault", "vault1", "data1-bi", e.restoreRequest(rp2, r2, loc))
	if err != nil {
		t.Fatalf("restore with 16 MiB free: %v", err)
	}
	// The stall shows once the hydrator hits the full filesystem. The
	// filesystem's free space moves a little as the server writes its own
	// files, so a stall may clear and come back: wait until the job and the
	// disk both show it.
	var (
		rj   armdataprotection.AzureBackupJob
		body map[string]any
	)
	for i := 0; ; i++ {
		rj = e.waitJob(t, "rg-vault", "vault1", jobID)
		_, body, _ = raw(t, e.Env, "GET", r2+"?api-version=2023-04-02", "", nil, nil)
		he, _ := body["properties"].(map[string]any)["hydrationError"].(map[string]any)
		if (*rj.Status == "CompletedWithWarnings" && he != nil) || i > 600 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if *rj.Status != "CompletedWithWarnings" || len(rj.ErrorDetails) == 0 || *rj.ErrorDetails[0].Code != "InsufficientStorage" || len(rj.ErrorDetails[0].RecommendedAction) == 0 {
		t.Fatalf("restore whose hydration ran out of space: %s %+v", *rj.Status, rj.ErrorDetails)
	}
	if he, _ := body["properties"].(map[string]any)["hydrationError"].(map[string]any); he == nil || he["code"] != "InsufficientStorage" {
		t.Fatalf("restored disk whose hydration is stalled: %v", body)
	}
	if h := health(t, e.Env); h["status"] != "degraded" || h["storage"].(map[string]any)["stalledHydrations"].(float64) != 1 {
		t.Fatalf("healthz with a stalled hydration: %v", h)
	}
	if got := e.hash(t, "rg-restore", "r2"); got != hash2 {
		t.Fatalf("restored disk read while its hydration is stalled: hash %s, want %s", got, hash2)
	}
	t.Logf("%v: restore stalled as expected", time.Since(start))
	if err := os.Remove(filler3); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ { // the hydrator retries every second
		if rj = e.waitJob(t, "rg-vault", "vault1", jobID); *rj.Status == "Completed" {
			break
		}
		if i > 600 {
			t.Fatalf("restore job after freeing space: %s %+v", *rj.Status, rj.ErrorDetails)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, body, _ = raw(t, e.Env, "GET", r2+"?api-version=2023-04-02", "", nil, nil)
	if he := body["properties"].(map[string]any)["hydrationError"]; he != nil {
		t.Fatalf("restored disk after its hydration resumed: %v", body)
	}
	if got := e.hash(t, "rg-restore", "r2"); got != hash2 {
		t.Fatalf("restored disk after hydration: hash %s, want %s", got, hash2)
	}
	jobID, err = e.restore("rg-vault", "vault1", "data1-bi",
		e.restoreRequest(rp1, "/subscriptions/"+e.sub+"/resourceGroups/rg-restore/providers/Microsoft.Compute/disks/r1", loc))
	if err != nil {
		t.Fatalf("restore after freeing space: %v", err)
	}
	if j := e.waitJob(t, "rg-vault", "vault1", jobID); *j.Status != "Completed" {
		t.Fatalf("restore job: %+v", j)
	}
	if got := e.hash(t, "rg-restore", "r1"); got != hash1 {
		t.Fatalf("recovery point 1 restored after the disk-full episode: hash %s, want %s", got, hash1)
	}
	var vr struct {
		OK       bool
		Problems []any
	}
	if err := e.c.Admin(e.ctx, "verify", &vr); err != nil || !vr.OK {
		t.Fatalf("verify after the disk-full episode: %v %+v", err, vr)
	}
}

// Defect 3: a disk larger than the data filesystem's largest file (a
// small ext4: about 4 TiB with its 1 KiB blocks, 16 TiB with 4 KiB) is
// refused with a 400 that names the node's limit, and nothing is left
// behind; growing a disk across the limit is refused the same way and
// leaves the disk as it was, readable and writable.
func TestDiskLargerThanFilesystem(t *testing.T) {
	mnt := testenv.SmallFilesystem(t, "ext4", 64<<20)
	ce := startCompute(t, Options{DataDir: filepath.Join(mnt, "data"), MinFree: 1 << 20})
	c := ce.c
	_, err := c.CreateDisk(ce.ctx, "rg", "huge", client.DiskSpec{Location: "local", SizeGB: compute.MaxDiskSizeGB}, true)
	var cerr *client.Error
	if !errors.As(err, &cerr) || cerr.StatusCode != http.StatusBadRequest || cerr.Code != "InvalidParameter" ||
		!strings.Contains(cerr.Message, "at most") || !strings.Contains(cerr.Message, "32767 GiB") {
		t.Fatalf("create a %d GiB disk on a small ext4: %v, want 400 InvalidParameter naming the limit", compute.MaxDiskSizeGB, err)
	}
	if _, err := c.GetDisk(ce.ctx, "rg", "huge"); !errors.As(err, &cerr) || cerr.StatusCode != http.StatusNotFound {
		t.Fatalf("the refused disk exists: %v", err)
	}
	ents, err := os.ReadDir(filepath.Join(mnt, "data", "volumes", "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("a refused create left %d entries in the volumes directory", len(ents))
	}

	d := ce.createDisk(t, "small", client.DiskSpec{Location: "local", SizeGB: 1})
	g := ce.grant(t, client.Disks, "small", "Write")
	data := make([]byte, 1<<20)
	rand.Read(data)
	if err := c.PutPages(ce.ctx, g.AccessSAS, 0, data); err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeAccess(ce.ctx, client.Disks, "rg", "small"); err != nil {
		t.Fatal(err)
	}
	maxGB := int64(compute.MaxDiskSizeGB)
	_, err = c.UpdateDisk(ce.ctx, "rg", "small", &maxGB, nil)
	if !errors.As(err, &cerr) || cerr.StatusCode != http.StatusBadRequest || !strings.Contains(cerr.Message, "at most") {
		t.Fatalf("grow across the filesystem's limit: %v, want 400 naming the limit", err)
	}
	after, err := c.GetDisk(ce.ctx, "rg", "small")
	if err != nil || after.Properties.DiskSizeGB != 1 || after.Properties.DiskSizeBytes != d.Properties.DiskSizeBytes {
		t.Fatalf("disk after a refused resize: %+v, %v", after.Properties, err)
	}
	g = ce.grant(t, client.Disks, "small", "Write")
	got, err := c.ReadRange(ce.ctx, g.AccessSAS, 0, int64(len(data)))
	if err != nil || bytesHash(got) != bytesHash(data) {
		t.Fatalf("data after a refused resize: %v", err)
	}
	if err := c.PutPages(ce.ctx, g.AccessSAS, 512<<20, data); err != nil {
		t.Fatalf("write after a refused resize: %v", err)
	}
	if size, err := c.DataSize(ce.ctx, g.AccessSAS); err != nil || size != 1<<30 {
		t.Fatalf("size after a refused resize: %d, %v", size, err)
	}
}
