package cli

import (
	"context"
	"flag"

	"coffer/internal/client"
)

var vaultCols = []column[client.Vault]{
	col("Name", func(v client.Vault) string { return v.Name }),
	col("Location", func(v client.Vault) string { return v.Location }),
	col("PrincipalId", func(v client.Vault) string { return v.PrincipalID() }),
	col("ProvisioningState", func(v client.Vault) string { return v.Properties.ProvisioningState }),
}

// dpFlags are the flags every backup command shares.
type dpFlags struct {
	group, vault, name string
}

func (f *dpFlags) bind(fs *flag.FlagSet, nameUsage string) {
	stringFlag(fs, &f.group, "resource-group", "g", "", "resource group of the backup vault")
	stringFlag(fs, &f.vault, "vault-name", "v", "", "backup vault name")
	if nameUsage != "" {
		stringFlag(fs, &f.name, "name", "n", "", nameUsage)
	}
}

func vaultCommand() *command {
	var f dpFlags
	var location, redundancy string
	return &command{name: "vault", short: "Manage backup vaults", sub: []*command{
		{name: "create", short: "Create a backup vault with a system-assigned identity",
			flags: func(fs *flag.FlagSet) {
				stringFlag(fs, &f.group, "resource-group", "g", "", "resource group")
				stringFlag(fs, &f.name, "name", "n", "", "vault name")
				stringFlag(fs, &location, "location", "l", "local", "region")
				fs.StringVar(&redundancy, "storage-redundancy", "LocallyRedundant", "LocallyRedundant, GeoRedundant or ZoneRedundant (kept; it does not apply to disk backups)")
			},
			run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
				if err := required("resource-group", f.group, "name", f.name); err != nil {
					return err
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				v, err := c.CreateVault(ctx, f.group, f.name, location, redundancy)
				if err != nil {
					return err
				}
				return printOne(e, v, vaultCols...)
			}},
		{name: "show", short: "Show a backup vault",
			flags: func(fs *flag.FlagSet) {
				stringFlag(fs, &f.group, "resource-group", "g", "", "resource group")
				stringFlag(fs, &f.name, "name", "n", "", "vault name")
			},
			run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
				if err := required("resource-group", f.group, "name", f.name); err != nil {
					return err
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				v, err := c.GetVault(ctx, f.group, f.name)
				if err != nil {
					return err
				}
				return printOne(e, v, vaultCols...)
			}},
		{name: "list", short: "List backup vaults (of a group, or of the subscription)",
			flags: func(fs *flag.FlagSet) { stringFlag(fs, &f.group, "resource-group", "g", "", "resource group") },
			run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
				c, err := e.Client()
				if err != nil {
					return err
				}
				vs, err := c.ListVaults(ctx, f.group)
				if err != nil {
					return err
				}
				return printList(e, vs, vaultCols...)
			}},
		{name: "delete", short: "Delete a backup vault (refused while it holds backup instances)",
			flags: func(fs *flag.FlagSet) {
				stringFlag(fs, &f.group, "resource-group", "g", "", "resource group")
				stringFlag(fs, &f.name, "name", "n", "", "vault name")
			},
			run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
				if err := required("resource-group", f.group, "name", f.name); err != nil {
					return err
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				return c.DeleteVault(ctx, f.group, f.name)
			}},
	}}
}
