// Package server wires Coffer together and runs it: it opens the metadata
// store (SQLite or PostgreSQL, from --db), bootstraps the tenant on first start, builds the services and the
// HTTP route table, serves HTTP (optionally TLS), and shuts everything down
// gracefully. It is the only package that picks concrete implementations.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"coffer/internal/api"
	"coffer/internal/authorization"
	"coffer/internal/blockdev"
	"coffer/internal/capacity"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
	"coffer/internal/cluster"
	"coffer/internal/compute"
	"coffer/internal/dataprotection"
	"coffer/internal/identity"
	"coffer/internal/job"
	"coffer/internal/lowprio"
	"coffer/internal/nbd"
	"coffer/internal/operation"
	"coffer/internal/portal"
	"coffer/internal/rbac"
	"coffer/internal/store"
	"coffer/internal/store/location"
	"coffer/internal/tenant"
)

// Config is the server's configuration (the flags of `coffer serve`).
type Config struct {
	DataDir   string
	Listen    string // host:port for HTTP(S)
	NBDListen string // host:port for NBD
	Regions   []string
	TLS       bool
	// PublicEndpoint is the URL clients reach the API at
	// (scheme://host[:port]) when it differs from what Listen and TLS say:
	// behind a proxy or NAT. Every absolute URL the server hands out
	// (operation polls, SAS and NBD URLs, OpenID and cloud metadata) is
	// built from it, never from a request's Host header.
	PublicEndpoint string
	// InsecureHTTP allows plain HTTP on a non-loopback address.
	InsecureHTTP bool
	Logger       *slog.Logger
	Clock        clock.Clock

	// InsecureNBD serves NBD to clients that do not upgrade to TLS: under
	// --tls (which otherwise requires TLS on NBD too) and on a non-loopback
	// address without --tls (otherwise refused).
	InsecureNBD bool
	// MaxAPITokenLifetime caps API tokens, admin.json's included (zero:
	// identity.DefaultMaxAPITokenLifetime).
	MaxAPITokenLifetime time.Duration
	// MinFree is the free space (bytes) kept in reserve on the data
	// filesystem: below it, requests that store new data are refused with
	// 507 InsufficientStorage (0: DefaultMinFree; negative: no reserve).
	MinFree int64
	// HydrationRetry is how often a hydration stalled for lack of space
	// tries again (0: the block engine's default, 10 s).
	HydrationRetry time.Duration
	// Blob is where the chunk store keeps its packs: a directory (default
	// DATA/chunks), file:///DIR, or s3://BUCKET[/PREFIX]
	// (blobstore/location).
	Blob string
	// S3Endpoint and S3PathStyle configure an s3:// Blob; unset, the
	// standard AWS environment decides (AWS_ENDPOINT_URL_S3, …).
	S3Endpoint  string
	S3PathStyle bool
	// RPOGrace is how long after a backup was due its recovery point may
	// come before the recovery point objective counts as missed (0:
	// monitor.DefaultRPOGrace; negative: no such alerts).
	RPOGrace time.Duration
	// MonitorInterval is how often alerts are evaluated (0:
	// monitor.DefaultInterval).
	MonitorInterval time.Duration
	// DB is where the metadata lives: a SQLite file (default
	// DATA/metadata.db), sqlite:///PATH, or postgres://… (store/location):
	// the store, the chunk store's index and the job queue, all in it.
	DB string
	// NodeName names this server among the nodes sharing DB (default:
	// the host name); see internal/cluster.
	NodeName string
	// Placement says which node creates a new disk or a restored one
	// when several nodes share DB: "least-used" (the default) or "local"
	// (cluster.ParsePlacement).
	Placement string
	// NodeGrace is how long, past the node timeout, the queued work bound
	// to a node that stopped beating (backups and operations of the disks
	// it holds, restores placed on it) waits for it before another node
	// fails it with NodeUnavailable (0: DefaultNodeGrace).
	NodeGrace time.Duration
	// MasterKey is the file of the key that seals the secrets the nodes
	// share in DB (default DATA/master.key, created on the first start of
	// the first node; every other node needs a copy). See
	// cluster.MasterKey.
	MasterKey string
}

