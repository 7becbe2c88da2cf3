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
			run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
				if err := required("name", alias); err != nil {
					return err
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				a, err := c.CreateSubscription(ctx, alias, display, subID)
				if err != nil {
					return err
				}
				s, err := c.GetSubscription(ctx, a.Properties.SubscriptionID)
				if err != nil {
					return err
				}
				return printOne(e, s, subCols...)
			}},
		{name: "list", short: "List subscriptions", run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
			c, err := e.Client()
			if err != nil {
				return err
			}
			subs, err := c.ListSubscriptions(ctx)
			if err != nil {
				return err
			}
			return printList(e, subs, subCols...)
		}},
		{name: "show", short: "Show the current (or --subscription) subscription", run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
			c, err := e.Client()
			if err != nil {
				return err
			}
			if c.Subscription == "" {
				return usagef("no subscription: pass --subscription")
			}
			s, err := c.GetSubscription(ctx, c.Subscription)
			if err != nil {
				return err
			}
			return printOne(e, s, subCols...)
		}},
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
	return &command{name: "group", short: "Manage resource groups", sub: []*command{
		{name: "create", short: "Create or update a resource group",
			flags: func(fs *flag.FlagSet) {
				nameFlag(fs)
				stringFlag(fs, &location, "location", "l", "", "location (one of the server's regions)")
				fs.Var(tags, "tags", "space-separated key=value tags (repeatable)")
			},
			run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
				if err := required("name", name, "location", location); err != nil {
					return err
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				var t map[string]string
				if len(tags) > 0 {
					t = tags
				}
				g, err := c.CreateGroup(ctx, name, location, t)
				if err != nil {
					return err
				}
				return printOne(e, g, cols...)
			}},
		{name: "show", short: "Show a resource group", flags: nameFlag,
			run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
				if err := required("name", name); err != nil {
					return err
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				g, err := c.GetGroup(ctx, name)
				if err != nil {
					return err
				}
				return printOne(e, g, cols...)
			}},
		{name: "list", short: "List resource groups", run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
			c, err := e.Client()
			if err != nil {
				return err
			}
			gs, err := c.ListGroups(ctx)
			if err != nil {
				return err
			}
			return printList(e, gs, cols...)
		}},
		{name: "delete", short: "Delete a resource group and everything in it",
			flags: func(fs *flag.FlagSet) {
				nameFlag(fs)
				fs.BoolVar(&noWait, "no-wait", false, "return at once without waiting for the deletion")
				stringFlagBool(fs, &yes, "yes", "y", "do not ask for confirmation")
			},
			run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
				if err := required("name", name); err != nil {
					return err
				}
				if err := confirm(e, yes, fmt.Sprintf("Delete resource group %q and everything in it?", name)); err != nil {
					return err
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				r, err := c.DeleteGroup(ctx, name, !noWait)
				if err != nil {
					return err
				}
				if noWait {
					fmt.Fprintf(e.Stdout, "%s\n", r.Header.Get("Location"))
					return nil
				}
				fmt.Fprintf(e.Stderr, "Deleted resource group %s.\n", name)
				return nil
			}},
	}}
}

func stringFlagBool(fs *flag.FlagSet, p *bool, long, short, usage string) {
	fs.BoolVar(p, long, false, usage)
	fs.BoolVar(p, short, false, "short for --"+long)
}
