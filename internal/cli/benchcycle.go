package cli

import (
	"context"
	"flag"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"coffer/internal/bench"
)

// benchBlobCommand is `coffer bench blob`: full snapshot, 1% snapshot and
// restore on the local directory and on another blob store (S3), in one
// run, as ratios.
func benchBlobCommand() *command {
	var c cycleFlags
	var blob, s3Endpoint string
	var s3PathStyle bool
	var serverPID int
	return &command{name: "blob",
		short: "Benchmark full snapshot, 1% snapshot and restore on a local directory and on --blob s3://…, interleaved, as ratios",
		flags: func(fs *flag.FlagSet) {
			c.register(fs, "1GiB")
			fs.StringVar(&c.dataArg, "data", "", "how much of the image holds data (default: half)")
			fs.StringVar(&blob, "blob", "", "the blob store to compare with the local directory: s3://BUCKET[/PREFIX] (each run works under a new prefix below it)")
			fs.StringVar(&s3Endpoint, "s3-endpoint", "", "S3 endpoint URL (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, or AWS)")
			fs.BoolVar(&s3PathStyle, "s3-path-style", false, "path-style S3 addressing (most S3-compatible servers need it)")
			fs.IntVar(&serverPID, "server-pid", 0, "process ID of the S3 server when it runs on this machine: its CPU time is reported with each step")
		},
		run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
			if blob == "" {
				return usagef("--blob s3://BUCKET[/PREFIX] is required")
			}
			opts, err := c.options(fs)
			if err != nil {
				return err
			}
			opts.Blob, opts.S3Endpoint, opts.S3PathStyle, opts.ServerPID = blob, s3Endpoint, s3PathStyle, serverPID
			return c.run(ctx, e, fs, "bench blob", opts, bench.RunBlob)
		},
	}
}

// benchSweepCommand is `coffer bench sweep`: the cost of a backup as the
// disk grows, with the same share of data.
func benchSweepCommand() *command {
	var c cycleFlags
	var sizes string
	var share float64
	return &command{name: "sweep",
		short: "Benchmark a backup's seconds and peak memory per GiB on disks of several sizes with the same share of data",
		flags: func(fs *flag.FlagSet) {
			c.register(fs, "")
			fs.StringVar(&sizes, "sizes", "1GiB,4GiB,16GiB,64GiB", "comma-separated disk sizes")
			fs.Float64Var(&share, "data-share", 1.0/16, "share of each disk that holds data (0 < share ≤ 1)")
		},
		run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
			opts, err := c.options(fs)
			if err != nil {
				return err
			}
			if share <= 0 || share > 1 {
				return usagef("--data-share must be above 0 and at most 1")
			}
			opts.DataShare = share
			for _, s := range strings.Split(sizes, ",") {
				n, err := bench.ParseSize(strings.TrimSpace(s))
				if err != nil {
					return usagef("--sizes: %v", err)
				}
				if n < bench.MinSize {
					return usagef("--sizes: each at least %d MiB", bench.MinSize>>20)
				}
				opts.Sizes = append(opts.Sizes, n)
			}
			return c.run(ctx, e, fs, "bench sweep", opts, bench.RunSweep)
		},
	}
}

// cycleFlags are the flags bench blob and bench sweep share.
type cycleFlags struct {
	sizeArg, dataArg, dir string
	jsonOut, keep, quiet  bool
	seed                  uint64
	workers, rounds       int
}

func (c *cycleFlags) register(fs *flag.FlagSet, size string) {
	if size != "" {
		fs.StringVar(&c.sizeArg, "size", size, "size of the generated disk image")
	}
	fs.StringVar(&c.dir, "dir", "", "directory to work in; a temporary directory is made inside it (default $TMPDIR, else the current directory)")
	fs.BoolVar(&c.jsonOut, "json", false, "print every figure as one JSON object instead of the table")
	fs.BoolVar(&c.keep, "keep", false, "keep the working directory")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress lines on stderr")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the image and of every random choice")
	fs.IntVar(&c.workers, "workers", 0, "parallelism of the block engine (default: all cores)")
	fs.IntVar(&c.rounds, "rounds", 3, "runs of each cycle")
}

func (c *cycleFlags) options(fs *flag.FlagSet) (bench.CycleOptions, error) {
	var opts bench.CycleOptions
	if fs.NArg() > 0 {
		return opts, usagef("unexpected argument %q", fs.Arg(0))
	}
	if c.rounds < 1 {
		return opts, usagef("--rounds must be at least 1")
	}
	var err error
	if c.sizeArg != "" {
		if opts.Size, err = bench.ParseSize(c.sizeArg); err != nil {
			return opts, usagef("--size: %v", err)
		}
		if opts.Size < bench.MinSize {
			return opts, usagef("--size must be at least %d MiB", bench.MinSize>>20)
		}
	}
	if c.dataArg != "" {
		if opts.Data, err = bench.ParseSize(c.dataArg); err != nil {
			return opts, usagef("--data: %v", err)
		}
		if opts.Data < 1<<20 || opts.Data > opts.Size {
			return opts, usagef("--data must be at least 1 MiB and at most --size")
		}
	}
	opts.Seed, opts.Workers, opts.Rounds = c.seed, c.workers, c.rounds
	return opts, nil
}

func (c *cycleFlags) run(ctx context.Context, e *Env, fs *flag.FlagSet, name string, opts bench.CycleOptions,
	fn func(context.Context, bench.CycleOptions) (bench.CycleResult, error)) error {
	asJSON := c.jsonOut
	fs.Visit(func(f *flag.Flag) {
		if (f.Name == "output" || f.Name == "o") && f.Value.String() == outJSON {
			asJSON = true
		}
	})
	work, done, err := benchWorkDir(e, c.dir, name, c.keep)
	if err != nil {
		return err
	}
	opts.Dir = work
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer done()
	if !c.quiet {
		opts.Progress = e.Stderr
	}
	res, runErr := fn(ctx, opts)
	if runErr != nil && len(res.Runs) == 0 {
		return runErr
	}
	if err := printBench(e, asJSON, res, func(w io.Writer) error { return bench.WriteCycleTable(w, res) }); err != nil {
		return err
	}
	return runErr
}
