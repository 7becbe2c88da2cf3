package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"strings"
	"time"

	"coffer/internal/monitor"
)

// Mailer sends notifications by email over SMTP. It requires STARTTLS:
// against a server that does not offer it, it sends nothing (no message
// and no password travel in clear), and the delivery fails.
type Mailer struct {
	// Hello is the name sent in EHLO ("coffer" when empty).
	Hello string
}

var _ monitor.Sender = (*Mailer)(nil)

// ErrNoStartTLS is returned for an SMTP server that does not offer
// STARTTLS.
var ErrNoStartTLS = errors.New("the SMTP server does not offer STARTTLS, and Coffer sends mail only over TLS")

// Send mails n to t's recipients through t's SMTP server, logging in with
// t.Username and password (PLAIN, after STARTTLS) when a username is set.
func (m *Mailer) Send(ctx context.Context, t monitor.Target, password string, n monitor.Notification) (err error) {
	host, _, err := net.SplitHostPort(t.SMTPServer)
	if err != nil {
		return fmt.Errorf("smtp server %q: %w", t.SMTPServer, err)
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.SMTPServer)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", t.SMTPServer, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // bounds every step
	defer stop()
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: %w", t.SMTPServer, err)
	}
	defer c.Close()
	step := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("smtp %s: %s: %w", t.SMTPServer, what, err)
		}
		return nil
	}
	hello := m.Hello
	if hello == "" {
		hello = "coffer"
	}
	if err := step("EHLO", c.Hello(hello)); err != nil {
		return err
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return fmt.Errorf("smtp %s: %w", t.SMTPServer, ErrNoStartTLS)
	}
	cfg, err := tlsConfig(t, host)
	if err != nil {
		return err
	}
	if err := step("STARTTLS", c.StartTLS(cfg)); err != nil {
		return err
	}
	if t.Username != "" {
		if err := step("AUTH", c.Auth(smtp.PlainAuth("", t.Username, password, host))); err != nil {
			return err
		}
	}
	if err := step("MAIL FROM", c.Mail(address(t.From))); err != nil {
		return err
	}
	for _, to := range t.To {
		if err := step("RCPT TO "+address(to), c.Rcpt(address(to))); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err := step("DATA", err); err != nil {
		return err
	}
	if _, err := w.Write(Message(t, n)); err != nil {
		return step("DATA", err)
	}
	if err := step("end of DATA", w.Close()); err != nil {
		return err
	}
	return step("QUIT", c.Quit())
}

// address returns the bare address of an RFC 5322 address ("Ops
// <ops@example.com>" → "ops@example.com"); Target validation parsed it.
func address(s string) string {
	if i, j := strings.LastIndex(s, "<"), strings.LastIndex(s, ">"); i >= 0 && j > i {
		return s[i+1 : j]
	}
	return strings.TrimSpace(s)
}

// headerValue keeps a header value on one line.
func headerValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// Message is the RFC 5322 message of n for t (CRLF line ends; the SMTP
// client dot-stuffs it).
func Message(t monitor.Target, n monitor.Notification) []byte {
	a := n.Alert
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, headerValue(v)) }
	h("From", t.From)
	h("To", strings.Join(t.To, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", Subject(n)))
	h("Date", n.Time.UTC().Format(time.RFC1123Z))
	h("Message-ID", "<"+n.ID+"."+fmt.Sprint(n.Time.UnixNano())+"@coffer>")
	h("X-Coffer-Delivery", n.ID)
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	line := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n"))
		b.WriteString("\r\n")
	}
	line("%s", a.Description)
	line("")
	line("Alert:        %s (%s)", a.Rule.Title(), a.Rule)
	line("Condition:    %s", n.Event)
	line("State:        %s", a.State)
	line("Severity:     %s", a.Severity)
	if a.VaultID != "" {
		line("Vault:        %s", a.VaultID)
	}
	if a.InstanceID != "" {
		line("Instance:     %s", a.InstanceID)
	}
	if a.DataSourceID != "" {
		line("Data source:  %s", a.DataSourceID)
	}
	if a.ErrorCode != "" {
		line("Error:        %s: %s", a.ErrorCode, a.ErrorMessage)
	}
	for _, r := range a.RecommendedAction {
		line("Recommended:  %s", r)
	}
	if a.LastJobID != "" {
		line("Latest job:   %s", a.LastJobID)
	}
	if a.Occurrences > 1 {
		line("Occurrences:  %d", a.Occurrences)
	}
	if !a.Deadline.IsZero() {
		line("Backup due:   %s", rfc3339(a.BackupDue))
		line("Deadline:     %s", rfc3339(a.Deadline))
		if a.LastRecoveryPoint.IsZero() {
			line("Latest point: none")
		} else {
			line("Latest point: %s", rfc3339(a.LastRecoveryPoint))
		}
	}
	line("Fired:        %s", rfc3339(a.StartTime))
	if !a.ResolvedTime.IsZero() {
		line("Resolved:     %s", rfc3339(a.ResolvedTime))
	}
	line("Alert ID:     %s", a.ID)
	line("")
	line("Acknowledge or close it with: coffer alert ack|close --id %s", a.ID)
	return b.Bytes()
}
