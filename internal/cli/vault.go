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

// dpFlags are the flags every backup command shares. Across the CLI,
// -n/--name names the resource that the command's noun is about (the
// policy of `policy show`, the instance of `instance stop`), and
// --instance names a backup instance wherever another command refers to
// one (`protect`, `backup now`, `rp list`, `restore`).
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

// bindInstance is bind for a command that refers to a backup instance:
// --instance, with -n and --name kept as hidden aliases (protect and
// backup now took them before).
func (f *dpFlags) bindInstance(fs *flag.FlagSet, usage string) {
	f.bind(fs, "")
	fs.StringVar(&f.name, "instance", "", usage)
	alias(fs, "name", "instance")
	alias(fs, "n", "instance")
}

// needInstance checks that the vault's group and name and --instance were
// given.
func (f *dpFlags) needInstance() error {
	return required("resource-group", f.group, "vault-name", f.vault, "instance", f.name)
}

// needVault checks that the vault's group and name were given.
func (f *dpFlags) needVault() error {
	return required("resource-group", f.group, "vault-name", f.vault)
}

// needName checks that the vault's group and name and --name were given.
func (f *dpFlags) needName() error {
	return required("resource-group", f.group, "vault-name", f.vault, "name", f.name)
}

func vaultCommand() *command {
	var f dpFlags
	var location, redundancy string
	var yes bool
	nameFlags := func(fs *flag.FlagSet) {
		stringFlag(fs, &f.group, "resource-group", "g", "", "resource group")
		stringFlag(fs, &f.name, "name", "n", "", "vault name")
	}
	need := func() error { return required("resource-group", f.group, "name", f.name) }
	return &command{name: "vault", short: "Manage backup vaults", sub: []*command{
		{name: "create", short: "Create a backup vault with a system-assigned identity",
			flags: func(fs *flag.FlagSet) {
				nameFlags(fs)
				stringFlag(fs, &location, "location", "l", "local", "region")
				fs.StringVar(&redundancy, "storage-redundancy", "LocallyRedundant", "LocallyRedundant, GeoRedundant or ZoneRedundant (kept; it does not apply to disk backups)")
			},
			run: runShow(need, func(ctx context.Context, c *client.Client) (client.Vault, error) {
				return c.CreateVault(ctx, f.group, f.name, location, redundancy)
			}, vaultCols)},
		{name: "show", short: "Show a backup vault", flags: nameFlags,
			run: runShow(need, func(ctx context.Context, c *client.Client) (client.Vault, error) {
				return c.GetVault(ctx, f.group, f.name)
			}, vaultCols)},
		{name: "list", short: "List backup vaults (of a group, or of the subscription)",
			flags: func(fs *flag.FlagSet) { stringFlag(fs, &f.group, "resource-group", "g", "", "resource group") },
			run: runList(nil, func(ctx context.Context, c *client.Client) ([]client.Vault, error) {
				return c.ListVaults(ctx, f.group)
			}, vaultCols)},
		{name: "delete", short: "Delete a backup vault (refused while it holds backup instances)",
			flags: func(fs *flag.FlagSet) {
				nameFlags(fs)
				boolFlag(fs, &yes, "yes", "y", "do not ask for confirmation")
			},
			run: runConfirmedDelete("backup vault", &f.name, &yes, need, func(ctx context.Context, c *client.Client) error {
				return c.DeleteVault(ctx, f.group, f.name)
			})},
	}}
}