// Defaults of the external contract.
const (
	DefaultListen    = "127.0.0.1:7480"
	DefaultNBDListen = "127.0.0.1:10809"
	DefaultDataDir   = "coffer-data"
	DefaultRegion    = "local"
	DefaultMinFree   = 64 << 20
	DefaultNodeGrace = cluster.DefaultTaskGrace
)

// The nice values of the block engine's background work (snapshots'
// and hydrations' threads): lowprio's, for the process.
const (
	DefaultBackgroundNice = lowprio.DefaultNice
	MaxBackgroundNice     = lowprio.MaxNice
)

// SetBackgroundNice sets the nice value, 0 to MaxBackgroundNice, of the
// threads that run the block engine's snapshots and hydrations in this
// process (lowprio.SetNice); serve calls it before Open. A value out of
// range is refused and changes nothing.
func SetBackgroundNice(n int) error { return lowprio.SetNice(n) }

// AdminFile is the name of the admin credentials file in the data dir.
const AdminFile = "admin.json"

// MasterKeyFile is the name of the master key file in the data dir (the
// default of Config.MasterKey).
const MasterKeyFile = "master.key"

// Admin is the content of admin.json.
type Admin struct {
	Endpoint       string `json:"endpoint"`
	TenantID       string `json:"tenantId"`
	SubscriptionID string `json:"subscriptionId"`
	PrincipalID    string `json:"principalId"`
	ClientID       string `json:"clientId"`
	ClientSecret   string `json:"clientSecret"`
	Token          string `json:"token"`
	// CACertificate is the PEM of the server's CA when it serves TLS.
	CACertificate string `json:"caCertificate,omitempty"`
}

// tenantRecord is the bootstrap record.
type tenantRecord struct {
	TenantID       string    `json:"tenantId"`
	SubscriptionID string    `json:"subscriptionId"`
	AdminID        string    `json:"adminPrincipalId"`
	CreatedAt      time.Time `json:"createdAt"`
}

const kindTenant = "coffer.tenant"

// Server is a running (or ready to run) Coffer.
type Server struct {
	cfg    Config
	log    *slog.Logger
	meta   *location.Metadata // the store, chunk index and job queue backend
	store  store.Store
	space  *capacity.Monitor
	API    *api.Server
	Ops    *operation.Manager
	IDs    *identity.Service
	Authz  *authorization.Service
	Tenant *tenant.Service
	Admin  Admin

	// The byte side: chunk store, block engine, Microsoft.Compute.
	Chunks  *chunkstore.Store
	Engine  *blockdev.Engine
	Compute *compute.Service

	tlsConfig *tls.Config
	caPEM     []byte
	http      *http.Server
	handler   http.Handler

	nbd     *nbd.Server
	nbdAddr atomic.Value // string
	nbdDone chan struct{}

	// Portal is the web portal served at / alongside the API.
	Portal *portal.Portal

	masterKey *cluster.MasterKey // seals the secrets the nodes share
	member    *member            // this node among the nodes sharing the store
	dp        *dataProtection    // Microsoft.DataProtection runtime
	mon       *monitorRuntime    // alerts, notifications, job events

	nbdMetrics *nbd.Metrics
	repo       repoStats                              // the repository's figures, cached between scrapes
	restores   atomic.Pointer[dataprotection.Service] // for Compute's hydration observer
}

