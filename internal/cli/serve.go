package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"coffer/internal/clock"
	"coffer/internal/server"
)

// ClockOffsetEnv names the environment variable that runs `coffer serve`
// as if the wall clock were that much later (a Go duration such as "5h30m",
// never negative). The crash tests set it to let hours pass across
// restarts, so that schedules, retention and garbage collection's safety
// margin come due; production servers never set it.
const ClockOffsetEnv = "COFFER_CLOCK_OFFSET"

// BackgroundNiceEnv names the environment variable that sets the default
// of --background-nice.
const BackgroundNiceEnv = "COFFER_BACKGROUND_NICE"

// backgroundNiceFlag registers --background-nice on fs and returns the
// function that checks its value and applies it (server.SetBackgroundNice):
// the CPU priority of the work a snapshot or a hydration does in the
// background, for the process.
func backgroundNiceFlag(fs *flag.FlagSet) (apply func() error) {
	v := fs.String("background-nice", os.Getenv(BackgroundNiceEnv), fmt.Sprintf(
		"CPU priority of snapshots' and hydrations' background work: a nice `value` from 0 (the disks' users' own) to %d (the lowest) (or $%s; default %d)",
		server.MaxBackgroundNice, BackgroundNiceEnv, server.DefaultBackgroundNice))
	return func() error {
		n, err := server.DefaultBackgroundNice, error(nil)
		if s := strings.TrimSpace(*v); s != "" {
			n, err = strconv.Atoi(s)
		}
		if err == nil {
			err = server.SetBackgroundNice(n)
		}
		if err != nil {
			return usagef("--background-nice %q: want a nice value from 0 (the disks' users' own priority) to %d (the lowest)", *v, server.MaxBackgroundNice)
		}
		return nil
	}
}

// clockFromEnv returns the server's clock: the wall clock, shifted by
// $COFFER_CLOCK_OFFSET when it is set.
func clockFromEnv() (clock.Clock, error) {
	v := os.Getenv(ClockOffsetEnv)
	if v == "" {
		return clock.Real{}, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return nil, usagef("%s=%q: want a duration that is not negative, such as 5h30m", ClockOffsetEnv, v)
	}
	return clock.Shifted{D: d}, nil
}

