package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"coffer/internal/client"
)

var snapshotCols = []column[client.Snapshot]{
	col("Name", func(s client.Snapshot) string { return s.Name }),
	col("Location", func(s client.Snapshot) string { return s.Location }),
	col("SizeGB", func(s client.Snapshot) string { return fmt.Sprint(s.Properties.DiskSizeGB) }),
	col("Incremental", func(s client.Snapshot) string {
		return fmt.Sprint(s.Properties.Incremental != nil && *s.Properties.Incremental)
	}),
	col("Source", func(s client.Snapshot) string {
		src := s.Properties.CreationData.SourceResourceID
		return src[strings.LastIndex(src, "/")+1:]
	}),
	col("ProvisioningState", func(s client.Snapshot) string { return s.Properties.ProvisioningState }),
}

func snapshotCommand() *command {
	var rg, name, location, source string
	var full, yes, noWait bool
	common := func(fs *flag.FlagSet) {
		stringFlag(fs, &rg, "resource-group", "g", "", "resource group")
		stringFlag(fs, &name, "name", "n", "", "snapshot name")
	}
	need := func() error { return required("resource-group", rg, "name", name) }
	return &command{name: "snapshot", short: "Manage snapshots of disks (Microsoft.Compute/snapshots)", sub: []*command{
		{name: "create", short: "Take a snapshot of a disk (incremental unless --full)",
			flags: func(fs *flag.FlagSet) {
				common(fs)
				fs.StringVar(&source, "source", "", "the disk: a name in the group, or a resource ID")
				stringFlag(fs, &location, "location", "l", "", "location (default: the group's)")
				fs.BoolVar(&full, "full", false, "a full snapshot (incremental: false)")
				fs.BoolVar(&noWait, "no-wait", false, "return at once")
			},
			run: runShow(func() error { return required("resource-group", rg, "name", name, "source", source) },
				func(ctx context.Context, c *client.Client) (client.Snapshot, error) {
					loc, err := resolveLocation(ctx, c, rg, location)
					if err != nil {
						return client.Snapshot{}, err
					}
					return c.CreateSnapshot(ctx, rg, name, client.SnapshotSpec{Location: loc, Source: resolveID(c, client.Disks, rg, source), Incremental: !full}, !noWait)
				}, snapshotCols)},
		{name: "show", short: "Show a snapshot", flags: common,
			run: runShow(need, func(ctx context.Context, c *client.Client) (client.Snapshot, error) {
				return c.GetSnapshot(ctx, rg, name)
			}, snapshotCols)},
		{name: "list", short: "List snapshots (of a group, or of the subscription)",
			flags: func(fs *flag.FlagSet) {
				stringFlag(fs, &rg, "resource-group", "g", "", "resource group (default: all)")
			},
			run: runList(nil, func(ctx context.Context, c *client.Client) ([]client.Snapshot, error) {
				return c.ListSnapshots(ctx, rg)
			}, snapshotCols)},
		{name: "delete", short: "Delete a snapshot",
			flags: func(fs *flag.FlagSet) {
				common(fs)
				boolFlag(fs, &yes, "yes", "y", "do not ask for confirmation")
			},
			run: runConfirmedDelete("snapshot", &name, &yes, need, func(ctx context.Context, c *client.Client) error {
				return c.DeleteSnapshot(ctx, rg, name)
			})},
		{name: "download", short: "Download a snapshot into a raw image file (sparse)", usage: "FILE", flags: common,
			run: runFile("download", need, func(ctx context.Context, e *Env, c *client.Client, path string) error {
				return downloadData(ctx, e, c, client.Snapshots, rg, name, path)
			})},
	}}
}