// Open prepares a server on cfg.DataDir: opens the store, bootstraps on
// first start and builds the route table. It does not listen yet.
func Open(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.NBDListen == "" {
		cfg.NBDListen = DefaultNBDListen
	}
	if len(cfg.Regions) == 0 {
		cfg.Regions = []string{DefaultRegion}
	}
	for i, r := range cfg.Regions {
		cfg.Regions[i] = tenant.CanonicalLocation(r)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := checkListen(cfg); err != nil {
		return nil, err
	}
	if cfg.PublicEndpoint != "" {
		ep, err := parsePublicEndpoint(cfg.PublicEndpoint)
		if err != nil {
			return nil, err
		}
		cfg.PublicEndpoint = ep
	} else if host, _, _ := net.SplitHostPort(cfg.Listen); host == "" || net.ParseIP(host).IsUnspecified() {
		cfg.Logger.Warn("listening on every address without --public-endpoint: the URLs the server hands out (operation polls, SAS and NBD URLs, OpenID) name 127.0.0.1; set --public-endpoint to the URL remote clients use",
			"listen", cfg.Listen)
	}
	if err := prepareDataDir(cfg.DataDir, cfg.Logger); err != nil {
		return nil, err
	}
	if cfg.MinFree == 0 {
		cfg.MinFree = DefaultMinFree
	}
	if cfg.MasterKey == "" {
		cfg.MasterKey = filepath.Join(cfg.DataDir, MasterKeyFile)
	}
	space := capacity.NewMonitor(cfg.Clock, cfg.MinFree, cfg.DataDir, filepath.Join(cfg.DataDir, "chunks"), filepath.Join(cfg.DataDir, "volumes"))
	meta, err := location.Open(ctx, cfg.DB, location.Options{DefaultPath: filepath.Join(cfg.DataDir, "metadata.db"), Space: space})
	if err != nil {
		return nil, fmt.Errorf("open the metadata store: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, meta: meta, store: meta.Store, space: space}
	if err := s.build(ctx); err != nil {
		s.closeStorage()
		meta.Close()
		return nil, err
	}
	return s, nil
}

// checkListen refuses to carry tokens in clear text off the machine: plain
// HTTP on a non-loopback address unless allowed, and NBD without TLS on a
// non-loopback address unless allowed. (Under --tls, NBD requires TLS
// unless InsecureNBD; see startNBD.)
func checkListen(cfg Config) error {
	loopback := func(flag, addr string) (bool, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return false, fmt.Errorf("%s %q: %w", flag, addr, err)
		}
		if host == "localhost" {
			return true, nil
		}
		ip := net.ParseIP(host)
		return ip != nil && ip.IsLoopback(), nil
	}
	lo, err := loopback("--listen", cfg.Listen)
	if err != nil {
		return err
	}
	if !lo && !cfg.TLS && !cfg.InsecureHTTP {
		return fmt.Errorf("refusing to serve plain HTTP on non-loopback address %s: tokens would travel in clear text; use --tls, or --insecure-http to do it anyway", cfg.Listen)
	}
	lo, err = loopback("--nbd-listen", cfg.NBDListen)
	if err != nil {
		return err
	}
	if !lo && !cfg.TLS && !cfg.InsecureNBD {
		return fmt.Errorf("refusing to serve NBD without TLS on non-loopback address %s: grant tokens and disk data would travel in clear text; use --tls, or --insecure-nbd to do it anyway", cfg.NBDListen)
	}
	return nil
}

// parsePublicEndpoint checks a --public-endpoint and returns it as
// scheme://host[:port].
func parsePublicEndpoint(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("--public-endpoint %q: want an absolute http:// or https:// URL with a host and no path, such as https://backup.example.com:7480", s)
	}
	return u.Scheme + "://" + u.Host, nil
}

func (s *Server) build(ctx context.Context) error {
	cfg := s.cfg
	if err := s.openMember(); err != nil {
		return err
	}
	mk, err := cluster.OpenMasterKey(ctx, s.store, cfg.MasterKey)
	if err != nil {
		return err
	}
	s.masterKey = mk
	signer, err := s.signer(ctx)
	if err != nil {
		return err
	}
	if cfg.TLS {
		host, _, _ := net.SplitHostPort(cfg.Listen)
		hosts := []string{host}
		if u, err := url.Parse(cfg.PublicEndpoint); err == nil && u.Hostname() != "" {
			hosts = append(hosts, u.Hostname())
		}
		s.tlsConfig, s.caPEM, err = loadOrCreateTLS(cfg.DataDir, cfg.Clock.Now(), hosts, func() ([]byte, error) {
			return cluster.Secret(ctx, s.store, s.masterKey, secretCA, func() ([]byte, error) { return generateCA(cfg.Clock.Now()) })
		})
		if err != nil {
			return err
		}
	}
	rec, err := s.tenantRecord(ctx)
	if err != nil {
		return err
	}
	s.IDs = &identity.Service{Store: s.store, Signer: signer, Clock: cfg.Clock, Issuer: "coffer",
		Audiences: s.audiences(), MaxAPITokenLifetime: cfg.MaxAPITokenLifetime}
	s.Tenant = &tenant.Service{Store: s.store, Clock: cfg.Clock, Regions: cfg.Regions}
	s.Authz = &authorization.Service{Store: s.store, Clock: cfg.Clock, Containers: s.Tenant, Identities: s.IDs}
	s.Tenant.Authz = s.Authz
	// One job queue runs everything asynchronous: DataProtection's jobs
	// and every long-running operation, on any node that shares the store.
	queue := job.NewQueue(s.store, cfg.Clock)
	queue.Backend = s.meta.Tasks // the tasks live where the metadata does
	s.Ops = &operation.Manager{Store: s.store, Clock: cfg.Clock, Logger: s.log, Queue: queue}
	if s.member.shared {
		s.Ops.Home = cluster.Home
	}
	if rec == nil {
		if rec, err = s.bootstrapOnce(ctx); err != nil {
			return err
		}
	}
	if rec != nil {
		s.IDs.TenantID, s.Tenant.TenantID = rec.TenantID, rec.TenantID
		if err := s.refreshAdminFile(); err != nil {
			return err
		}
		if err := s.renewAdminToken(ctx); err != nil {
			return err
		}
	}
	s.API = api.NewServer(s.IDs, s.Authz, cfg.Clock, s.log)
	s.API.Operations = s.Ops
	s.API.Endpoint = s.Endpoint()
	s.API.Space = s.space
	if s.meta.WriteMetrics != nil {
		s.API.AddMetrics(s.meta.WriteMetrics)
	}
	s.API.RegisterCore(api.Core{Tenant: s.Tenant, Authz: s.Authz, Identity: s.IDs,
		Ready: func(ctx context.Context) error { return s.store.View(ctx, func(store.Tx) error { return nil }) },
		Space: s.space,
		StalledHydrations: func() int {
			if s.Engine == nil {
				return 0
			}
			return s.Engine.StalledHydrations()
		}})
	if err := s.openStorage(ctx); err != nil {
		return err
	}
	s.API.RegisterCompute(api.Compute{Service: s.Compute, NBDAddress: s.nbdAddrFor, NBDTLS: cfg.TLS})
	if err := api.ScrubAccessResults(ctx, s.Ops, s.Compute); err != nil {
		return err
	}
	data := &api.ComputeData{Service: s.Compute, Clock: cfg.Clock, Logger: s.log}
	if s.member.shared {
		// A disk's data path is served by its home node (forward.go).
		fw := newForwarder(s, s.member.placement)
		s.API.Forwarder, data.Forwarder = fw, fw
		peers := &peerAudiences{registry: s.member.registry}
		s.IDs.PeerAudience = peers.has
	}
	s.handler = dataPlaneSplit{api: s.API, data: data}
	// Admin's operation kinds are registered before the workers start.
	s.API.RegisterAdmin(recordedMaintenance{&maintenance{chunks: s.Chunks, engine: s.Engine, snapshotNames: s.snapshotResourceIDs}, s})
	if err := s.openDataProtection(ctx); err != nil {
		return err
	}
	if err := s.openPortal(ctx); err != nil {
		return err
	}
	s.registerMetrics()
	if err := s.Ops.Recover(ctx); err != nil {
		return err
	}
	return nil
}

func (s *Server) tenantRecord(ctx context.Context) (*tenantRecord, error) {
	var rec *tenantRecord
	err := s.store.View(ctx, func(tx store.Tx) error {
		o, err := tx.Get(ctx, kindTenant, "/tenant")
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		rec = &tenantRecord{}
		return json.Unmarshal(o.Data, rec)
	})
	if err != nil {
		return nil, fmt.Errorf("read tenant: %w", err)
	}
	return rec, nil
}

// Endpoint is the URL clients use to reach the API (scheme://host:port):
// --public-endpoint when given, else derived from --listen and --tls (an
// unspecified listen address is named 127.0.0.1). It is the one source of
// every absolute URL the server hands out and of the audience its tokens
// are for.
func (s *Server) Endpoint() string {
	if s.cfg.PublicEndpoint != "" {
		return s.cfg.PublicEndpoint
	}
	scheme := "http"
	if s.cfg.TLS {
		scheme = "https"
	}
	host, port, _ := net.SplitHostPort(s.cfg.Listen)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// bootstrap creates the tenant, its first subscription and the admin
// principal (a tenant administrator with Owner on the subscription), and
// writes admin.json. Everything but the file is one transaction.
func (s *Server) bootstrap(ctx context.Context) error {
	now := s.cfg.Clock.Now().UTC()
	rec := tenantRecord{TenantID: identity.NewGUID(), SubscriptionID: identity.NewGUID(), CreatedAt: now}
	s.IDs.TenantID, s.Tenant.TenantID = rec.TenantID, rec.TenantID
	admin, secret, err := s.IDs.Create(ctx, identity.CreateOptions{Kind: identity.ServicePrincipal, DisplayName: "coffer-admin",
		TenantAdmin: true, WithSecret: true})
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	rec.AdminID = admin.ID
	err = s.store.Update(ctx, func(tx store.Tx) error {
		if _, err := s.Tenant.CreateSubscription(ctx, tx, rec.SubscriptionID, "Coffer subscription", admin.ID); err != nil {
			return err
		}
		if _, err := s.Authz.Assign(ctx, tx, admin.ID, "ServicePrincipal", rbac.RoleOwner, "/subscriptions/"+rec.SubscriptionID, admin.ID); err != nil {
			return err
		}
		b, _ := json.Marshal(rec)
		return tx.Put(ctx, &store.Object{Kind: kindTenant, Key: "/tenant", Data: b}, store.PutOptions{CreateOnly: true})
	})
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	tok, _, err := s.IDs.IssueAPIToken(ctx, admin.ID, 0, adminTokenDescription)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	s.Admin = Admin{TenantID: rec.TenantID, SubscriptionID: rec.SubscriptionID, PrincipalID: admin.ID,
		ClientID: admin.ClientID, ClientSecret: secret, Token: tok}
	return s.writeAdminFile()
}

func (s *Server) adminPath() string { return filepath.Join(s.cfg.DataDir, AdminFile) }

func (s *Server) writeAdminFile() error {
	s.Admin.Endpoint = s.Endpoint()
	s.Admin.CACertificate = string(s.caPEM)
	b, err := json.MarshalIndent(s.Admin, "", "  ")
	if err != nil {
		return fmt.Errorf("encode admin.json: %w", err)
	}
	return identity.WriteFileAtomic(s.adminPath(), append(b, '\n'), 0o600)
}

// refreshAdminFile keeps admin.json's endpoint and CA in step with the
// current flags on restart.
func (s *Server) refreshAdminFile() error {
	b, err := os.ReadFile(s.adminPath())
	if errors.Is(err, os.ErrNotExist) {
		s.log.Warn("admin.json is missing; the admin credentials were shown only at first start", "path", s.adminPath())
		return nil
	}
	if err != nil {
		return fmt.Errorf("read admin.json: %w", err)
	}
	if err := json.Unmarshal(b, &s.Admin); err != nil {
		return fmt.Errorf("read admin.json: %w", err)
	}
	if s.Admin.Endpoint == s.Endpoint() && s.Admin.CACertificate == string(s.caPEM) {
		return nil
	}
	return s.writeAdminFile()
}

// AdminPath returns where admin.json is.
func (s *Server) AdminPath() string { return s.adminPath() }

// Handler is the HTTP handler (for in-process tests).
func (s *Server) Handler() http.Handler { return s.handler }

// dataPlaneSplit sends the data plane of access grants (api.DataPrefix) to
// its own handler and everything else to the ARM API.
type dataPlaneSplit struct {
	api  http.Handler
	data http.Handler
}

func (d dataPlaneSplit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, api.DataPrefix) {
		d.data.ServeHTTP(w, r)
		return
	}
	d.api.ServeHTTP(w, r)
}

// TLSConfig is the server's TLS configuration (nil without --tls).
func (s *Server) TLSConfig() *tls.Config { return s.tlsConfig }

// CAPEM is the CA certificate clients must trust (nil without --tls).
func (s *Server) CAPEM() []byte { return s.caPEM }

// Serve listens on cfg.Listen until ctx is cancelled, then shuts down
// gracefully. ready, if non-nil, is called once the listener is open.
func (s *Server) Serve(ctx context.Context, ready func(addr string)) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	return s.ServeListener(ctx, ln, ready)
}

