package cli

import (
	"context"
	"flag"
	"fmt"
	"os"

	"coffer/internal/client"
)

func loginCommand() *command {
	var endpoint, clientID, secret, tenant, token, caFile string
	var days int
	return &command{name: "login", short: "Sign in and save a profile for later commands",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&endpoint, "endpoint", "", "server URL, e.g. https://host:7480")
			stringFlag(fs, &clientID, "client-id", "u", "", "service principal client ID")
			stringFlag(fs, &secret, "client-secret", "p", "", "service principal client secret")
			stringFlag(fs, &tenant, "tenant", "t", "", "tenant ID")
			fs.StringVar(&token, "token", "", "use this API token instead of a client secret")
			fs.StringVar(&caFile, "ca-file", "", "PEM file of the server's CA (for --tls servers)")
			fs.IntVar(&days, "days", 0, "lifetime in days of the API token the profile keeps (default: the server's maximum)")
		},
		run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
			if err := required("endpoint", endpoint); err != nil {
				return err
			}
			cfg := client.Config{Endpoint: endpoint, Subscription: e.subscription, TenantID: tenant}
			if caFile != "" {
				b, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("read --ca-file: %w", err)
				}
				cfg.CACertificate = string(b)
			}
			c, err := client.New(cfg)
			if err != nil {
				return err
			}
			switch {
			case token != "":
				c.Token = token
			case clientID != "" && secret != "":
				if tenant == "" {
					return usagef("--tenant is required with --client-id")
				}
				t, err := mintAPIToken(ctx, c, tenant, clientID, secret, days, "coffer login")
				if err != nil {
					return err
				}
				c.Token = t.Token
			default:
				return usagef("give --token, or --client-id, --client-secret and --tenant")
			}
			self, err := c.Self(ctx)
			if err != nil {
				return err
			}
			if c.Subscription == "" {
				subs, err := c.ListSubscriptions(ctx)
				if err != nil {
					return err
				}
				if len(subs) > 0 {
					c.Subscription = subs[0].SubscriptionID
				}
			}
			c.Config.Token, c.Config.TenantID = c.Token, self.TenantID
			path, err := client.SaveProfile(c.Config)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stderr, "Logged in to %s as %s (%s); subscription %s. Profile: %s\n",
				endpoint, self.DisplayName, self.PrincipalID, c.Subscription, path)
			return nil
		}}
}
