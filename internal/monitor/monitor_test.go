package monitor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/monitor"
	"coffer/internal/notify"
	"coffer/internal/notify/notifytest"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/store/memstore"
	"coffer/internal/worker"
)

const (
	sub      = "00000000-0000-0000-0000-000000000001"
	vaultID  = "/subscriptions/" + sub + "/resourceGroups/backup/providers/Microsoft.DataProtection/backupVaults/vault1"
	instID   = vaultID + "/backupInstances/data-bi"
	diskID   = "/subscriptions/" + sub + "/resourceGroups/prod/providers/Microsoft.Compute/disks/data"
	startsAt = "2026-03-02T01:00:00Z"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// rig is a monitor over an in-memory store, with the job queue and a
// worker pool that delivers its notifications, on a fake clock.
type rig struct {
	t     *testing.T
	st    *memstore.Store
	clk   *clock.Fake
	log   *syncBuffer
	mon   *monitor.Service
	queue *job.Queue
	pool  *worker.Pool
}

func newRig(t *testing.T, st *memstore.Store, clk *clock.Fake, key []byte) *rig {
	t.Helper()
	log := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sealer, err := monitor.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	q := job.NewQueue(st, clk)
	mon := &monitor.Service{Store: st, Clock: clk, Logger: logger, Queue: q, Sealer: sealer,
		Senders: map[string]monitor.Sender{monitor.KindWebhook: &notify.Webhook{Clock: clk}, monitor.KindEmail: &notify.Mailer{}}}
	pool := worker.NewPool(q, clk, logger, 1)
	pool.Handle(monitor.TaskNotify, mon.ExecNotify)
	pool.Dead = mon.DeliveryFailed
	return &rig{t: t, st: st, clk: clk, log: log, mon: mon, queue: q, pool: pool}
}

func (r *rig) tick() {
	r.t.Helper()
	if err := r.mon.Tick(context.Background()); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) drain() {
	r.t.Helper()
	if err := r.pool.Drain(context.Background()); err != nil {
		r.t.Fatal(err)
	}
}

// putVault writes a vault record as Microsoft.DataProtection stores it,
// with the given monitoringSettings (nil: none).
func putVault(t *testing.T, st store.Store, monitoring any) {
	t.Helper()
	v := dataprotection.VaultResource{ID: vaultID, Name: "vault1", Type: dataprotection.VaultResourceType, Location: "local"}
	if monitoring != nil {
		b, _ := json.Marshal(monitoring)
		v.Properties.MonitoringSettings = b
	}
	b, _ := json.Marshal(v)
	err := st.Update(context.Background(), func(tx store.Tx) error {
		return tx.Put(context.Background(), &store.Object{Kind: dataprotection.VaultResourceType, Key: strings.ToLower(vaultID), Data: b}, store.PutOptions{})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func alertSettings(v string) any {
	return map[string]any{"azureMonitorAlertSettings": map[string]any{"alertsForAllJobFailures": v}}
}

// putJob writes a backup job of the instance.
func putJob(t *testing.T, st store.Store, clk clock.Clock, id string, status job.Status, code string, create bool) {
	t.Helper()
	r := job.Record{ID: id, VaultID: vaultID, Operation: job.OpBackup, OperationCategory: job.CategoryBackup, Status: status,
		StartTime: clk.Now().UTC().Add(-time.Minute), BackupInstanceID: instID, BackupInstanceFriendlyName: "data-bi",
		DataSourceID: diskID, DataSourceName: "data", IsUserTriggered: true, InitiatedBy: "p-123"}
	if status.IsTerminal() {
		r.EndTime = clk.Now().UTC()
		r.BytesTransferred = 4096
	}
	if code != "" {
		r.ErrorDetails = []job.UserFacingError{{Code: code, Message: "The disk was not found.", RecommendedAction: []string{"Check the disk."}}}
	}
	err := st.Update(context.Background(), func(tx store.Tx) error {
		return job.Put(context.Background(), tx, r, store.PutOptions{CreateOnly: create})
	})
	if err != nil {
		t.Fatal(err)
	}
}

type hook struct {
	mu     sync.Mutex
	reqs   []*http.Request
	bodies [][]byte
	fail   int // answer 500 to this many requests first
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reqs, h.bodies = append(h.reqs, r), append(h.bodies, b)
	if h.fail > 0 {
		h.fail--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *hook) got() ([]*http.Request, [][]byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*http.Request(nil), h.reqs...), append([][]byte(nil), h.bodies...)
}

func key() []byte { return bytes.Repeat([]byte{7}, 32) }

func vaultScope() resource.ID { id, _ := resource.Parse(vaultID); return id }

func TestJobFailureAlertLifecycle(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	clk := clock.NewFake(time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC))
	r := newRig(t, st, clk, key())
	putVault(t, st, nil) // no settings: job failure alerts are on, as in Azure
	putJob(t, st, clk, "old-failure", job.Failed, "UserErrorManagedDiskNotFound", true)

	h := &hook{fail: 2}
	srv := httptest.NewServer(h)
	defer srv.Close()
	tg, secret, created, err := r.mon.PutTarget(ctx, monitor.TargetInput{Name: "ops", Kind: "webhook", URL: srv.URL + "/alerts"}, "admin")
	if err != nil || !created || secret == "" || !tg.HasSecret() {
		t.Fatalf("PutTarget: %+v %q %v %v", tg, secret, created, err)
	}

	// A first start raises nothing for the history it finds.
	r.tick()
	if as, _ := r.mon.ListAlerts(ctx, resource.ID{}, monitor.AlertFilter{}); len(as) != 0 {
		t.Fatalf("history raised %d alerts", len(as))
	}

	putJob(t, st, clk, "j1", job.InProgress, "", true)
	r.tick()
	if l := r.log.String(); !strings.Contains(l, `msg="job started"`) || !strings.Contains(l, "j1") || !strings.Contains(l, "principal=p-123") {
		t.Fatalf("no start line:\n%s", l)
	}
	clk.Advance(time.Minute)
	putJob(t, st, clk, "j1", job.Failed, "UserErrorManagedDiskNotFound", false)
	r.tick()
	if l := r.log.String(); !strings.Contains(l, `msg="job ended"`) || !strings.Contains(l, "outcome=Failed") || !strings.Contains(l, "bytes=4096") {
		t.Fatalf("no end line:\n%s", l)
	}
	as, err := r.mon.ListAlerts(ctx, vaultScope(), monitor.AlertFilter{})
	if err != nil || len(as) != 1 {
		t.Fatalf("alerts %+v %v", as, err)
	}
	a := as[0]
	if a.Rule != monitor.RuleBackupFailure || a.State != monitor.StateNew || a.Condition != monitor.Fired ||
		a.ErrorCode != "UserErrorManagedDiskNotFound" || a.Occurrences != 1 || a.InstanceID != instID {
		t.Fatalf("alert %+v", a)
	}

	// Delivery: two 503s, retried after the queue's backoff on the fake
	// clock, then delivered; the same delivery ID and a valid signature
	// every time.
	r.drain()
	clk.Advance(10 * time.Second)
	r.drain()
	clk.Advance(20 * time.Second)
	r.drain()
	reqs, bodies := h.got()
	if len(reqs) != 3 {
		t.Fatalf("%d webhook requests, want 3", len(reqs))
	}
	for i, q := range reqs {
		ts := q.Header.Get(notify.HeaderTimestamp)
		if !notify.Verify(secret, ts, bodies[i], q.Header.Get(notify.HeaderSignature)) {
			t.Errorf("request %d: bad signature", i)
		}
		if q.Header.Get(notify.HeaderDelivery) != reqs[0].Header.Get(notify.HeaderDelivery) {
			t.Errorf("request %d: another delivery ID", i)
		}
	}
	var body notify.CommonAlert
	json.Unmarshal(bodies[2], &body)
	if body.Data.Essentials.AlertID != a.ID || body.Data.Essentials.MonitorCondition != "Fired" {
		t.Errorf("body %s", bodies[2])
	}
	if tg, _ := r.mon.GetTarget(ctx, "ops"); tg.LastDelivery == nil || tg.LastDelivery.Status != monitor.Delivered || tg.LastDelivery.Attempts != 3 {
		t.Errorf("last delivery %+v", tg.LastDelivery)
	}

	// The same failure again counts in the open alert, and is not sent again.
	putJob(t, st, clk, "j2", job.Failed, "UserErrorManagedDiskNotFound", true)
	r.tick()
	r.drain()
	as, _ = r.mon.ListAlerts(ctx, vaultScope(), monitor.AlertFilter{})
	if len(as) != 1 || as[0].Occurrences != 2 || !strings.HasSuffix(as[0].LastJobID, "j2") {
		t.Fatalf("repeat: %+v", as)
	}
	if reqs, _ := h.got(); len(reqs) != 3 {
		t.Fatalf("a repeat was delivered again (%d requests)", len(reqs))
	}

	// A backup that succeeds resolves it, and that is delivered too.
	putJob(t, st, clk, "j3", job.Completed, "", true)
	r.tick()
	r.drain()
	got, err := r.mon.GetAlert(ctx, vaultScope(), a.Name)
	if err != nil || got.Condition != monitor.Resolved || got.ResolvedTime.IsZero() {
		t.Fatalf("after success: %+v %v", got, err)
	}
	reqs, bodies = h.got()
	if len(reqs) != 4 || !strings.Contains(string(bodies[3]), `"monitorCondition":"Resolved"`) {
		t.Fatalf("resolution not delivered: %d requests", len(reqs))
	}

	// Users acknowledge and close alerts.
	got, err = r.mon.ChangeState(ctx, vaultScope(), a.Name, monitor.StateClosed, "fixed the disk", "alice")
	if err != nil || got.State != monitor.StateClosed || got.LastModifiedBy != "alice" || got.Comment != "fixed the disk" {
		t.Fatalf("close: %+v %v", got, err)
	}
	if _, err := r.mon.GetAlert(ctx, vaultScope(), "no-such-alert"); err == nil {
		t.Fatal("an unknown alert was found")
	}
}

func TestJobFailureAlertsDisabledByTheVault(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	clk := clock.NewFake(time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC))
	r := newRig(t, st, clk, key())
	putVault(t, st, alertSettings("Disabled"))
	r.tick()
	putJob(t, st, clk, "j1", job.Failed, "UserErrorManagedDiskNotFound", true)
	r.tick()
	if as, _ := r.mon.ListAlerts(ctx, resource.ID{}, monitor.AlertFilter{}); len(as) != 0 {
		t.Fatalf("alertsForAllJobFailures Disabled, yet %d alerts", len(as))
	}
	putVault(t, st, alertSettings("enabled")) // case-insensitive, as ARM
	putJob(t, st, clk, "j2", job.Failed, "UserErrorManagedDiskNotFound", true)
	r.tick()
	if as, _ := r.mon.ListAlerts(ctx, resource.ID{}, monitor.AlertFilter{}); len(as) != 1 {
		t.Fatalf("Enabled: %d alerts, want 1", len(as))
	}
}

// A failure that happens while the monitor is not running raises its alert
// when it runs again: the index it evaluated to is in the store.
func TestFailureWhileStoppedAlertsAtStart(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	clk := clock.NewFake(time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC))
	putVault(t, st, nil)
	newRig(t, st, clk, key()).tick()
	putJob(t, st, clk, "j1", job.Failed, "UserErrorManagedDiskNotFound", true)
	r2 := newRig(t, st, clk, key())
	r2.tick()
	as, _ := r2.mon.ListAlerts(ctx, resource.ID{}, monitor.AlertFilter{})
	if len(as) != 1 {
		t.Fatalf("%d alerts after a restart, want 1", len(as))
	}
	if !strings.Contains(r2.log.String(), `msg="alert fired"`) {
		t.Errorf("no log line for the alert:\n%s", r2.log.String())
	}
}

// Deliveries are tasks of the durable queue: a notification that could
// not be delivered before a restart is delivered after it.
func TestDeliverySurvivesRestart(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	clk := clock.NewFake(time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC))
	putVault(t, st, nil)
	h := &hook{fail: 1}
	srv := httptest.NewServer(h)
	defer srv.Close()
	r := newRig(t, st, clk, key())
	if _, _, _, err := r.mon.PutTarget(ctx, monitor.TargetInput{Name: "ops", Kind: monitor.KindWebhook, URL: srv.URL, Secret: "given"}, "admin"); err != nil {
		t.Fatal(err)
	}
	r.tick()
	putJob(t, st, clk, "j1", job.Failed, "X", true)
	r.tick()
	r.drain() // fails once
	if reqs, _ := h.got(); len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	// "Restart": a new queue, pool and monitor on the same store and key.
	r2 := newRig(t, st, clk, key())
	if err := r2.pool.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	r2.drain()
	reqs, bodies := h.got()
	if len(reqs) != 2 {
		t.Fatalf("%d requests after the restart, want 2", len(reqs))
	}
	if !notify.Verify("given", reqs[1].Header.Get(notify.HeaderTimestamp), bodies[1], reqs[1].Header.Get(notify.HeaderSignature)) {
		t.Error("the secret given at creation does not verify after a restart")
	}
}