func serveCommand() *command {
	var (
		data, listen, nbdListen, regions, logLevel string
		useTLS, insecure, insecureNBD              bool
		maxTokenLife                               = lifetimeFlag(90 * 24 * time.Hour)
		minFreeMiB                                 int64
		publicEndpoint, blob, s3Endpoint, db       string
		nodeName, placement, masterKey             string
		s3PathStyle                                bool
		rpoGrace                                   = time.Hour
		nodeGrace                                  = server.DefaultNodeGrace
		applyNice                                  func() error
	)
	return &command{name: "serve", short: "Run the Coffer server", globals: noGlobals,
		flags: func(fs *flag.FlagSet) {
			def := os.Getenv("COFFER_DATA")
			if def == "" {
				def = server.DefaultDataDir
			}
			fs.StringVar(&data, "data", def, "data directory (or $COFFER_DATA)")
			fs.StringVar(&listen, "listen", server.DefaultListen, "HTTP(S) listen address")
			fs.StringVar(&nbdListen, "nbd-listen", server.DefaultNBDListen, "NBD listen address")
			fs.StringVar(&regions, "regions", server.DefaultRegion, "comma-separated regions this server serves")
			fs.BoolVar(&useTLS, "tls", false, "serve HTTPS with a certificate generated once into the data dir")
			fs.BoolVar(&insecure, "insecure-http", false, "allow plain HTTP on a non-loopback address")
			fs.BoolVar(&insecureNBD, "insecure-nbd", false, "serve NBD to clients that do not use TLS (under --tls, or on a non-loopback address)")
			fs.Var(&maxTokenLife, "max-api-token-lifetime", "longest lifetime of an API token, admin.json's included: a `duration` such as 90d or 12h")
			fs.StringVar(&db, "db", os.Getenv("COFFER_DB"), "where the metadata is kept: a SQLite file (default DATA/metadata.db), sqlite:///PATH, or postgres://USER@HOST:PORT/DATABASE?sslmode=… (or $COFFER_DB; keep the password in $PGPASSWORD or ~/.pgpass)")
			fs.StringVar(&blob, "blob", "", "where packs are stored: a directory (default DATA/chunks), file:///DIR, or s3://BUCKET[/PREFIX]")
			fs.StringVar(&s3Endpoint, "s3-endpoint", "", "S3 endpoint URL for an s3:// --blob (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, or AWS)")
			fs.BoolVar(&s3PathStyle, "s3-path-style", false, "path-style S3 addressing (most S3-compatible servers need it)")
			fs.StringVar(&nodeName, "node-name", os.Getenv("COFFER_NODE_NAME"), "this node's name among the nodes sharing --db (or $COFFER_NODE_NAME; default: the host name)")
			fs.StringVar(&placement, "placement", "least-used", "which node creates a new or restored disk when several nodes share --db: least-used (the live node whose volumes use the least space) or local (the node that took the request)")
			fs.DurationVar(&nodeGrace, "node-grace", server.DefaultNodeGrace, "when several nodes share --db: how long, past the node timeout, backups and operations that only a stopped node can run wait for it before another node fails them with NodeUnavailable")
			fs.StringVar(&masterKey, "master-key", os.Getenv("COFFER_MASTER_KEY"), "file of the key sealing the secrets the nodes share in --db (or $COFFER_MASTER_KEY; default DATA/master.key, created on the first node's first start: give every other node a copy, mode 0600)")
			fs.StringVar(&publicEndpoint, "public-endpoint", "", "URL clients reach the API at, behind a proxy or NAT (default: from --listen and --tls)")
			fs.StringVar(&logLevel, "log-level", "info", "log level: debug (includes the access log), info, warn, error")
			fs.DurationVar(&rpoGrace, "rpo-grace", time.Hour, "how long after a scheduled backup was due its recovery point may come before a missed-RPO alert fires (0: no such alerts)")
			fs.Int64Var(&minFreeMiB, "min-free-mib", server.DefaultMinFree>>20, "free space (MiB) kept in reserve on the data filesystem: below it, requests that store new data get 507 InsufficientStorage (0: no reserve)")
			applyNice = backgroundNiceFlag(fs)
		},
		run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return usagef("--log-level %q: want debug, info, warn or error", logLevel)
			}
			logger := slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: lvl}))
			var rs []string
			for _, r := range strings.Split(regions, ",") {
				if r = strings.TrimSpace(r); r != "" {
					rs = append(rs, r)
				}
			}
			clk, err := clockFromEnv()
			if err != nil {
				return err
			}
			if s, ok := clk.(clock.Shifted); ok {
				logger.Warn("the server's clock is shifted (COFFER_CLOCK_OFFSET); this is for tests only", "offset", s.D)
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if minFreeMiB < 0 {
				return usagef("--min-free-mib %d: want 0 or more", minFreeMiB)
			}
			if rpoGrace < 0 {
				return usagef("--rpo-grace %s: want 0 (no alerts) or more", rpoGrace)
			}
			if nodeGrace <= 0 {
				return usagef("--node-grace %s: want more than 0", nodeGrace)
			}
			if err := applyNice(); err != nil {
				return err
			}
			if rpoGrace == 0 {
				rpoGrace = -1 // no missed-RPO alerts
			}
			minFree := minFreeMiB << 20
			if minFree == 0 {
				minFree = -1 // no reserve
			}
			srv, err := server.Open(ctx, server.Config{DataDir: data, Listen: listen, NBDListen: nbdListen, Regions: rs,
				TLS: useTLS, InsecureHTTP: insecure, InsecureNBD: insecureNBD, MaxAPITokenLifetime: time.Duration(maxTokenLife),
				PublicEndpoint: publicEndpoint, Logger: logger, MinFree: minFree,
				DB: db, Blob: blob, S3Endpoint: s3Endpoint, S3PathStyle: s3PathStyle, Clock: clk, RPOGrace: rpoGrace, NodeName: nodeName, Placement: placement,
				NodeGrace: nodeGrace, MasterKey: masterKey})
			if err != nil {
				return err
			}
			defer srv.Close()
			err = srv.Serve(ctx, func(addr string) { fmt.Fprintln(e.Stdout, srv.DescribeStart(addr)) })
			if err == nil {
				logger.Info("stopped")
			}
			return err
		}}
}

// lifetimeFlag is a duration flag that also takes whole days ("90d").
type lifetimeFlag time.Duration

func (f *lifetimeFlag) String() string {
	d := time.Duration(*f)
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

func (f *lifetimeFlag) Set(s string) error {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 100*365 {
			return fmt.Errorf("%q: want a positive number of days, as in 90d, or a duration such as 12h", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			return fmt.Errorf("%q: want a positive duration such as 90d or 12h", s)
		}
	}
	*f = lifetimeFlag(d)
	return nil
}
