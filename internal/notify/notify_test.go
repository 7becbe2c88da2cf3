package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/monitor"
	"coffer/internal/notify"
	"coffer/internal/notify/notifytest"
)

func sample() monitor.Notification {
	t0 := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	return monitor.Notification{ID: "d-1", Event: monitor.Fired, Time: t0.Add(time.Minute), Alert: monitor.Alert{
		ID:   "/subscriptions/s/resourceGroups/g/providers/Microsoft.DataProtection/backupVaults/v/providers/Microsoft.AlertsManagement/alerts/a1",
		Name: "a1", Rule: monitor.RuleBackupFailure, Severity: monitor.Sev1, State: monitor.StateNew, Condition: monitor.Fired,
		VaultID: "/subscriptions/s/resourceGroups/g/providers/Microsoft.DataProtection/backupVaults/v", InstanceName: "data-bi",
		ErrorCode: "UserErrorManagedDiskNotFound", ErrorMessage: "The disk\r\nBcc: evil@example.com is gone.", Occurrences: 1,
		Description: "The backup job of data-bi failed.", StartTime: t0}}
}

type received struct {
	header http.Header
	body   []byte
}

func receiver(t *testing.T, status func(n int) int) (*httptest.Server, func() []received) {
	var mu sync.Mutex
	var got []received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, received{r.Header.Clone(), b})
		n := len(got)
		mu.Unlock()
		w.WriteHeader(status(n))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []received { mu.Lock(); defer mu.Unlock(); return append([]received(nil), got...) }
}

func TestWebhookSignedCommonSchema(t *testing.T) {
	srv, got := receiver(t, func(int) int { return http.StatusAccepted })
	clk := clock.NewFake(time.Unix(1772330000, 0))
	h := &notify.Webhook{Clock: clk}
	tg := monitor.Target{Name: "ops", Kind: monitor.KindWebhook, URL: srv.URL + "/hook?token=abc"}
	if err := h.Send(context.Background(), tg, "s3cret", sample()); err != nil {
		t.Fatal(err)
	}
	r := got()
	if len(r) != 1 {
		t.Fatalf("%d requests", len(r))
	}
	ts := r[0].header.Get(notify.HeaderTimestamp)
	if ts != "1772330000" {
		t.Errorf("timestamp %q", ts)
	}
	sig := r[0].header.Get(notify.HeaderSignature)
	if !notify.Verify("s3cret", ts, r[0].body, sig) {
		t.Errorf("signature %q does not verify", sig)
	}
	if notify.Verify("other", ts, r[0].body, sig) || notify.Verify("s3cret", "1772330001", r[0].body, sig) {
		t.Error("signature verifies under another secret or timestamp")
	}
	if d := r[0].header.Get(notify.HeaderDelivery); d != "d-1" {
		t.Errorf("delivery %q", d)
	}
	var body notify.CommonAlert
	if err := json.Unmarshal(r[0].body, &body); err != nil {
		t.Fatal(err)
	}
	e := body.Data.Essentials
	if body.SchemaID != "azureMonitorCommonAlertSchema" || e.AlertRule != "BackupFailure" || e.MonitorCondition != "Fired" ||
		e.Severity != "Sev1" || e.MonitoringService != "Azure Backup" || len(e.AlertTargetIDs) != 1 || body.Data.AlertContext.ErrorCode != "UserErrorManagedDiskNotFound" {
		t.Errorf("body %s", r[0].body)
	}
}

