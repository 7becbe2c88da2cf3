package cli

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"

	"coffer/internal/client"
)

func subscriptionCommand() *command {
	var alias, display, subID string
	subCols := []column[client.Subscription]{
		col("SubscriptionId", func(s client.Subscription) string { return s.SubscriptionID }),
		col("DisplayName", func(s client.Subscription) string { return s.DisplayName }),
		col("State", func(s client.Subscription) string { return s.State }),
	}
	return &command{name: "subscription", short: "Manage subscriptions", sub: []*command{
		{name: "create", short: "Create a subscription (tenant administrators)",
			flags: func(fs *flag.FlagSet) {
				stringFlag(fs, &alias, "name", "n", "", "alias name of the subscription")
				fs.StringVar(&display, "display-name", "", "display name (default: the alias)")
				fs.StringVar(&subID, "subscription-id", "", "subscription ID to use (default: a new GUID)")
			},
			run: runShow(func() error { return required("name", alias) },
				func(ctx context.Context, c *client.Client) (client.Subscription, error) {
					a, err := c.CreateSubscription(ctx, alias, display, subID)
					if err != nil {
						return client.Subscription{}, err
					}
					return c.GetSubscription(ctx, a.Properties.SubscriptionID)
				}, subCols)},
		{name: "list", short: "List subscriptions",
			run: runList(nil, func(ctx context.Context, c *client.Client) ([]client.Subscription, error) {
				return c.ListSubscriptions(ctx)
			}, subCols)},
		{name: "show", short: "Show the current (or --subscription) subscription",
			run: runShow(nil, func(ctx context.Context, c *client.Client) (client.Subscription, error) {
				if c.Subscription == "" {
					return client.Subscription{}, usagef("no subscription: pass --subscription")
				}
				return c.GetSubscription(ctx, c.Subscription)
			}, subCols)},
	}}
}

func tagString(t map[string]string) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+t[k])
	}
	return strings.Join(parts, " ")
}

func groupCommand() *command {
	var name, location string
	var noWait, yes bool
	tags := tagsFlag{}
	cols := []column[client.Group]{
		col("Name", func(g client.Group) string { return g.Name }),
		col("Location", func(g client.Group) string { return g.Location }),
		col("Status", func(g client.Group) string { return g.Properties.ProvisioningState }),
		col("Tags", func(g client.Group) string { return tagString(g.Tags) }),
	}
	nameFlag := func(fs *flag.FlagSet) { stringFlag(fs, &name, "name", "n", "", "resource group name") }
	need := func() error { return required("name", name) }
	return &command{name: "group", short: "Manage resource groups", sub: []*command{
		{name: "create", short: "Create or update a resource group",
			flags: func(fs *flag.FlagSet) {
				nameFlag(fs)
				stringFlag(fs, &location, "location", "l", "", "location (one of the server's regions)")
				fs.Var(tags, "tags", "space-separated `key=value` tags (repeatable)")
			},
			run: runShow(func() error { return required("name", name, "location", location) },
				func(ctx context.Context, c *client.Client) (client.Group, error) {
					var t map[string]string
					if len(tags) > 0 {
						t = tags
					}
					return c.CreateGroup(ctx, name, location, t)
				}, cols)},
		{name: "show", short: "Show a resource group", flags: nameFlag,
			run: runShow(need, func(ctx context.Context, c *client.Client) (client.Group, error) {
				return c.GetGroup(ctx, name)
			}, cols)},
		{name: "list", short: "List resource groups",
			run: runList(nil, func(ctx context.Context, c *client.Client) ([]client.Group, error) { return c.ListGroups(ctx) }, cols)},
		{name: "delete", short: "Delete a resource group and everything in it",
			flags: func(fs *flag.FlagSet) {
				nameFlag(fs)
				fs.BoolVar(&noWait, "no-wait", false, "return at once without waiting for the deletion")
				boolFlag(fs, &yes, "yes", "y", "do not ask for confirmation")
			},
			run: runConfirmed(need, &yes, func() string { return fmt.Sprintf("Delete resource group %q and everything in it?", name) },
				func(ctx context.Context, e *Env, c *client.Client) error {
					r, err := c.DeleteGroup(ctx, name, !noWait)
					if err != nil {
						return err
					}
					if noWait {
						return printValue(e, r.Header.Get("Location"))
					}
					fmt.Fprintf(e.Stderr, "Deleted resource group %s.\n", name)
					return nil
				})},
	}}
}

func boolFlag(fs *flag.FlagSet, p *bool, long, short, usage string) {
	fs.BoolVar(p, long, false, usage)
	shortFlag(fs, short, long)
}
