package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
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
		useTLS, insecure                           bool
	)
	return &command{name: "serve", short: "Run the Coffer server",
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
			fs.StringVar(&logLevel, "log-level", "info", "log level: debug (includes the access log), info, warn, error")
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
			srv, err := server.Open(ctx, server.Config{DataDir: data, Listen: listen, NBDListen: nbdListen, Regions: rs,
				TLS: useTLS, InsecureHTTP: insecure, Logger: logger, Clock: clk})
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