// A notification that never gets through is given up after the delivery
// limit, and the target says so.
func TestDeliveryGivesUp(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	clk := clock.NewFake(time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC))
	putVault(t, st, nil)
	h := &hook{fail: 1000}
	srv := httptest.NewServer(h)
	defer srv.Close()
	r := newRig(t, st, clk, key())
	r.mon.MaxDeliveries = 3
	r.mon.PutTarget(ctx, monitor.TargetInput{Name: "ops", Kind: monitor.KindWebhook, URL: srv.URL}, "admin")
	r.tick()
	putJob(t, st, clk, "j1", job.Failed, "X", true)
	r.tick()
	for i := 0; i < 5; i++ {
		r.drain()
		clk.Advance(time.Hour)
	}
	if reqs, _ := h.got(); len(reqs) != 3 {
		t.Fatalf("%d tries, want 3", len(reqs))
	}
	tg, _ := r.mon.GetTarget(ctx, "ops")
	if tg.LastDelivery == nil || tg.LastDelivery.Status != monitor.Failed {
		t.Fatalf("last delivery %+v", tg.LastDelivery)
	}
	if !strings.Contains(r.log.String(), "giving up") {
		t.Errorf("no log line for the dropped notification")
	}
}

func TestEmailDelivery(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	clk := clock.NewFake(time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC))
	putVault(t, st, nil)
	smtp := notifytest.StartSMTP(t)
	smtp.User, smtp.Password = "coffer", "mail-pw-1"
	r := newRig(t, st, clk, key())
	_, gen, _, err := r.mon.PutTarget(ctx, monitor.TargetInput{Name: "mail", Kind: monitor.KindEmail, SMTPServer: smtp.Addr,
		From: "coffer@example.com", To: []string{"ops@example.com"}, Username: "coffer", Secret: "mail-pw-1", CACertificate: smtp.CAPEM}, "admin")
	if err != nil || gen != "" {
		t.Fatalf("PutTarget: %q %v", gen, err)
	}
	if err := r.mon.TestTarget(ctx, "mail", "admin"); err != nil {
		t.Fatal(err)
	}
	r.tick()
	putJob(t, st, clk, "j1", job.Failed, "UserErrorManagedDiskNotFound", true)
	r.tick()
	r.drain()
	msgs := smtp.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want the test and the alert", len(msgs))
	}
	if !msgs[1].TLS || msgs[1].AuthUser != "coffer" || !strings.Contains(msgs[1].Data, "Backup Failure") {
		t.Fatalf("message %+v", msgs[1])
	}
}

