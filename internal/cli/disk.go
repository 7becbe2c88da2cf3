package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"time"

	"coffer/internal/client"
)

var diskCols = []column[client.Disk]{
	col("Name", func(d client.Disk) string { return d.Name }),
	col("Location", func(d client.Disk) string { return d.Location }),
	col("SizeGB", func(d client.Disk) string { return fmt.Sprint(d.Properties.DiskSizeGB) }),
	col("Sku", func(d client.Disk) string {
		if d.SKU == nil {
			return ""
		}
		return d.SKU.Name
	}),
	col("DiskState", func(d client.Disk) string { return d.Properties.DiskState }),
	col("ProvisioningState", func(d client.Disk) string { return d.Properties.ProvisioningState }),
}

// resolveLocation returns loc, or the group's location when empty.
func resolveLocation(ctx context.Context, c *client.Client, rg, loc string) (string, error) {
	if loc != "" {
		return loc, nil
	}
	g, err := c.GetGroup(ctx, rg)
	if err != nil {
		return "", err
	}
	return g.Location, nil
}

// resolveSource turns the --source of a new disk into a resource ID: a
// resource ID is taken as it is; a name is the group's snapshot of that
// name, else its disk. A name that is neither fails with both lookups'
// answer, in ARM's shape (404 ResourceNotFound).
func resolveSource(ctx context.Context, c *client.Client, rg, source string) (string, error) {
	if strings.HasPrefix(source, "/") {
		return source, nil
	}
	_, err := c.GetSnapshot(ctx, rg, source)
	if err == nil {
		return resolveID(c, client.Snapshots, rg, source), nil
	}
	if ce := client.AsError(err); ce == nil || ce.StatusCode != http.StatusNotFound {
		return "", fmt.Errorf("look up snapshot %s: %w", source, err)
	}
	_, err = c.GetDisk(ctx, rg, source)
	if err == nil {
		return resolveID(c, client.Disks, rg, source), nil
	}
	if ce := client.AsError(err); ce == nil || ce.StatusCode != http.StatusNotFound {
		return "", fmt.Errorf("look up disk %s: %w", source, err)
	}
	return "", &client.Error{StatusCode: http.StatusNotFound, Code: "ResourceNotFound", Target: "--source",
		Message: fmt.Sprintf("Neither a snapshot nor a disk named '%s' was found in resource group '%s'. Give --source the name of one of them, or its resource ID.", source, rg)}
}

// resolveID turns a name in group rg (or a full resource ID) into an ID.
func resolveID(c *client.Client, typ, rg, nameOrID string) string {
	if strings.HasPrefix(strings.ToLower(nameOrID), "/subscriptions/") {
		return nameOrID
	}
	return "/subscriptions/" + c.Subscription + "/resourceGroups/" + rg + "/providers/Microsoft.Compute/" + typ + "/" + nameOrID
}

