package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
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
		sizeArg, dataArg, dir, cpuprofile         string
		blockprofile, traceFile                   string
		jsonOut, noPeers, keep, dropCaches, quiet bool
		backupOnly                                bool
		seed                                      uint64
		workers, restoreRounds                    int
		settle                                    time.Duration
		applyNice                                 func() error
	)
	return &command{name: "bench", globals: outputOnly,
		short: "Benchmark backup, restore and instant restore of a generated disk against restic, borg and qemu-img",
		sub:   []*command{benchNBDCommand(), benchBlobCommand(), benchSweepCommand(), benchRestoreCommand()},
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&sizeArg, "size", "4GiB", "size of the generated disk image (512MiB, 4GiB, …)")
			fs.StringVar(&dataArg, "data", "", "how much of the image holds data, the rest being holes (8GiB, …; default: half)")
			fs.StringVar(&dir, "dir", "", "directory to work in; a temporary directory is made inside it (default $TMPDIR, else the current directory)")
			fs.BoolVar(&jsonOut, "json", false, "print every figure as one JSON object instead of the table")
			fs.BoolVar(&noPeers, "no-peers", false, "do not run restic and borg (qemu-img still runs when on PATH)")
			fs.BoolVar(&keep, "keep", false, "keep the working directory (image, repositories, restored copies)")
			fs.BoolVar(&dropCaches, "drop-caches", false, "drop the page cache before each timed run (root); default: everything warm")
			fs.DurationVar(&settle, "settle", 0, "pause this long (5s, 1m) after the sync before each timed run, so that the disk is quiet and idle cache may be reclaimed, as between a backup and a later restore")
			fs.Uint64Var(&seed, "seed", 1, "seed of the image and of every random choice")
			fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
			fs.IntVar(&workers, "workers", 0, "parallelism of the block engine (default: all cores)")
			fs.IntVar(&restoreRounds, "restore-rounds", bench.DefaultRestoreRounds, "run each full restore from disk (Coffer's, its I/O floor, restic's, borg's, qemu-img's) this many times, interleaved, and judge the median run")
			fs.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the run to `FILE` (diagnostics)")
			fs.StringVar(&blockprofile, "blockprofile", "", "write a profile of where goroutines waited (locks, channels) to `FILE` (diagnostics)")
			fs.StringVar(&traceFile, "trace", "", "write an execution trace of the run to `FILE` (go tool trace; diagnostics)")
			fs.BoolVar(&backupOnly, "backup-only", false, "run only the full snapshot, its compute limit and the many disks' backups (no peers, no restores)")
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
			if err := applyNice(); err != nil {
				return err
			}
			var data int64
			if dataArg != "" {
				if data, err = bench.ParseSize(dataArg); err != nil {
					return usagef("--data: %v", err)
				}
				if data < 1<<20 || data > size {
					return usagef("--data must be at least 1 MiB and at most --size")
				}
			}
			if settle < 0 {
				return usagef("--settle must not be negative")
			}
			if restoreRounds < 1 {
				return usagef("--restore-rounds must be at least 1")
			}
			asJSON, none := jsonOut, false
			fs.Visit(func(f *flag.Flag) { // an explicit -o json also means JSON
				if f.Name == "output" || f.Name == "o" {
					asJSON = asJSON || f.Value.String() == outJSON
					none = f.Value.String() == outNone
				}
			})
			base := dir
			if base == "" {
				// $TMPDIR if set; else the current directory rather than
				// /tmp, which may be a RAM file system.
				if base = os.Getenv("TMPDIR"); base == "" {
					base = "."
				}
			}
			est := estimateBench(size, data, !noPeers && !backupOnly, keep)
			if backupOnly {
				est.what = fmt.Sprintf("a %s generated disk image, backed up by Coffer as one disk and as %d disks at once (--backup-only)", sizeText(size), 8)
				est.seconds /= 4
			}
			var st syscall.Statfs_t
			if err := syscall.Statfs(base, &st); err != nil {
				return fmt.Errorf("bench: %s: %w", base, err)
			}
			free := int64(st.Bavail) * int64(st.Bsize)
			if free < est.disk {
				return fmt.Errorf("bench: a %s disk needs up to %s in %s, which has %s free: give a smaller --size, or --dir on a larger file system",
					sizeText(size), sizeText(est.disk), base, sizeText(free))
			}
			if !quiet {
				left := "removed at the end"
				if keep {
					left = "kept at the end (--keep)"
				}
				wait := durationText(est.seconds)
				if settle > 0 {
					wait += ", plus the --settle pauses"
				}
				fmt.Fprintf(e.Stderr, "coffer bench: %s.\nIt takes %s here, and uses up to %s in %s (%s free), %s. Ctrl-C stops it.\n",
					est.what, wait, sizeText(est.disk), base, sizeText(free), left)
			}
			work, done, err := benchWorkDir(e, base, "bench", keep)
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
			stopBlock, err := startBlockProfile(blockprofile, "bench")
			if err != nil {
				return err
			}
			defer stopBlock()
			stopTrace, err := startTrace(traceFile, "bench")
			if err != nil {
				return err
			}
			defer stopTrace()
			opts := bench.Options{Size: size, Data: data, Dir: work, Seed: seed, Peers: !noPeers, DropCaches: dropCaches,
				Settle: settle, Keep: keep, Workers: workers, BackupOnly: backupOnly, RestoreRounds: restoreRounds} // Clock: bench defaults to the real clock
			if !quiet {
				opts.Progress = e.Stderr
			}
			res, runErr := bench.Run(ctx, opts)
			if runErr != nil && res.Version == 0 {
				return runErr
			}
			if none {
				return runErr
			}
			if err := printBench(e, asJSON, res, func(w io.Writer) error { return bench.WriteTable(w, res) }); err != nil {
				return err
			}
			return runErr
		},
	}
}

// benchEstimate is what `coffer bench` tells before it starts.
type benchEstimate struct {
	what    string // the steps, in words
	seconds float64
	disk    int64 // most bytes in the working directory at once
}

// estimateBench estimates a run's duration and its peak disk use from
// runs measured on a 2-core machine (docs/operations.md, "coffer bench"):
// with restic and borg, a 1 GiB disk holding half of it as data took 88 s
// and peaked at 3.2× the disk size in the working directory (restored
// copies are removed as the run goes); Coffer and qemu-img alone take
// about a third of the time. --keep keeps every restored copy: about 9×
// the disk size. Both scale with the data, not the holes: data is the
// --data bytes (0: half the disk).
func estimateBench(size, data int64, peers, keep bool) benchEstimate {
	if data <= 0 {
		data = size / 2
	}
	gib := float64(2*data) / (1 << 30) // as a disk of the default half data
	e := benchEstimate{what: fmt.Sprintf("a %s generated disk image, backed up, changed by 1%%, backed up again and restored by Coffer", sizeText(size)),
		seconds: 15 + 30*gib, disk: 5 * data}
	if peers {
		e.what += ", restic and borg (when installed)"
		e.seconds = 30 + 90*gib
		e.disk = 8 * data
	}
	e.what += ", then an instant restore and a write-latency test"
	if keep {
		e.disk = 18 * data
	}
	return e
}

// sizeText formats bytes in binary units with one decimal.
func sizeText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// durationText rounds seconds for an estimate: "under a minute", "about 7
// minutes".
func durationText(s float64) string {
	if s < 60 {
		return "under a minute"
	}
	return fmt.Sprintf("about %.0f minutes", math.Ceil(s/60))
}
