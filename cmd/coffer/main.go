// Command coffer is Coffer's single binary: `coffer serve` runs the server
// and every other subcommand is a client of its HTTP API.
package main

import (
	"context"
	"os"

	"coffer/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], &cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin,
		Terminal: isTerminal(os.Stdout), Interactive: isTerminal(os.Stdin)}))
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
