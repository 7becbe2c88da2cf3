package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"coffer/internal/bench"
)

// benchNBDCommand is `coffer bench nbd`: the NBD data path against nbdkit.
func benchNBDCommand() *command {
	var (
		sizeArg, dir, only, conns           string
		cpuprofile, mutexprofile, blockprof string
		jsonOut, keep, quiet, noCopy, noLd  bool
		seed                                uint64
		workers, repeat                     int
		runtimeArg, ramp                    time.Duration
		applyNice                           func() error
	)
	return &command{name: "nbd",
		short: "Benchmark Coffer's NBD server against nbdkit file with fio and nbdcopy, and I/O during a snapshot and hydration",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&sizeArg, "size", "4GiB", "size of the generated disk image")
			fs.StringVar(&dir, "dir", "", "directory to work in; a temporary directory is made inside it (default $TMPDIR, else the current directory)")
			fs.BoolVar(&jsonOut, "json", false, "print every figure as one JSON object instead of the tables")
			fs.BoolVar(&keep, "keep", false, "keep the working directory (image, disks, fio reports)")
			fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
			fs.Uint64Var(&seed, "seed", 1, "seed of the image and of fio's offsets")
			fs.IntVar(&workers, "workers", 0, "parallelism of the block engine (default: all cores)")
			fs.IntVar(&repeat, "repeat", 3, "runs of each figure per server")
			fs.DurationVar(&runtimeArg, "runtime", 5*time.Second, "measured time of each fio run, and the window of the runs under load: the first RUNTIME of 4 KiB random I/O from the start of a full snapshot, and from an instant restore, against the same fio job on the same disk without them (before the snapshot; once hydrated)")
			fs.DurationVar(&ramp, "ramp", time.Second, "warm-up before each fio run's measurement")
			fs.StringVar(&only, "workloads", "", "comma-separated matrix rows to run (default all: "+workloadNames()+")")
			fs.StringVar(&conns, "connections", "1,4", "comma-separated connection counts of the matrix")
			fs.BoolVar(&noCopy, "no-copy", false, "skip the timed nbdcopy runs")
			fs.BoolVar(&noLd, "no-load", false, "skip the runs under load (during a snapshot and during hydration)")
			fs.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the run to `FILE` (diagnostics)")
			fs.StringVar(&mutexprofile, "mutexprofile", "", "write a mutex contention profile of the run to `FILE`")
			fs.StringVar(&blockprof, "blockprofile", "", "write a blocking profile of the run to `FILE`")
			applyNice = backgroundNiceFlag(fs)
		},
		run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
			if fs.NArg() > 0 {
				return usagef("unexpected argument %q", fs.Arg(0))
			}
			size, err := bench.ParseSize(sizeArg)
			if err != nil {
				return usagef("--size: %v", err)
			}
			if size < bench.MinSize {
				return usagef("--size must be at least %d MiB", bench.MinSize>>20)
			}
			if repeat < 1 || runtimeArg <= 0 || ramp < 0 {
				return usagef("--repeat and --runtime must be positive, --ramp not negative")
			}
			if err := applyNice(); err != nil {
				return err
			}
			opts := bench.NBDOptions{Size: size, Seed: seed, Runtime: runtimeArg, Ramp: ramp, Repeat: repeat, Workers: workers,
				NoCopy: noCopy, NoLoad: noLd}
			if ramp == 0 {
				opts.Ramp = -1 // no ramp
			}
			if only != "" {
				opts.Workloads = strings.Split(only, ",")
			}
			for _, c := range strings.Split(conns, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(c))
				if err != nil || n < 1 {
					return usagef("--connections: %q is not a positive number", c)
				}
				opts.Conns = append(opts.Conns, n)
			}
			asJSON := jsonOut
			fs.Visit(func(f *flag.Flag) {
				if (f.Name == "output" || f.Name == "o") && f.Value.String() == "json" {
					asJSON = true
				}
			})
			work, done, err := benchWorkDir(e, dir, "bench nbd", keep)
			if err != nil {
				return err
			}
			opts.Dir = work
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			defer done()
			stopProfile, err := startCPUProfile(cpuprofile, "bench nbd")
			if err != nil {
				return err
			}
			defer stopProfile()
			if mutexprofile != "" {
				runtime.SetMutexProfileFraction(5)
				defer writeProfile(e, "mutex", mutexprofile)
			}
			if blockprof != "" {
				runtime.SetBlockProfileRate(int(10 * time.Microsecond))
				defer writeProfile(e, "block", blockprof)
			}
			if !quiet {
				opts.Progress = e.Stderr
			}
			res, runErr := bench.RunNBD(ctx, opts)
			if runErr != nil && res.Version == 0 {
				return runErr
			}
			if err := printBench(e, asJSON, res, func(w io.Writer) error { return bench.WriteNBDTable(w, res) }); err != nil {
				return err
			}
			return runErr
		},
	}
}

func workloadNames() string {
	var s []string
	for _, w := range bench.NBDWorkloads {
		s = append(s, w.Name)
	}
	return strings.Join(s, ", ")
}

// writeProfile writes the named runtime profile to path, reporting
// failures on stderr (diagnostics only).
func writeProfile(e *Env, name, path string) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup(name).WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(e.Stderr, "bench nbd: %s profile: %v\n", name, err)
	}
}
