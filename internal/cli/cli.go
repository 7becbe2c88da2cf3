// Package cli is Coffer's command-line interface: `coffer serve` runs the
// server and every other command is a client of the HTTP API through
// package client. Commands follow the Azure CLI's conventions
// (-g/--resource-group, -n/--name, -o/--output table|json|tsv,
// --subscription, --no-wait) and exit with meaningful codes:
//
//	0 success
//	1 the server refused the request or an operation failed
//	2 usage error (bad flags or arguments)
//	3 authentication or authorization failed (401/403)
//	4 not found (404)
//
// Main runs a command line in-process, so tests drive the CLI exactly as a
// user would.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"coffer/internal/client"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitError    = 1
	ExitUsage    = 2
	ExitAuth     = 3
	ExitNotFound = 4
)

// Env is what a command runs with.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Terminal reports whether Stdout is a terminal (table output and
	// progress bars by default).
	Terminal bool
	// Interactive reports whether Stdin is a terminal: only then do
	// destructive commands ask for confirmation; otherwise they need --yes.
	Interactive bool

	output       string
	subscription string
	cfgErr       error
	client       *client.Client
}

// Client returns the API client, configured from the environment.
func (e *Env) Client() (*client.Client, error) {
	if e.client != nil {
		return e.client, nil
	}
	cfg, err := client.LoadConfig()
	if err != nil {
		return nil, err
	}
	if e.subscription != "" {
		cfg.Subscription, cfg.From.Subscription = e.subscription, client.Source{Kind: client.SourceFlag, Name: "--subscription"}
	}
	c, err := client.New(cfg)
	if err != nil {
		return nil, err
	}
	e.client = c
	return c, nil
}

// command is one node of the command tree.
type command struct {
	name  string
	short string
	usage string // argument synopsis ("FILE"); without one, arguments are refused
	sub   []*command
	flags func(fs *flag.FlagSet)
	run   func(ctx context.Context, e *Env, fs *flag.FlagSet) error
	// globals says which global flags the command takes.
	globals globals
}

// globals are the sets of global flags a command may take.
type globals int

const (
	allGlobals globals = iota // --output and --subscription: every client command
	outputOnly                // --output: commands that print but reach no server
	noGlobals                 // neither: serve, version
)

// Output formats (-o).
const (
	outTable = "table"
	outJSON  = "json"
	outTSV   = "tsv"
	outNone  = "none"
)

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func root() *command {
	return &command{name: "coffer", short: "Self-hosted disk backup with the Azure Backup API", sub: []*command{
		serveCommand(),
		loginCommand(), logoutCommand(), accountCommand(),
		subscriptionCommand(),
		groupCommand(),
		principalCommand(),
		tokenCommand(),
		roleCommand(),
		diskCommand(),
		snapshotCommand(),
		adminCommand(),
		vaultCommand(), policyCommand(), protectCommand(), instanceCommand(), backupCommand(), rpCommand(), restoreCommand(), jobCommand(),
		alertCommand(), notifyCommand(),
		versionCommand(),
		benchCommand(),
	}}
}

// Version is set at build time with -ldflags.
var Version = "dev"

func versionCommand() *command {
	return &command{name: "version", short: "Print the version", globals: noGlobals, run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
		fmt.Fprintln(e.Stdout, "coffer", Version)
		return nil
	}}
}

// Main runs the command line args (without the program name) and returns
// the exit code.
func Main(ctx context.Context, args []string, e *Env) int {
	if e.Stdin == nil {
		e.Stdin = os.Stdin
	}
	cmd := root()
	path := []string{"coffer"}
	for len(args) > 0 && len(cmd.sub) > 0 {
		next := findSub(cmd, args[0])
		if next == nil {
			break
		}
		cmd, args, path = next, args[1:], append(path, next.name)
	}
	if cmd.run == nil {
		if len(args) > 0 && args[0] != "-h" && args[0] != "--help" && args[0] != "help" {
			fmt.Fprintf(e.Stderr, "ERROR: unknown command %q\n\n", strings.Join(append(path[1:], args[0]), " "))
			printHelp(e.Stderr, cmd, path)
			return ExitUsage
		}
		printHelp(e.Stdout, cmd, path)
		return ExitOK
	}
	fs := flag.NewFlagSet(strings.Join(path, " "), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if cmd.globals != noGlobals {
		stringFlag(fs, &e.output, "output", "o", "", "output format: table, json, tsv or none (default: table on a terminal, else json)")
	}
	if cmd.globals == allGlobals {
		fs.StringVar(&e.subscription, "subscription", "", "subscription ID (default: the one coffer account show names)")
	}
	global := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { global[f.Name] = true })
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	if err := parseInterspersed(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(e.Stdout, cmd, path, fs, global)
			return ExitOK
		}
		fmt.Fprintf(e.Stderr, "ERROR: %v\n\n", err)
		printCommandHelp(e.Stderr, cmd, path, fs, global)
		return ExitUsage
	}
	if cmd.usage == "" && fs.NArg() > 0 {
		fmt.Fprintf(e.Stderr, "ERROR: unexpected argument %q (this command takes none; see --help)\n", fs.Arg(0))
		return ExitUsage
	}
	switch e.output {
	case "", outTable, outJSON, outTSV, outNone:
	default:
		fmt.Fprintf(e.Stderr, "ERROR: --output must be table, json, tsv or none, not %q\n", e.output)
		return ExitUsage
	}
	if e.output == "" {
		e.output = outJSON
		if e.Terminal {
			e.output = outTable
		}
	}
	err := cmd.run(ctx, e, fs)
	return report(e, err)
}

