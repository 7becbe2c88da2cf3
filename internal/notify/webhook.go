package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"coffer/internal/clock"
	"coffer/internal/monitor"
)

// Headers of a webhook notification.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256, under the
	// target's secret, of the timestamp header's value, a ".", and the
	// body: a receiver recomputes it, compares in constant time, and
	// refuses a timestamp too far from its clock (a replay).
	HeaderSignature = "X-Coffer-Signature"
	// HeaderTimestamp is the Unix time of the attempt, in seconds.
	HeaderTimestamp = "X-Coffer-Timestamp"
	// HeaderDelivery identifies the delivery, the same on every retry.
	HeaderDelivery = "X-Coffer-Delivery"
)

// Sign returns the signature header value of body sent at timestamp ts.
func Sign(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is body's signature at ts under secret (for
// receivers, and tests).
func Verify(secret, ts string, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sig))
}

// Webhook POSTs notifications as JSON.
type Webhook struct {
	Clock clock.Clock
	// Transport is the base round tripper (nil: a clone of
	// http.DefaultTransport, which honours the proxy environment).
	Transport *http.Transport
}

var _ monitor.Sender = (*Webhook)(nil)

// Send posts n to t.URL. A 2xx answer is a delivery; anything else, a
// redirect included (it is not followed), is an error to retry.
func (h *Webhook) Send(ctx context.Context, t monitor.Target, secret string, n monitor.Notification) error {
	body, err := json.Marshal(Common(n))
	if err != nil {
		return fmt.Errorf("encode the notification: %w", err)
	}
	u, err := url.Parse(t.URL)
	if err != nil {
		return fmt.Errorf("webhook URL: %w", err)
	}
	tr := h.Transport
	if tr == nil {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	} else {
		tr = tr.Clone()
	}
	if u.Scheme == "https" {
		cfg, err := tlsConfig(t, u.Hostname())
		if err != nil {
			return err
		}
		tr.TLSClientConfig = cfg
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	ts := strconv.FormatInt(h.Clock.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Coffer-Alerts/1")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderDelivery, n.ID)
	if secret != "" {
		req.Header.Set(HeaderSignature, Sign(secret, ts, body))
	}
	resp, err := cl.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the whole URL
		}
		return fmt.Errorf("webhook %s: %w", redact(u), err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s answered %s", redact(u), resp.Status)
	}
	return nil
}

// redact names a webhook by its scheme and host alone: its path and query
// may carry a token (many receivers put one there).
func redact(u *url.URL) string { return u.Scheme + "://" + u.Host }
