package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
)

// benchWorkDir makes the working directory of a bench run inside dir
// (default $TMPDIR, else the current directory rather than /tmp, which may
// be a RAM file system). done removes it, or with keep says where it is;
// name ("bench", "bench nbd") prefixes its messages.
func benchWorkDir(e *Env, dir, name string, keep bool) (work string, done func(), err error) {
	if dir == "" {
		if dir = os.Getenv("TMPDIR"); dir == "" {
			dir = "."
		}
	}
	work, err = os.MkdirTemp(dir, "coffer-"+strings.ReplaceAll(name, " ", "-")+"-")
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", name, err)
	}
	return work, func() {
		if keep {
			fmt.Fprintf(e.Stderr, "%s: kept %s\n", name, work)
			return
		}
		if err := os.RemoveAll(work); err != nil {
			fmt.Fprintf(e.Stderr, "%s: cleaning up %s: %v\n", name, work, err)
		}
	}, nil
}

// startCPUProfile writes a CPU profile to path ("": none) until stop.
func startCPUProfile(path, name string) (stop func(), err error) {
	return startToFile(path, name, "--cpuprofile", pprof.StartCPUProfile, pprof.StopCPUProfile)
}

// startTrace writes an execution trace of the run (go tool trace) to path
// ("": none) until stop: which goroutine ran on which core when, and what
// each waited for. Each Coffer snapshot and the compute limit are regions
// of it.
func startTrace(path, name string) (stop func(), err error) {
	return startToFile(path, name, "--trace", trace.Start, trace.Stop)
}

// startToFile creates path ("": does nothing) and starts writing to it
// with start; stop calls end and closes the file. flag names the option in
// errors.
func startToFile(path, name, flag string, start func(io.Writer) error, end func()) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, flag, err)
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %s: %w", name, flag, err)
	}
	return func() {
		end()
		f.Close()
	}, nil
}

// startBlockProfile records where goroutines wait (channel operations,
// locks, condition variables, each wait of 1 µs or more) and writes the
// block profile to path ("": none) at stop.
func startBlockProfile(path, name string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: --blockprofile: %w", name, err)
	}
	runtime.SetBlockProfileRate(1000) // ns
	return func() {
		runtime.SetBlockProfileRate(0)
		if err := pprof.Lookup("block").WriteTo(f, 0); err != nil {
			fmt.Fprintf(os.Stderr, "%s: --blockprofile: %v\n", name, err)
		}
		f.Close()
	}, nil
}

// printBench prints a bench result as indented JSON, or with table.
func printBench(e *Env, asJSON bool, res any, table func(io.Writer) error) error {
	if !asJSON {
		return table(e.Stdout)
	}
	enc := json.NewEncoder(e.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}