func TestTargetValidation(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, memstore.New(), clock.NewFake(time.Unix(0, 0)), key())
	for _, in := range []monitor.TargetInput{
		{Name: "bad name", Kind: monitor.KindWebhook, URL: "https://x"},
		{Name: "a", Kind: "Pager", URL: "https://x"},
		{Name: "a", Kind: monitor.KindWebhook, URL: "ftp://x"},
		{Name: "a", Kind: monitor.KindWebhook, URL: "https://user:pw@x/"},
		{Name: "a", Kind: monitor.KindWebhook, URL: "/relative"},
		{Name: "a", Kind: monitor.KindEmail, SMTPServer: "nohostport", From: "a@b", To: []string{"c@d"}},
		{Name: "a", Kind: monitor.KindEmail, SMTPServer: "h:25", From: "a@b\r\nBcc: x@y", To: []string{"c@d"}},
		{Name: "a", Kind: monitor.KindEmail, SMTPServer: "h:25", From: "a@b", To: nil},
		{Name: "a", Kind: monitor.KindEmail, SMTPServer: "h:25", From: "a@b", To: []string{"not an address"}},
		{Name: "a", Kind: monitor.KindEmail, SMTPServer: "h:25", From: "a@b", To: []string{"c@d"}, Username: "u"}, // no password
	} {
		if _, _, _, err := r.mon.PutTarget(ctx, in, "admin"); err == nil {
			t.Errorf("PutTarget(%+v) succeeded", in)
		} else if e := resource.AsError(err); e == nil || e.Kind != resource.KindBadRequest {
			t.Errorf("PutTarget(%+v): %v, want a 400", in, err)
		}
	}
	if ts, _ := r.mon.ListTargets(ctx); len(ts) != 0 {
		t.Fatalf("refused targets were stored: %+v", ts)
	}
}

