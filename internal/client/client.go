// Package client is the Go client of Coffer's HTTP API. The CLI and the
// end-to-end tests use it; it speaks the same ARM REST API as the Azure
// SDKs, including long-running-operation polling.
//
// Configuration is found, in order, from explicit Config fields, the
// COFFER_ENDPOINT / COFFER_TOKEN / COFFER_SUBSCRIPTION environment, the
// profile written by `coffer login`, and the admin.json of a local data
// directory ($COFFER_DATA or ./coffer-data).
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"coffer/internal/clock"
)

// Client calls the API.
type Client struct {
	Config
	HTTP *http.Client
	// PollInterval caps the wait between polls of a long-running operation
	// or a job. The first poll comes FirstPoll after the start and each
	// wait doubles the last, up to PollInterval or the server's
	// Retry-After, whichever is shorter.
	PollInterval time.Duration
	// Clock times the waits between polls (nil: the wall clock).
	Clock clock.Clock
}

// FirstPoll is the wait before the first poll of an operation or a job:
// short, so that a command returns as soon as fast work ends.
const FirstPoll = 20 * time.Millisecond

// New returns a client for c.
func New(c Config) (*Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if c.CACertificate != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(c.CACertificate)) {
			return nil, fmt.Errorf("client: the CA certificate is not valid PEM")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{Config: c, HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Minute}, PollInterval: DefaultPollInterval}, nil
}

// Error is an error answer from the server, in ARM's shape.
type Error struct {
	StatusCode int
	Code       string `json:"code"`
	Message    string `json:"message"`
	Target     string `json:"target,omitempty"`
	RequestID  string
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d", e.StatusCode)
	}
	return fmt.Sprintf("(%s) %s", e.Code, e.Message)
}

// AsError returns the *Error in err's chain, or nil.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// Response is a raw answer.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

// Do sends a request to path (absolute URL or path) with the api-version
// and decodes a JSON answer into out (if non-nil). Error answers become
// *Error.
func (c *Client) Do(ctx context.Context, method, path, apiVersion string, query url.Values, body, out any) (*Response, error) {
	u := path
	if !strings.HasPrefix(path, "http://") && !strings.HasPrefix(path, "https://") {
		u = strings.TrimSuffix(c.Endpoint, "/") + path
	}
	pu, err := url.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", path, err)
	}
	q := pu.Query()
	for k, vs := range query {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	if apiVersion != "" && q.Get("api-version") == "" {
		q.Set("api-version", apiVersion)
	}
	pu.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, pu.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, pu.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, pu.Path, err)
	}
	r := &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: data}
	if resp.StatusCode >= 400 {
		return r, decodeError(r)
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 && resp.StatusCode != http.StatusAccepted {
		if err := json.Unmarshal(data, out); err != nil {
			return r, fmt.Errorf("%s %s: decode answer: %w", method, pu.Path, err)
		}
	}
	return r, nil
}

func decodeError(r *Response) error {
	e := &Error{StatusCode: r.StatusCode, RequestID: r.Header.Get("x-ms-request-id")}
	var body struct {
		Error *Error `json:"error"`
	}
	if json.Unmarshal(r.Body, &body) == nil && body.Error != nil {
		e.Code, e.Message, e.Target = body.Error.Code, body.Error.Message, body.Error.Target
	} else {
		e.Message = strings.TrimSpace(string(r.Body))
	}
	return e
}

// doWait sends a request with no answer to decode and follows the
// long-running operation it starts to its end (see Wait), returning the
// final result body.
func (c *Client) doWait(ctx context.Context, method, path, apiVersion string, body any) ([]byte, error) {
	resp, err := c.Do(ctx, method, path, apiVersion, nil, body, nil)
	if err != nil {
		return nil, err
	}
	return c.Wait(ctx, resp, nil)
}

// OperationStatus is an operation-status answer.
type OperationStatus struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Status     string          `json:"status"`
	StartTime  string          `json:"startTime"`
	EndTime    string          `json:"endTime"`
	Error      *Error          `json:"error"`
	Properties json.RawMessage `json:"properties"`
}

// Progress is told about each poll of a long-running operation.
type Progress func(status OperationStatus)

// Wait follows a long-running operation started by resp to its end and
// returns the final result body (the Location URL's answer, or nil). It
// uses Azure-AsyncOperation when present, else Location, and polls as
// Poller does.
func (c *Client) Wait(ctx context.Context, resp *Response, progress Progress) ([]byte, error) {
	async, loc := resp.Header.Get("Azure-AsyncOperation"), resp.Header.Get("Location")
	if async == "" && loc == "" {
		return resp.Body, nil
	}
	p := c.Poller()
	if async != "" {
		for {
			var st OperationStatus
			r, err := c.Do(ctx, http.MethodGet, async, "", nil, nil, &st)
			if err != nil {
				return nil, err
			}
			if progress != nil {
				progress(st)
			}
			switch strings.ToLower(st.Status) {
			case "succeeded", "completed":
				if loc == "" {
					return nil, nil
				}
				fin, err := c.Do(ctx, http.MethodGet, loc, "", nil, nil, nil)
				if err != nil {
					return nil, err
				}
				return fin.Body, nil
			case "failed", "canceled", "cancelled":
				if st.Error != nil {
					st.Error.StatusCode = r.StatusCode
					return nil, st.Error
				}
				return nil, &Error{Code: "OperationFailed", Message: "the operation " + st.Status}
			}
			if err := p.Wait(ctx, r.Header); err != nil {
				return nil, err
			}
		}
	}
	for {
		r, err := c.Do(ctx, http.MethodGet, loc, "", nil, nil, nil)
		if err != nil {
			return nil, err
		}
		if r.StatusCode != http.StatusAccepted {
			return r.Body, nil
		}
		if l := r.Header.Get("Location"); l != "" {
			loc = l
		}
		if err := p.Wait(ctx, r.Header); err != nil {
			return nil, err
		}
	}
}

// Poller paces the polls of one operation or job: FirstPoll before the
// first, then each wait twice the last, capped by the client's
// PollInterval and by the Retry-After of the last answer (a Retry-After of
// 0 does not cap: it would make the poll a busy loop). Work that ends
// fast is thus seen to end soon after it does, and long work is polled at
// the cap.
type Poller struct {
	clk  clock.Clock
	max  time.Duration
	next time.Duration
}

// Poller returns a new Poller for one operation or job.
func (c *Client) Poller() *Poller {
	clk := c.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	max := c.PollInterval
	if max <= 0 {
		max = DefaultPollInterval
	}
	return &Poller{clk: clk, max: max, next: min(FirstPoll, max)}
}

// DefaultPollInterval is the PollInterval of New's clients.
const DefaultPollInterval = 2 * time.Second

// Wait waits before the next poll; h is the last answer's header (nil:
// none). It returns ctx's error if ctx ends first.
func (p *Poller) Wait(ctx context.Context, h http.Header) error {
	d := p.next
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s > 0 && time.Duration(s)*time.Second < d {
		d = time.Duration(s) * time.Second
	}
	p.next = min(2*p.next, p.max)
	t := p.clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}
