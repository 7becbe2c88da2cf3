package cli

import (
	"context"
	"flag"
	"fmt"

	"coffer/internal/client"
)

// runFunc is what a command runs once its flags are parsed.
type runFunc = func(ctx context.Context, e *Env, fs *flag.FlagSet) error

// runWithClient returns a run function that checks the flags with need
// (nil: nothing to check), then calls fn with the API client. Usage errors
// thus come before any configuration error, as in every command.
func runWithClient(need func() error, fn func(ctx context.Context, e *Env, c *client.Client) error) runFunc {
	return func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
		if need != nil {
			if err := need(); err != nil {
				return err
			}
		}
		c, err := e.Client()
		if err != nil {
			return err
		}
		return fn(ctx, e, c)
	}
}

// runShow returns the run function of a command that gets (or makes) one
// item with get and prints it with cols: a show, create or update command.
func runShow[T any](need func() error, get func(ctx context.Context, c *client.Client) (T, error), cols []column[T]) runFunc {
	return runWithClient(need, func(ctx context.Context, e *Env, c *client.Client) error {
		item, err := get(ctx, c)
		if err != nil {
			return err
		}
		return printOne(e, item, cols...)
	})
}

// runList returns the run function of a list command: list gets the items,
// printed with cols.
func runList[T any](need func() error, list func(ctx context.Context, c *client.Client) ([]T, error), cols []column[T]) runFunc {
	return runWithClient(need, func(ctx context.Context, e *Env, c *client.Client) error {
		items, err := list(ctx, c)
		if err != nil {
			return err
		}
		return printList(e, items, cols...)
	})
}

// runDo returns the run function of a command that prints nothing on
// success, such as a delete: do is the one client call it makes.
func runDo(need func() error, do func(ctx context.Context, c *client.Client) error) runFunc {
	return runWithClient(need, func(ctx context.Context, e *Env, c *client.Client) error {
		return do(ctx, c)
	})
}

// runConfirmed returns the run function of a command with --yes: after
// need it asks prompt() (see confirm), then calls fn with the API client.
// prompt and yes are read when it runs, after the flags are parsed.
func runConfirmed(need func() error, yes *bool, prompt func() string, fn func(ctx context.Context, e *Env, c *client.Client) error) runFunc {
	return func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
		if err := need(); err != nil {
			return err
		}
		if err := confirm(e, *yes, prompt()); err != nil {
			return err
		}
		return runWithClient(nil, fn)(ctx, e, fs)
	}
}

// runConfirmedDelete is runConfirmed for a delete command that asks
// "Delete <kind> <name>?" and prints nothing on success.
func runConfirmedDelete(kind string, name *string, yes *bool, need func() error, del func(ctx context.Context, c *client.Client) error) runFunc {
	return runConfirmed(need, yes, func() string { return fmt.Sprintf("Delete %s %q?", kind, *name) },
		func(ctx context.Context, e *Env, c *client.Client) error { return del(ctx, c) })
}

// runFile returns the run function of a command that takes one FILE
// argument (upload, download): after need it checks the argument, then
// calls fn with the API client and the file's path.
func runFile(verb string, need func() error, fn func(ctx context.Context, e *Env, c *client.Client, path string) error) runFunc {
	return func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
		if err := need(); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usagef("%s takes one FILE", verb)
		}
		return runWithClient(nil, func(ctx context.Context, e *Env, c *client.Client) error {
			return fn(ctx, e, c, fs.Arg(0))
		})(ctx, e, fs)
	}
}