// Secrets are sealed: the stored record holds neither the secret nor
// anything that opens without the key, and another key cannot open it.
func TestTargetSecretSealed(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	r := newRig(t, st, clock.NewFake(time.Unix(0, 0)), key())
	if _, _, _, err := r.mon.PutTarget(ctx, monitor.TargetInput{Name: "ops", Kind: monitor.KindWebhook, URL: "https://h/x", Secret: "top-secret-value"}, "admin"); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	st.View(ctx, func(tx store.Tx) error {
		objs, _ := tx.List(ctx, store.Query{Kind: monitor.KindTarget})
		for _, o := range objs {
			raw = append(raw, o.Data...)
		}
		return nil
	})
	if len(raw) == 0 || bytes.Contains(raw, []byte("top-secret-value")) {
		t.Fatalf("stored target: %s", raw)
	}
	tg, _ := r.mon.GetTarget(ctx, "ops")
	other, _ := monitor.NewSealer(bytes.Repeat([]byte{8}, 32))
	if _, err := other.Open("ops", tg.SealedSecret); err == nil {
		t.Fatal("another key opened the secret")
	}
	mine, _ := monitor.NewSealer(key())
	if v, err := mine.Open("ops", tg.SealedSecret); err != nil || v != "top-secret-value" {
		t.Fatalf("open: %q %v", v, err)
	}
	if _, err := mine.Open("other-target", tg.SealedSecret); err == nil {
		t.Fatal("the secret opened for another target's name")
	}
	// Replacing the target without a secret keeps it.
	if _, gen, created, err := r.mon.PutTarget(ctx, monitor.TargetInput{Name: "OPS", Kind: monitor.KindWebhook, URL: "https://h/y"}, "admin"); err != nil || gen != "" || created {
		t.Fatalf("replace: %q %v %v", gen, created, err)
	}
	tg2, _ := r.mon.GetTarget(ctx, "ops")
	if v, _ := mine.Open(tg2.Name, tg2.SealedSecret); v != "top-secret-value" || tg2.URL != "https://h/y" {
		t.Fatalf("after replace: %+v %q", tg2, v)
	}
}