// parseInterspersed parses args into fs with flags allowed before, between
// and after the positional arguments (`coffer disk upload -g rg -n d
// disk.img -o none`), which the flag package alone stops at. A lone "--"
// ends the flags: everything after it is positional, even if it starts
// with "-". Afterwards fs.Args() holds the positional arguments in order.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	// Leave the positional arguments as fs.Args(): parsing "--" and them
	// sets no flag.
	return fs.Parse(append([]string{"--"}, positional...))
}

func report(e *Env, err error) int {
	if err == nil {
		return ExitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.Stderr, "ERROR: %s\n", ue.msg)
		return ExitUsage
	}
	if ce := client.AsError(err); ce != nil {
		fmt.Fprintf(e.Stderr, "ERROR: %s\n", ce.Error())
		if ce.Target != "" {
			fmt.Fprintf(e.Stderr, "Target: %s\n", ce.Target)
		}
		switch ce.StatusCode {
		case 401, 403:
			if e.client != nil {
				fmt.Fprintf(e.Stderr, "This command ran with the credentials of %s; `coffer account show` says whose.\n", e.client.From.Token)
			}
			return ExitAuth
		case 404:
			return ExitNotFound
		}
		return ExitError
	}
	fmt.Fprintf(e.Stderr, "ERROR: %v\n", err)
	return ExitError
}

func findSub(c *command, name string) *command {
	for _, s := range c.sub {
		if s.name == name {
			return s
		}
	}
	return nil
}

// stringFlag binds a long and an optional short name to one string.
func stringFlag(fs *flag.FlagSet, p *string, long, short, def, usage string) {
	fs.StringVar(p, long, def, usage)
	if short != "" {
		shortFlag(fs, short, long)
	}
}

// required checks that flags were given.
func required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return usagef("the flag --%s is required", pairs[i])
		}
	}
	return nil
}

// intFlag is an integer flag that remembers whether it was given, so that
// "--size-gb 0" reaches the server (which refuses it) instead of reading
// as "no --size-gb".
type intFlag struct {
	v   int64
	set bool
}

func (f *intFlag) String() string {
	if f == nil || !f.set {
		return ""
	}
	return strconv.FormatInt(f.v, 10)
}

func (f *intFlag) Set(s string) error {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	f.v, f.set = v, true
	return nil
}

// ptr returns the value, or nil when the flag was not given.
func (f *intFlag) ptr() *int64 {
	if !f.set {
		return nil
	}
	v := f.v
	return &v
}

// tagsFlag collects repeated key=value pairs.
type tagsFlag map[string]string

func (t tagsFlag) String() string { return "" }
func (t tagsFlag) Set(s string) error {
	for _, kv := range strings.Fields(s) {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return fmt.Errorf("tag %q: want key=value", kv)
		}
		t[k] = v
	}
	return nil
}

// confirm asks "prompt (y/N)" unless yes was given, and returns an error
// unless the answer is yes. It asks only when standard input is a
// terminal; otherwise (a script, a pipe) the command is refused with a
// usage error saying to pass --yes, and nothing is changed.
func confirm(e *Env, yes bool, prompt string) error {
	if yes {
		return nil
	}
	if !e.Interactive {
		return usagef("%s Not confirmed: standard input is not a terminal, so nothing was asked and nothing was changed; pass --yes to confirm.", prompt)
	}
	fmt.Fprintf(e.Stderr, "%s (y/N): ", prompt)
	var answer string
	fmt.Fscanln(e.Stdin, &answer)
	if !strings.EqualFold(answer, "y") && !strings.EqualFold(answer, "yes") {
		return fmt.Errorf("not confirmed; nothing was changed")
	}
	return nil
}
