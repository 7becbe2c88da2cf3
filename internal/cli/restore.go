package cli

import (
	"context"
	"flag"
	"fmt"

	"coffer/internal/client"
)

func restoreCommand() *command {
	var f dpFlags
	var instance, rp, targetGroup, targetSub, name, location string
	var noWait bool
	return &command{name: "restore", short: "Restore a recovery point to a new disk (validated first)",
		flags: func(fs *flag.FlagSet) {
			f.bind(fs, "")
			fs.StringVar(&instance, "instance", "", "backup instance name")
			fs.StringVar(&rp, "rp", "", "recovery point name")
			fs.StringVar(&targetGroup, "target-group", "", "resource group of the new disk")
			fs.StringVar(&targetSub, "target-subscription", "", "subscription of the new disk (default: the current one)")
			fs.StringVar(&name, "target-disk", "", "name of the new disk")
			alias(fs, "name", "target-disk") // its name before --target-disk
			fs.StringVar(&location, "location", "", "region (default: the vault's)")
			fs.BoolVar(&noWait, "no-wait", false, "print the job ID and return")
		},
		run: runWithClient(func() error {
			return required("resource-group", f.group, "vault-name", f.vault, "instance", instance, "rp", rp,
				"target-group", targetGroup, "target-disk", name)
		}, func(ctx context.Context, e *Env, c *client.Client) error {
			if targetSub == "" {
				targetSub = c.Subscription
			}
			if location == "" {
				v, err := c.GetVault(ctx, f.group, f.vault)
				if err != nil {
					return err
				}
				location = v.Location
			}
			target := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/disks/%s", targetSub, targetGroup, name)
			req := clientRestoreRequest(rp, target, location)
			if err := c.ValidateRestore(ctx, f.group, f.vault, instance, req); err != nil {
				return err
			}
			id, err := c.Restore(ctx, f.group, f.vault, instance, req)
			if err != nil {
				return err
			}
			return followJob(ctx, e, c, f.group, f.vault, id, noWait)
		})}
}
