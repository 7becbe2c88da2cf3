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

// benchCommand is `coffer bench`: the whole-system benchmark. Unlike the
// other client commands it runs the block engine in-process on a local
// directory; it does not talk to a server.
func benchCommand() *command {
	var (
		sizeArg, dir, cpuprofile                  string
		jsonOut, noPeers, keep, dropCaches, quiet bool
		seed                                      uint64
		workers                                   int
		settle                                    time.Duration
	)
	return &command{name: "bench",
		short: "Benchmark backup, restore and instant restore of a generated disk against restic, borg and qemu-img",
		sub:   []*command{benchNBDCommand()},
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&sizeArg, "size", "4GiB", "size of the generated disk image (512MiB, 4GiB, …)")
			fs.StringVar(&dir, "dir", "", "directory to work in; a temporary directory is made inside it (default $TMPDIR, else the current directory)")
			fs.BoolVar(&jsonOut, "json", false, "print every figure as one JSON object instead of the table")
			fs.BoolVar(&noPeers, "no-peers", false, "do not run restic and borg (qemu-img still runs when on PATH)")
			fs.BoolVar(&keep, "keep", false, "keep the working directory (image, repositories, restored copies)")
			fs.BoolVar(&dropCaches, "drop-caches", false, "drop the page cache before each timed run (root); default: everything warm")
			fs.DurationVar(&settle, "settle", 0, "after the sync before each timed run, pause this long (5s, 1m): a quiet disk, and idle cached memory reclaimed as it would be between a backup and a later restore; default: no pause")
			fs.Uint64Var(&seed, "seed", 1, "seed of the image and of every random choice")
			fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
			fs.IntVar(&workers, "workers", 0, "parallelism of the block engine (default: all cores)")
			fs.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the run to `FILE` (diagnostics)")
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
			if settle < 0 {
				return usagef("--settle must not be negative")
			}
			asJSON := jsonOut
			fs.Visit(func(f *flag.Flag) { // an explicit -o json also means JSON
				if (f.Name == "output" || f.Name == "o") && f.Value.String() == "json" {
					asJSON = true
				}
			})
			work, done, err := benchWorkDir(e, dir, "bench", keep)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			defer done()
			stopProfile, err := startCPUProfile(cpuprofile, "bench")
			if err != nil {
				return err
			}
			defer stopProfile()
			opts := bench.Options{Size: size, Dir: work, Seed: seed, Peers: !noPeers, DropCaches: dropCaches,
				Settle: settle, Keep: keep, Workers: workers} // Clock: bench defaults to the real clock
			if !quiet {
				opts.Progress = e.Stderr
			}
			res, runErr := bench.Run(ctx, opts)
			if runErr != nil && res.Version == 0 {
				return runErr
			}
			if err := printBench(e, asJSON, res, func(w io.Writer) error { return bench.WriteTable(w, res) }); err != nil {
				return err
			}
			return runErr
		},
	}
}