func diskCommand() *command {
	var rg, name, location, sku, source, access, grantID string
	var uploadBytes, duration int64
	var sizeGB intFlag
	var yes, noWait, outlives bool
	tags := tagsFlag{}
	common := func(fs *flag.FlagSet) {
		stringFlag(fs, &rg, "resource-group", "g", "", "resource group")
		stringFlag(fs, &name, "name", "n", "", "disk name")
	}
	need := func() error { return required("resource-group", rg, "name", name) }
	accessFlags := func(fs *flag.FlagSet) {
		common(fs)
		fs.StringVar(&access, "access", "read", "access: read or write")
		fs.Int64Var(&duration, "duration-in-seconds", 3600, "how long the access lasts")
		fs.BoolVar(&outlives, "outlives-creator", false, "keep the grant usable if you lose your roles or your principal is deleted")
	}
	grant := func(ctx context.Context, c *client.Client) (client.AccessURI, error) {
		return c.Grant(ctx, client.Disks, rg, name, client.AccessSpec{Access: accessLevel(access),
			Duration: time.Duration(duration) * time.Second, OutlivesCreator: outlives})
	}
	return &command{name: "disk", short: "Manage managed disks (Microsoft.Compute/disks)", sub: []*command{
		{name: "create", short: "Create a disk: empty (--size-gb), from a disk or snapshot (--source), or for upload (--upload-size-bytes)",
			flags: func(fs *flag.FlagSet) {
				common(fs)
				stringFlag(fs, &location, "location", "l", "", "location (default: the group's)")
				fs.Var(&sizeGB, "size-gb", "size in `GiB`")
				fs.StringVar(&sku, "sku", "", "SKU: Standard_LRS, StandardSSD_LRS, Premium_LRS, PremiumV2_LRS, UltraSSD_LRS")
				fs.StringVar(&source, "source", "", "source disk or snapshot (name in the group, or resource ID)")
				fs.Int64Var(&uploadBytes, "upload-size-bytes", 0, "create an empty disk awaiting an upload of this many bytes (a multiple of 512)")
				fs.Var(tags, "tags", "space-separated `key=value` tags (repeatable)")
				fs.BoolVar(&noWait, "no-wait", false, "return at once")
			},
			run: runShow(need, func(ctx context.Context, c *client.Client) (client.Disk, error) {
				loc, err := resolveLocation(ctx, c, rg, location)
				if err != nil {
					return client.Disk{}, err
				}
				spec := client.DiskSpec{Location: loc, SKU: sku, SizeGB: sizeGB.v, SizeGiven: sizeGB.set, UploadSizeBytes: uploadBytes}
				if len(tags) > 0 {
					spec.Tags = tags
				}
				if source != "" {
					id, err := resolveSource(ctx, c, rg, source)
					if err != nil {
						return client.Disk{}, err
					}
					spec.Source = id
				}
				return c.CreateDisk(ctx, rg, name, spec, !noWait)
			}, diskCols)},
		{name: "show", short: "Show a disk", flags: common,
			run: runShow(need, func(ctx context.Context, c *client.Client) (client.Disk, error) {
				return c.GetDisk(ctx, rg, name)
			}, diskCols)},
		{name: "list", short: "List disks (of a group, or of the subscription)",
			flags: func(fs *flag.FlagSet) {
				stringFlag(fs, &rg, "resource-group", "g", "", "resource group (default: all)")
			},
			run: runList(nil, func(ctx context.Context, c *client.Client) ([]client.Disk, error) {
				return c.ListDisks(ctx, rg)
			}, diskCols)},
		{name: "update", short: "Grow a disk (--size-gb) or set its tags",
			flags: func(fs *flag.FlagSet) {
				common(fs)
				fs.Var(&sizeGB, "size-gb", "new size in `GiB` (larger than the current one)")
				fs.Var(tags, "tags", "space-separated `key=value` tags (repeatable)")
			},
			run: runShow(func() error {
				if err := need(); err != nil {
					return err
				}
				if !sizeGB.set && len(tags) == 0 {
					return usagef("nothing to update: give --size-gb, --tags or both")
				}
				return nil
			}, func(ctx context.Context, c *client.Client) (client.Disk, error) {
				var t map[string]string
				if len(tags) > 0 {
					t = tags
				}
				return c.UpdateDisk(ctx, rg, name, sizeGB.ptr(), t)
			}, diskCols)},
		{name: "delete", short: "Delete a disk",
			flags: func(fs *flag.FlagSet) {
				common(fs)
				boolFlag(fs, &yes, "yes", "y", "do not ask for confirmation")
			},
			run: runConfirmedDelete("disk", &name, &yes, need, func(ctx context.Context, c *client.Client) error {
				return c.DeleteDisk(ctx, rg, name)
			})},
		{name: "grant-access", short: "Grant read or write access: print the SAS URL and the NBD URL", flags: accessFlags,
			run: runShow(need, grant, []column[client.AccessURI]{
				col("AccessSAS", func(a client.AccessURI) string { return a.AccessSAS }),
				col("NBDURL", func(a client.AccessURI) string { return a.NBDURL }),
				col("GrantID", func(a client.AccessURI) string { return a.GrantID }),
			})},
		{name: "revoke-access", short: "End every access grant of a disk, or one (--grant-id)",
			flags: func(fs *flag.FlagSet) {
				common(fs)
				fs.StringVar(&grantID, "grant-id", "", "end only this grant (the grantId grant-access printed)")
			},
			run: runDo(need, func(ctx context.Context, c *client.Client) error {
				if grantID != "" {
					return c.RevokeGrant(ctx, client.Disks, rg, name, grantID)
				}
				return c.RevokeAccess(ctx, client.Disks, rg, name)
			})},
		{name: "nbd-url", short: "Grant access and print an NBD URL that qemu-img, nbdcopy and nbdinfo accept", flags: accessFlags,
			run: runWithClient(need, func(ctx context.Context, e *Env, c *client.Client) error {
				a, err := grant(ctx, c)
				if err != nil {
					return err
				}
				if a.NBDURL == "" {
					return errors.New("the server does not serve NBD")
				}
				return printValue(e, a.NBDURL)
			})},
		{name: "upload", short: "Upload a raw image into a disk (created for upload if it does not exist)", usage: "FILE",
			flags: func(fs *flag.FlagSet) {
				common(fs)
				stringFlag(fs, &location, "location", "l", "", "location of a new disk (default: the group's)")
				fs.StringVar(&sku, "sku", "", "SKU of a new disk")
			},
			run: runFile("upload", need, func(ctx context.Context, e *Env, c *client.Client, path string) error {
				return uploadDisk(ctx, e, c, rg, name, location, sku, path)
			})},
		{name: "download", short: "Download a disk into a raw image file (sparse)", usage: "FILE", flags: common,
			run: runFile("download", need, func(ctx context.Context, e *Env, c *client.Client, path string) error {
				return downloadData(ctx, e, c, client.Disks, rg, name, path)
			})},
	}}
}

func accessLevel(s string) string {
	switch strings.ToLower(s) {
	case "read":
		return "Read"
	case "write":
		return "Write"
	}
	return s
}