// ServeListener serves on ln until ctx is cancelled.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener, ready func(addr string)) error {
	if err := s.startNBD(context.WithoutCancel(ctx)); err != nil {
		ln.Close()
		return err
	}
	s.http = &http.Server{Handler: s.handler, ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	if s.tlsConfig != nil {
		ln = tls.NewListener(ln, s.tlsConfig)
	}
	ln = lenientListener{ln}
	actx, stopAdmin := context.WithCancel(ctx)
	adminDone := make(chan struct{})
	go func() { defer close(adminDone); s.keepAdminToken(actx) }()
	defer func() { stopAdmin(); <-adminDone }()
	beats, err := s.register(actx, ln.Addr().String())
	if err != nil {
		ln.Close()
		s.stopNBD(context.WithoutCancel(ctx))
		return err
	}
	defer func() { stopAdmin(); beats() }()
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		s.stopNBD(context.WithoutCancel(ctx))
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err = s.http.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	s.stopNBD(sctx)
	return err
}

// Close stops background work and closes the stores.
func (s *Server) Close() error {
	s.closeMonitor()
	s.closeDataProtection()
	serr := s.closeStorage()
	return errors.Join(serr, s.meta.Close())
}

// Store returns the metadata store (tests).
func (s *Server) Store() store.Store { return s.store }

// SharedSecret returns the secret the nodes share under name
// ("token-signing-key", "grant-key", "tls-ca"), unsealed (tests).
func (s *Server) SharedSecret(ctx context.Context, name string) ([]byte, error) {
	return cluster.Secret(ctx, s.store, s.masterKey, name, func() ([]byte, error) {
		return nil, fmt.Errorf("no shared secret %s", name)
	})
}

// Listen is the configured listen address.
func (s *Server) Listen() string { return s.cfg.Listen }

// endpointAt is Endpoint with --listen replaced by addr, the address the
// listener got (a port chosen by the system for :0).
func (s *Server) endpointAt(addr string) string {
	return strings.Replace(s.Endpoint(), s.cfg.Listen, addr, 1)
}

// DescribeStart is the one-line startup message.
func (s *Server) DescribeStart(addr string) string {
	ep := s.endpointAt(addr)
	msg := fmt.Sprintf("Coffer is serving the API at %s and the portal at %s/ (admin credentials: %s)",
		ep, ep, s.adminPath())
	if a := s.NBDAddr(); a != "" {
		msg += fmt.Sprintf("; NBD on %s", a)
		if s.nbd != nil && s.nbd.RequireTLS {
			msg += " (TLS required)"
		}
	}
	return msg
}