func TestWebhookFailures(t *testing.T) {
	clk := clock.NewFake(time.Unix(1772330000, 0))
	h := &notify.Webhook{Clock: clk}
	srv, _ := receiver(t, func(int) int { return http.StatusInternalServerError })
	err := h.Send(context.Background(), monitor.Target{Name: "x", Kind: monitor.KindWebhook, URL: srv.URL + "/p/SECRETPATH?token=SECRETQ"}, "", sample())
	if err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("500 answered: err %v", err)
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Errorf("the error names the URL's path or query: %v", err)
	}
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srv.URL, http.StatusFound)
	}))
	defer redir.Close()
	if err := h.Send(context.Background(), monitor.Target{Name: "x", Kind: monitor.KindWebhook, URL: redir.URL}, "", sample()); err == nil {
		t.Error("a redirect counted as delivered")
	}
	// Nothing listens: a connection error, without the URL's query.
	dead := srv.URL
	srv.Close()
	err = h.Send(context.Background(), monitor.Target{Name: "x", Kind: monitor.KindWebhook, URL: dead + "/?token=SECRETQ"}, "", sample())
	if err == nil || strings.Contains(err.Error(), "SECRETQ") {
		t.Errorf("dead receiver: %v", err)
	}
}

func TestWebhookTLSWithTargetCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	h := &notify.Webhook{Clock: clock.NewFake(time.Unix(1, 0))}
	tg := monitor.Target{Name: "x", Kind: monitor.KindWebhook, URL: srv.URL}
	if err := h.Send(context.Background(), tg, "", sample()); err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
	tg.CACertificate = pemOf(srv)
	if err := h.Send(context.Background(), tg, "", sample()); err != nil {
		t.Fatal(err)
	}
}

func TestMailerSTARTTLSAndAuth(t *testing.T) {
	s := notifytest.StartSMTP(t)
	s.User, s.Password = "alerts", "pw-123"
	tg := monitor.Target{Name: "mail", Kind: monitor.KindEmail, SMTPServer: s.Addr, From: "Coffer <coffer@example.com>",
		To: []string{"ops@example.com", "oncall@example.com"}, Username: "alerts", CACertificate: s.CAPEM}
	m := &notify.Mailer{}
	if err := m.Send(context.Background(), tg, "pw-123", sample()); err != nil {
		t.Fatal(err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	msg := msgs[0]
	if !msg.TLS || msg.AuthUser != "alerts" || msg.From != "coffer@example.com" || len(msg.To) != 2 {
		t.Errorf("message %+v", msg)
	}
	if !strings.Contains(msg.Data, "Subject: ") || !strings.Contains(msg.Data, "UserErrorManagedDiskNotFound") {
		t.Errorf("data:\n%s", msg.Data)
	}
	// A newline in an error message cannot add a header.
	head, _, _ := strings.Cut(msg.Data, "\r\n\r\n")
	if strings.Contains(head, "Bcc:") {
		t.Errorf("header injection:\n%s", head)
	}
	if err := m.Send(context.Background(), tg, "wrong", sample()); err == nil {
		t.Error("a wrong password was accepted")
	}
	// A temporary refusal is an error (the monitor tries again).
	s.FailNext(1)
	if err := m.Send(context.Background(), tg, "pw-123", sample()); err == nil {
		t.Error("451 counted as delivered")
	}
}

func TestMailerRefusesWithoutSTARTTLS(t *testing.T) {
	s := notifytest.StartSMTP(t)
	s.NoStartTLS = true
	tg := monitor.Target{Name: "mail", Kind: monitor.KindEmail, SMTPServer: s.Addr, From: "coffer@example.com",
		To: []string{"ops@example.com"}, Username: "alerts", CACertificate: s.CAPEM}
	err := (&notify.Mailer{}).Send(context.Background(), tg, "pw", sample())
	if !errors.Is(err, notify.ErrNoStartTLS) {
		t.Fatalf("err %v, want ErrNoStartTLS", err)
	}
	if n := len(s.Messages()); n != 0 {
		t.Fatalf("%d messages sent in clear", n)
	}
}

func TestMailerUntrustedCertificate(t *testing.T) {
	s := notifytest.StartSMTP(t)
	tg := monitor.Target{Name: "mail", Kind: monitor.KindEmail, SMTPServer: s.Addr, From: "coffer@example.com", To: []string{"ops@example.com"}}
	if err := (&notify.Mailer{}).Send(context.Background(), tg, "", sample()); err == nil {
		t.Fatal("STARTTLS to an untrusted certificate succeeded")
	}
	if len(s.Messages()) != 0 {
		t.Fatal("a message was sent")
	}
}
