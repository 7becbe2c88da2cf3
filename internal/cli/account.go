package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"coffer/internal/client"
)

// The CLI acts with one identity at a time, found in this order (see
// client.LoadConfig): the COFFER_* environment, the profile `coffer login`
// writes, admin.json. `coffer account show` says which, and `coffer
// logout` removes the profile.

func loginCommand() *command {
	var endpoint, clientID, secret, tenant, token, caFile string
	var days int
	return &command{name: "login", short: "Sign in and save a profile that later commands act with, until coffer logout",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&endpoint, "endpoint", "", "server URL, e.g. https://host:7480 (default: the current one, see coffer account show)")
			stringFlag(fs, &clientID, "client-id", "u", "", "service principal client ID")
			stringFlag(fs, &secret, "client-secret", "p", "", "service principal client secret")
			stringFlag(fs, &tenant, "tenant", "t", "", "tenant ID (default: the current one, on the same server)")
			fs.StringVar(&token, "token", "", "use this API token instead of a client secret")
			fs.StringVar(&caFile, "ca-file", "", "PEM file of the server's CA, for --tls servers (default: the current one, on the same server)")
			fs.IntVar(&days, "days", 0, "lifetime in days of the API token the profile keeps (default: the server's maximum)")
		},
		run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
			switch {
			case token != "" && (clientID != "" || secret != ""):
				return usagef("give --token, or --client-id and --client-secret, not both")
			case token == "" && (clientID == "" || secret == ""):
				return usagef("give --client-id and --client-secret (or --token)")
			}
			cur, err := client.LoadConfig()
			if err != nil && !errors.Is(err, client.ErrNoConfig) {
				return err
			}
			cfg := client.Config{Endpoint: endpoint, TenantID: tenant}
			if cfg.Endpoint == "" {
				if cur.Endpoint == "" {
					return usagef("--endpoint is required: no configuration names a server")
				}
				cfg.Endpoint = cur.Endpoint
			}
			if sameEndpoint(cfg.Endpoint, cur.Endpoint) {
				cfg.CACertificate = cur.CACertificate
				if cfg.TenantID == "" {
					cfg.TenantID = cur.TenantID
				}
			} else {
				cur = client.Config{} // nothing of another server's carries over
			}
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
			if token != "" {
				c.Token = token
			} else {
				if c.TenantID == "" {
					return usagef("--tenant is required with --client-id")
				}
				t, err := mintAPIToken(ctx, c, c.TenantID, clientID, secret, days, "coffer login")
				if err != nil {
					return err
				}
				c.Token, c.TokenID = t.Token, t.ID
			}
			self, err := c.Self(ctx)
			if err != nil {
				return err
			}
			c.TenantID = self.TenantID
			if c.Subscription, err = loginSubscription(ctx, c, e.subscription, cur.Subscription); err != nil {
				return err
			}
			old, oldErr := client.LoadProfile()
			path, err := client.SaveProfile(c.Config)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stderr, "Logged in to %s as %s (principal %s), subscription %s. Profile: %s\n",
				c.Endpoint, self.DisplayName, self.PrincipalID, orNone(c.Subscription), path)
			fmt.Fprintln(e.Stderr, "Commands now act as "+self.DisplayName+": the profile comes before admin.json. "+
				"`coffer account show` says who you are; `coffer logout` ends the profile.")
			for _, v := range []string{client.EnvEndpoint, client.EnvToken, client.EnvSubscription} {
				if os.Getenv(v) != "" {
					fmt.Fprintf(e.Stderr, "Note: %s is set, and overrides the profile's setting.\n", v)
				}
			}
			if oldErr == nil && old.TokenID != "" {
				// The profile replaced holds a token login made: end it.
				if err := revokeOwn(ctx, old); err != nil {
					fmt.Fprintf(e.Stderr, "WARNING: the previous profile's API token %s could not be revoked (%v); revoke it with `coffer token revoke --id %s`.\n", old.TokenID, err, old.TokenID)
				}
			}
			return nil
		}}
}

// loginSubscription picks the subscription a new profile keeps: the one
// given with --subscription; else the current one (on the same server) if
// the new identity sees it or sees none (roles below a subscription do not
// show it in the list); else the first the new identity sees.
func loginSubscription(ctx context.Context, c *client.Client, flagged, current string) (string, error) {
	if flagged != "" {
		return flagged, nil
	}
	subs, err := c.ListSubscriptions(ctx)
	if err != nil {
		return "", err
	}
	for _, s := range subs {
		if strings.EqualFold(s.SubscriptionID, current) {
			return s.SubscriptionID, nil
		}
	}
	if len(subs) == 0 {
		return current, nil
	}
	return subs[0].SubscriptionID, nil
}

func sameEndpoint(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/"))
}

func orNone(s string) string {
	if s == "" {
		return "(none: pass --subscription)"
	}
	return s
}

// revokeOwn revokes the API token that login made for profile p, with that
// token. A token the server no longer accepts (revoked, expired, unknown)
// works nowhere already.
func revokeOwn(ctx context.Context, p client.Config) error {
	c, err := client.New(p)
	if err != nil {
		return err
	}
	err = c.RevokeToken(ctx, p.TokenID)
	if ce := client.AsError(err); ce != nil && (ce.StatusCode == 401 || ce.StatusCode == 404) {
		return nil
	}
	return err
}

