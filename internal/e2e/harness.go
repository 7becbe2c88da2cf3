package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"coffer/internal/client"
	"coffer/internal/clock"
	"coffer/internal/server"
)

// Env is a running server under test.
type Env struct {
	T        testing.TB
	Server   *server.Server
	Endpoint string // the server's public endpoint
	Listen   string // the URL it listens at (http[s]://127.0.0.1:port)
	Admin    server.Admin
	DataDir  string
	HTTP     *http.Client
	stop     func()
}

// Options for Start.
type Options struct {
	DataDir string // reuse a data dir (restart tests); empty: a temp dir
	TLS     bool
	Regions []string
	// InsecureNBD serves NBD without requiring TLS on a TLS server
	// (serve --insecure-nbd).
	InsecureNBD bool
	// MinFree is server.Config.MinFree (the free-space reserve).
	MinFree int64
	// HydrationRetry is server.Config.HydrationRetry.
	HydrationRetry time.Duration
	// Log, if set, receives the server's log at debug level (instead of
	// stderr).
	Log io.Writer
	// DB is serve --db: where the metadata is kept (empty: the data dir's
	// SQLite file; postgres://… for PostgreSQL, see store/postgres/pgtest).
	DB string
	// Blob, S3Endpoint and S3PathStyle are serve --blob, --s3-endpoint and
	// --s3-path-style.
	Blob, S3Endpoint string
	S3PathStyle      bool
	// PublicEndpoint is serve --public-endpoint: Endpoint names it, while
	// the server listens on Listen.
	PublicEndpoint string
	// Clock is the server's clock (nil: the wall clock). A test that
	// advances a clock.Fake makes scheduled backups fire without waiting.
	Clock clock.Clock
	// NodeName is serve --node-name: several servers started on one DB
	// (PostgreSQL) and one Blob are the nodes of one installation.
	NodeName string
	// Placement is serve --placement (least-used or local).
	Placement string
	// MasterKey is serve --master-key (empty: DATA/master.key). A node
	// joining another's DB needs the first node's file.
	MasterKey string
}

// Start runs a server on 127.0.0.1:0 until the test ends (or Stop).
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	level := slog.LevelWarn
	if os.Getenv("COFFER_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	var logTo io.Writer = os.Stderr
	if o.Log != nil {
		logTo, level = o.Log, slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Open(ctx, server.Config{DataDir: o.DataDir, Listen: ln.Addr().String(), NBDListen: "127.0.0.1:0", TLS: o.TLS, Regions: o.Regions, Logger: logger,
		InsecureNBD: o.InsecureNBD, MinFree: o.MinFree, HydrationRetry: o.HydrationRetry, PublicEndpoint: o.PublicEndpoint,
		DB: o.DB, Blob: o.Blob, S3Endpoint: o.S3Endpoint, S3PathStyle: o.S3PathStyle, Clock: o.Clock,
		NodeName: o.NodeName, Placement: o.Placement, MasterKey: o.MasterKey})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(ctx, ln, nil) }()
	scheme := "http"
	if o.TLS {
		scheme = "https"
	}
	e := &Env{T: t, Server: srv, Endpoint: srv.Endpoint(), Listen: scheme + "://" + ln.Addr().String(), Admin: srv.Admin, DataDir: o.DataDir}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.TLS {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(srv.CAPEM())
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	e.HTTP = &http.Client{Transport: tr, Timeout: time.Minute}
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	t.Cleanup(e.stop)
	return e
}

// UseCLI points the coffer CLI, run in process (cli.Main), at this server
// as the admin for the rest of the test: through the environment, with no
// profile and no data dir.
func (e *Env) UseCLI(t testing.TB) {
	t.Setenv("COFFER_CONFIG", filepath.Join(t.TempDir(), "profile.json"))
	t.Setenv("COFFER_DATA", filepath.Join(t.TempDir(), "none"))
	t.Setenv("COFFER_ENDPOINT", e.Endpoint)
	t.Setenv("COFFER_TOKEN", e.Admin.Token)
	t.Setenv("COFFER_SUBSCRIPTION", e.Admin.SubscriptionID)
}

// Stop stops the server (idempotent).
func (e *Env) Stop() { e.stop() }

// Client returns an API client authenticated with token (the admin's when
// empty).
func (e *Env) Client(token string) *client.Client {
	if token == "" {
		token = e.Admin.Token
	}
	c, err := client.New(client.Config{Endpoint: e.Endpoint, Token: token, Subscription: e.Admin.SubscriptionID, CACertificate: e.Admin.CACertificate})
	if err != nil {
		e.T.Fatal(err)
	}
	c.PollInterval = 50 * time.Millisecond
	return c
}

// Cloud is the azcore cloud configuration pointing at the server.
func (e *Env) Cloud() cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: e.Endpoint + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: e.Endpoint, Audience: e.Endpoint},
		},
	}
}

// Credential returns an azidentity client-secret credential that gets its
// tokens from the server's OAuth2 endpoint (TLS servers only, as the
// identity SDK requires https).
func (e *Env) Credential(clientID, secret string) azcore.TokenCredential {
	cred, err := azidentity.NewClientSecretCredential(e.Admin.TenantID, clientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Cloud: e.Cloud(), Transport: e.HTTP},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		e.T.Fatal(err)
	}
	return cred
}

// ARMOptions are client options for the armXXX SDK clients.
func (e *Env) ARMOptions() *arm.ClientOptions {
	return &arm.ClientOptions{
		ClientOptions:         policy.ClientOptions{Cloud: e.Cloud(), Transport: e.HTTP, Retry: policy.RetryOptions{MaxRetries: -1}},
		DisableRPRegistration: true,
	}
}
