package cli

import (
	"context"
	"flag"
	"fmt"

	"coffer/internal/client"
)

var instanceCols = []column[client.Instance]{
	col("Name", func(b client.Instance) string { return b.Name }),
	col("Disk", func(b client.Instance) string { return b.Properties.FriendlyName }),
	col("State", func(b client.Instance) string { return b.Properties.CurrentProtectionState }),
	col("Error", func(b client.Instance) string {
		if s := b.Properties.ProtectionStatus; s != nil && s.ErrorDetails != nil {
			return s.ErrorDetails.Code
		}
		return ""
	}),
	col("Policy", func(b client.Instance) string { return lastSegment(b.Properties.PolicyInfo.PolicyID) }),
}

func lastSegment(id string) string {
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] == '/' {
			return id[i+1:]
		}
	}
	return id
}

func instanceCommand() *command {
	var f dpFlags
	var noWait, yes bool
	one := func(name, short string, run func(ctx context.Context, e *Env, c *client.Client) error) *command {
		return &command{name: name, short: short,
			flags: func(fs *flag.FlagSet) { f.bind(fs, "backup instance name") },
			run:   runWithClient(f.needName, run)}
	}
	show := func(ctx context.Context, e *Env, c *client.Client) error {
		bi, err := c.GetInstance(ctx, f.group, f.vault, f.name)
		if err != nil {
			return err
		}
		return printOne(e, bi, instanceCols...)
	}
	action := func(name, action, short string) *command {
		return one(name, short, func(ctx context.Context, e *Env, c *client.Client) error {
			if err := c.InstanceAction(ctx, f.group, f.vault, f.name, action); err != nil {
				return err
			}
			return show(ctx, e, c)
		})
	}
	return &command{name: "instance", short: "Manage backup instances (protected disks)", sub: []*command{
		one("show", "Show a backup instance", show),
		{name: "list", short: "List a vault's backup instances",
			flags: func(fs *flag.FlagSet) { f.bind(fs, "") },
			run: runList(f.needVault, func(ctx context.Context, c *client.Client) ([]client.Instance, error) {
				return c.ListInstances(ctx, f.group, f.vault)
			}, instanceCols)},
		action("stop", "stopProtection", "Stop protection and keep every recovery point forever"),
		action("suspend", "suspendBackups", "Suspend backups; recovery points expire per policy except the latest"),
		action("resume", "resumeProtection", "Resume protection of a stopped or suspended instance"),
		{name: "delete", short: "Delete a backup instance with its recovery points and snapshots",
			flags: func(fs *flag.FlagSet) {
				f.bind(fs, "backup instance name")
				fs.BoolVar(&noWait, "no-wait", false, "return without waiting for the deletion")
				boolFlag(fs, &yes, "yes", "y", "do not ask for confirmation")
			},
			run: runConfirmed(f.needName, &yes, func() string {
				return fmt.Sprintf("Delete backup instance %q with all its recovery points and snapshots?", f.name)
			}, func(ctx context.Context, e *Env, c *client.Client) error {
				return c.DeleteInstance(ctx, f.group, f.vault, f.name, !noWait)
			})},
	}}
}