func logoutCommand() *command {
	return &command{name: "logout", short: "End the login profile: revoke its API token and remove it; commands return to admin.json",
		run: func(ctx context.Context, e *Env, _ *flag.FlagSet) error {
			p, err := client.LoadProfile()
			switch {
			case errors.Is(err, fs.ErrNotExist):
				fmt.Fprintf(e.Stderr, "Not logged in: there is no profile at %s.\n", client.ProfilePath())
				return describeNow(e)
			case err != nil:
				fmt.Fprintf(e.Stderr, "WARNING: %v; removing it.\n", err)
			}
			var revokeErr error
			if p.TokenID != "" {
				revokeErr = revokeOwn(ctx, p)
			}
			if _, err := client.RemoveProfile(); err != nil {
				return err
			}
			switch {
			case p.TokenID == "":
				fmt.Fprintf(e.Stderr, "Logged out of %s: removed the profile %s (its token was not made by coffer login, so it was not revoked).\n", p.Endpoint, client.ProfilePath())
			case revokeErr == nil:
				fmt.Fprintf(e.Stderr, "Logged out of %s: revoked the profile's API token %s and removed the profile %s.\n", p.Endpoint, p.TokenID, client.ProfilePath())
			}
			if err := describeNow(e); err != nil {
				return err
			}
			if revokeErr != nil {
				return fmt.Errorf("removed the profile, but its API token %s could not be revoked: %w; revoke it with `coffer token revoke --id %s`", p.TokenID, revokeErr, p.TokenID)
			}
			return nil
		}}
}

// describeNow tells which configuration commands now act with.
func describeNow(e *Env) error {
	c, err := client.LoadConfig()
	switch {
	case errors.Is(err, client.ErrNoConfig):
		fmt.Fprintln(e.Stderr, "Commands now have no configuration: run coffer login, set COFFER_ENDPOINT and COFFER_TOKEN, or run from the directory holding coffer-data.")
		return nil
	case err != nil:
		return err
	}
	fmt.Fprintf(e.Stderr, "Commands now act with the credentials of %s, on %s.\n", c.From.Token, c.Endpoint)
	return nil
}

// account is what `coffer account show` prints.
type account struct {
	Endpoint       string         `json:"endpoint"`
	SubscriptionID string         `json:"subscriptionId"`
	TenantID       string         `json:"tenantId"`
	PrincipalID    string         `json:"principalId"`
	DisplayName    string         `json:"displayName"`
	Kind           string         `json:"kind"`
	ClientID       string         `json:"clientId,omitempty"`
	TenantAdmin    bool           `json:"tenantAdmin"`
	TokenExpiresOn string         `json:"tokenExpiresOn,omitempty"`
	Sources        client.Sources `json:"sources"`
}

func accountCommand() *command {
	return &command{name: "account", short: "The identity commands act with", sub: []*command{
		{name: "show", short: "Show who you are, on which server and subscription, and where each came from (environment, profile or admin.json)",
			run: runWithClient(nil, func(ctx context.Context, e *Env, c *client.Client) error {
				a := account{Endpoint: c.Endpoint, SubscriptionID: c.Subscription, TenantID: c.TenantID, Sources: c.From}
				if exp, ok := client.TokenExpiry(c.Token); ok {
					a.TokenExpiresOn = exp.Format("2006-01-02T15:04:05Z")
				}
				self, err := c.Self(ctx)
				if err == nil {
					a.PrincipalID, a.DisplayName, a.Kind, a.ClientID, a.TenantAdmin = self.PrincipalID, self.DisplayName, self.Kind, self.ClientID, self.TenantAdmin
					a.TenantID = self.TenantID
				}
				if perr := printAccount(e, a); perr != nil {
					return perr
				}
				if err != nil {
					return fmt.Errorf("the server does not accept the token of %s: %w", c.From.Token, err)
				}
				return nil
			})},
	}}
}

func printAccount(e *Env, a account) error {
	if e.output == outJSON {
		return printJSON(e, a)
	}
	who := "(the server did not say)"
	if a.PrincipalID != "" {
		who = fmt.Sprintf("%s (%s %s)", a.DisplayName, a.Kind, a.PrincipalID)
	}
	rows := [][2]string{{"Principal", who}}
	if a.TenantAdmin {
		rows = append(rows, [2]string{"TenantAdmin", "yes"})
	}
	rows = append(rows, [2]string{"Tenant", a.TenantID}, [2]string{"Endpoint", a.Endpoint},
		[2]string{"Subscription", orNone(a.SubscriptionID)})
	if a.TokenExpiresOn != "" {
		rows = append(rows, [2]string{"TokenExpires", a.TokenExpiresOn})
	}
	if s := a.Sources; s.Endpoint == s.Token && s.Token == s.Subscription {
		rows = append(rows, [2]string{"From", s.Token.String()})
	} else {
		rows = append(rows, [2]string{"EndpointFrom", s.Endpoint.String()}, [2]string{"TokenFrom", s.Token.String()},
			[2]string{"SubscriptionFrom", s.Subscription.String()})
	}
	return printRows(e, rows)
}
