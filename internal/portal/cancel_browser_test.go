package portal_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"coffer/internal/blobstore/s3/s3test"
	"coffer/internal/e2e"
)

// TestBrowserCancelRunningBackup presses Backup now in headless Chromium
// while the S3 server (versitygw behind a proxy) keeps the backup's pack
// upload waiting, so the job runs; Cancel job on its page stops it: the
// page, refreshing itself, shows it Cancelled with who cancelled it, and
// the instance has no new recovery point.
func TestBrowserCancelRunningBackup(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	srv.SetEnv(t)
	s := newSiteWith(t, e2e.Options{Blob: "s3://" + bucket + "/coffer", S3Endpoint: proxy.URL, S3PathStyle: true})
	instanceURL, _ := protected(t, s, "data1")
	writeDisk(t, s, "rg-disks", "data1", bytes.Repeat([]byte("to be cancelled "), 8192))

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
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
		return s3test.Pass
	})

	tb := newTab(t, s)
	tb.signIn(s.env.Admin.ClientID, s.env.Admin.ClientSecret)
	tb.open(instanceURL)
	tb.run(
		chromedp.WaitVisible(`#backup-form`, chromedp.ByQuery),
		chromedp.Click(`#backup-form button[type="submit"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#job-status`, chromedp.ByQuery),
	)
	<-held // the backup runs: its pack upload waits at the S3 server
	tb.run(chromedp.WaitVisible(`form[action$="/cancel"] button:not([disabled])`, chromedp.ByQuery))
	tb.screenshot("job-running")
	tb.run(
		chromedp.Click(`form[action$="/cancel"] button`, chromedp.ByQuery),
		chromedp.WaitVisible(`.head .status.s-cancelled`, chromedp.ByQuery),
	)
	free()
	tb.screenshot("job-cancelled")
	if got := tb.text(`dl.essentials`); !strings.Contains(got, "Cancelled by") {
		t.Fatalf("the cancelled job's page does not say who cancelled it: %q", got)
	}
	rps, err := s.admin.ListRecoveryPoints(context.Background(), "rg-vault", "v1", "data1-bi", "")
	if err != nil || len(rps) != 0 {
		t.Fatalf("recovery points after the cancelled backup: %d %v", len(rps), err)
	}
}
