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
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config says where and how to reach the server.
type Config struct {
	Endpoint     string `json:"endpoint"`
	Token        string `json:"token"`
	Subscription string `json:"subscriptionId"`
	TenantID     string `json:"tenantId,omitempty"`
	// CACertificate is the PEM of a CA to trust for https endpoints.
	CACertificate string `json:"caCertificate,omitempty"`
	// Source says where the configuration came from (for messages).
	Source string `json:"-"`
}

// ErrNoConfig is returned by LoadConfig when nothing says where the server is.
var ErrNoConfig = errors.New("no Coffer endpoint configured: run `coffer login`, set COFFER_ENDPOINT and COFFER_TOKEN, or run from the directory holding coffer-data")

// ProfilePath is where `coffer login` writes its profile.
func ProfilePath() string {
	if p := os.Getenv("COFFER_CONFIG"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "."
	}
	return filepath.Join(dir, "coffer", "profile.json")
}

// LoadConfig finds the configuration (see the package doc).
func LoadConfig() (Config, error) {
	var c Config
	readJSON := func(path, source string) bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		var f Config
		if json.Unmarshal(b, &f) != nil || f.Endpoint == "" {
			return false
		}
		c, c.Source = f, source
		return true
	}
	if !readJSON(ProfilePath(), ProfilePath()) {
		data := os.Getenv("COFFER_DATA")
		if data == "" {
			data = "coffer-data"
		}
		readJSON(filepath.Join(data, "admin.json"), filepath.Join(data, "admin.json"))
	}
	if v := os.Getenv("COFFER_ENDPOINT"); v != "" {
		c.Endpoint, c.Source = v, "environment"
	}
	if v := os.Getenv("COFFER_TOKEN"); v != "" {
		c.Token = v
	}
	if v := os.Getenv("COFFER_SUBSCRIPTION"); v != "" {
		c.Subscription = v
	}
	if c.Endpoint == "" {
		return c, ErrNoConfig
	}
	return c, nil
}

// SaveProfile writes c as the login profile (mode 0600).
func SaveProfile(c Config) (string, error) {
	p := ProfilePath()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return p, fmt.Errorf("save profile: %w", err)
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	if err := os.WriteFile(p, append(b, '\n'), 0o600); err != nil {
		return p, fmt.Errorf("save profile: %w", err)
	}
	return p, nil
}

// Client calls the API.
type Client struct {
	Config
	HTTP *http.Client
	// PollInterval caps the wait between LRO polls (the server's
	// Retry-After is honoured up to it).
	PollInterval time.Duration
}

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
	return &Client{Config: c, HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Minute}, PollInterval: 2 * time.Second}, nil
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
// uses Azure-AsyncOperation when present, else Location.
func (c *Client) Wait(ctx context.Context, resp *Response, progress Progress) ([]byte, error) {
	async, loc := resp.Header.Get("Azure-AsyncOperation"), resp.Header.Get("Location")
	if async == "" && loc == "" {
		return resp.Body, nil
	}
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
			if err := c.sleep(ctx, r.Header); err != nil {
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
		if err := c.sleep(ctx, r.Header); err != nil {
			return nil, err
		}
	}
}

func (c *Client) sleep(ctx context.Context, h http.Header) error {
	d := c.PollInterval
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && time.Duration(s)*time.Second < d {
		d = time.Duration(s) * time.Second
	}
	if d <= 0 {
		d = 100 * time.Millisecond
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
