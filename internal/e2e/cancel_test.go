package e2e

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dataprotection/armdataprotection/v3"

	"coffer/internal/blobstore/s3/s3test"
)

// TestCancelRunningBackup: a backup that is writing its pack (held at the
// S3 server: versitygw behind a proxy that keeps uploads waiting) is
// cancelled through Coffer's extension POST …/backupJobs/{id}/cancel.
// The request answers the job InProgress with who cancelled it; the
// worker sees the mark, stops, deletes its snapshot, and the job ends
// Cancelled with no recovery point and no snapshot left. The next backup
// of the disk then completes as usual.
func TestCancelRunningBackup(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	srv.SetEnv(t)
	e := startDP(t, Options{Blob: "s3://" + bucket + "/coffer", S3Endpoint: proxy.URL, S3PathStyle: true})
	e.protectedDisk(t, "local", 0xC3, 4<<20)
	e.write(t, "rg-disks", "data1", 0xD4, 1<<20)

	var hold atomic.Bool
	hold.Store(true)
	held, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { hold.Store(false); close(release) }) }
	t.Cleanup(free) // before the server stops
	proxy.SetFaults(func(r *http.Request) s3test.Fault {
		if r.Method == http.MethodPut && hold.Load() {
			select {
			case held <- struct{}{}:
			default:
			}
			select { // until the uploader gives up, or the test lets it go
			case <-r.Context().Done():
			case <-release:
			}
		}
		return s3test.Pass
	})
	p, err := e.bis.BeginAdhocBackup(e.ctx, "rg-vault", "vault1", "data1-bi", armdataprotection.TriggerBackupRequest{BackupRuleOptions: &armdataprotection.AdHocBackupRuleOptions{
		RuleName: to.Ptr("BackupHourly"), TriggerOption: &armdataprotection.AdhocBackupTriggerOption{RetentionTagOverride: to.Ptr("Default")}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.PollUntilDone(e.ctx, &runtimePollOptions)
	if err != nil {
		t.Fatal(err)
	}
	<-held // the backup runs: its pack upload waits at the S3 server
	j, err := e.c.CancelJob(e.ctx, "rg-vault", "vault1", *res.JobID)
	if err != nil {
		t.Fatalf("cancel the running backup: %v", err)
	}
	if j.Properties.Status != "InProgress" && j.Properties.Status != "Cancelled" {
		t.Fatalf("job after the cancel request: %s", j.Properties.Status)
	}
	end := e.waitJob(t, "rg-vault", "vault1", *res.JobID)
	free()
	if *end.Status != "Cancelled" || end.ExtendedInfo == nil || end.ExtendedInfo.AdditionalDetails["CancelReason"] == nil {
		t.Fatalf("cancelled backup job: %s %+v", *end.Status, end.ExtendedInfo)
	}
	if rps := e.recoveryPoints(t, "rg-vault", "vault1", "data1-bi", nil); len(rps) != 1 {
		t.Fatalf("%d recovery points after the cancelled backup, want the first one only", len(rps))
	}
	if snaps, err := e.c.ListSnapshots(e.ctx, "rg-snaps"); err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots after the cancelled backup: %d %v, want the first backup's only", len(snaps), err)
	}
	if _, err := e.c.CancelJob(e.ctx, "rg-vault", "vault1", *res.JobID); err == nil {
		t.Fatal("cancelling an ended job succeeded")
	}
	if j := e.backupNow(t, "rg-vault", "vault1", "data1-bi", "BackupHourly", "Default"); *j.Status != "Completed" {
		t.Fatalf("the backup after the cancelled one: %s", *j.Status)
	}
}
