package cli

import (
	"context"
	"flag"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"coffer/internal/bench"
)

// benchRestoreCommand is `coffer bench restore`: the full-restore figures
// of `coffer bench`, measured again in rounds on a run kept with --keep.
func benchRestoreCommand() *command {
	var (
		from, cpuprofile, blockprofile string
		jsonOut, quiet, noFloors       bool
		rounds, workers                int
		settle                         time.Duration
	)
	return &command{name: "restore",
		short: "Benchmark full restores again, in rounds, on the repositories of a run kept by coffer bench --keep: against their I/O floor, qemu-img and 4 at once",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&from, "from", "", "`DIR`: the working directory of a run of coffer bench --keep (required)")
			fs.IntVar(&rounds, "rounds", 3, "rounds of restores")
			fs.BoolVar(&jsonOut, "json", false, "print every figure as one JSON object instead of the table")
			fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
			fs.DurationVar(&settle, "settle", 0, "pause this long (5s, 1m) after the sync before each timed run, so that the writes of the previous one are off the disk")
			fs.IntVar(&workers, "workers", 0, "parallelism of the block engine (default: all cores)")
			fs.BoolVar(&noFloors, "no-floors", false, "leave out the I/O floors and qemu-img: each round is the one restore and the restores at once")
			fs.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the run to `FILE` (diagnostics)")
			fs.StringVar(&blockprofile, "blockprofile", "", "write a profile of where goroutines waited (locks, channels) to `FILE` (diagnostics)")
		},
		run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
			if fs.NArg() > 0 {
				return usagef("unexpected argument %q", fs.Arg(0))
			}
			if from == "" {
				return usagef("--from DIR is required: the working directory of a `coffer bench --keep` run")
			}
			if rounds < 1 {
				return usagef("--rounds must be at least 1")
			}
			if settle < 0 {
				return usagef("--settle must not be negative")
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			stopProfile, err := startCPUProfile(cpuprofile, "bench restore")
			if err != nil {
				return err
			}
			defer stopProfile()
			stopBlock, err := startBlockProfile(blockprofile, "bench restore")
			if err != nil {
				return err
			}
			defer stopBlock()
			opts := bench.RestoreOptions{Dir: from, Rounds: rounds, Workers: workers, Settle: settle, NoFloors: noFloors}
			if !quiet {
				opts.Progress = e.Stderr
			}
			res, runErr := bench.RunRestores(ctx, opts)
			if runErr != nil && len(res.Rounds) == 0 {
				return runErr
			}
			if err := printBench(e, jsonOut, res, func(w io.Writer) error { return bench.WriteRestoreTable(w, res) }); err != nil {
				return err
			}
			return runErr
		},
	}
}
