package cli

import (
	"context"
	"flag"
	"fmt"
	"strconv"

	"coffer/internal/client"
)

// mintAPIToken exchanges a client ID and secret for an access token and
// creates an API token with it: the server creates API tokens only for
// requests made with fresh credentials, never with another API token. c
// is not changed; the returned token is not yet saved anywhere.
func mintAPIToken(ctx context.Context, c *client.Client, tenant, clientID, secret string, days int, description string) (client.APIToken, error) {
	if tenant == "" {
		tenant = c.TenantID
	}
	if tenant == "" {
		return client.APIToken{}, usagef("--tenant is required with --client-id")
	}
	access, err := c.ClientCredentials(ctx, tenant, clientID, secret)
	if err != nil {
		return client.APIToken{}, err
	}
	fresh := *c
	fresh.Token = access
	return fresh.CreateToken(ctx, days, description)
}

func tokenCommand() *command {
	var clientID, secret, tenant, description, principal, id string
	var days int
	var all bool
	cols := []column[client.APIToken]{
		col("Id", func(t client.APIToken) string { return t.ID }),
		col("Principal", func(t client.APIToken) string { return t.PrincipalID }),
		col("Description", func(t client.APIToken) string { return t.Description }),
		col("Created", func(t client.APIToken) string { return t.CreatedAt }),
		col("Expires", func(t client.APIToken) string { return t.ExpiresOn }),
		col("Revoked", func(t client.APIToken) string { return strconv.FormatBool(t.Revoked) }),
	}
	return &command{name: "token", short: "Create, list and revoke long-lived API tokens", sub: []*command{
		{name: "create", short: "Create an API token for a service principal; prints it once",
			flags: func(fs *flag.FlagSet) {
				stringFlag(fs, &clientID, "client-id", "u", "", "service principal client ID")
				stringFlag(fs, &secret, "client-secret", "p", "", "service principal client secret")
				stringFlag(fs, &tenant, "tenant", "t", "", "tenant ID (default: the configured one)")
				fs.IntVar(&days, "days", 0, "lifetime in days (default: the server's maximum)")
				fs.StringVar(&description, "description", "", "what the token is for")
			},
			run: runWithClient(func() error {
				if err := required("client-id", clientID, "client-secret", secret); err != nil {
					return usagef("give --client-id and --client-secret: an API token is created only with fresh credentials, never with another API token (admin.json holds the admin's as clientId and clientSecret)")
				}
				if days < 0 {
					return usagef("--days must be positive")
				}
				return nil
			}, func(ctx context.Context, e *Env, c *client.Client) error {
				if err := showsSecret(e, "token"); err != nil {
					return err
				}
				t, err := mintAPIToken(ctx, c, tenant, clientID, secret, days, description)
				if err != nil {
					return err
				}
				if e.output != outJSON {
					fmt.Fprintln(e.Stderr, "The token is shown only now; store it safely. Revoke it with `coffer token revoke --id "+t.ID+"`.")
				}
				return printOne(e, t, append(cols, col("Token", func(t client.APIToken) string { return t.Token }))...)
			})},
		{name: "list", short: "List API tokens: your own, a principal's, or (tenant administrator) everyone's",
			flags: func(fs *flag.FlagSet) {
				fs.StringVar(&principal, "principal", "", "list this principal's tokens (yours, or any as tenant administrator)")
				fs.BoolVar(&all, "all", false, "list every principal's tokens (tenant administrator)")
			},
			run: runList(func() error {
				if all && principal != "" {
					return usagef("give --principal or --all, not both")
				}
				return nil
			}, func(ctx context.Context, c *client.Client) ([]client.APIToken, error) {
				switch {
				case all:
					return c.ListAllTokens(ctx)
				case principal != "":
					return c.ListPrincipalTokens(ctx, principal)
				}
				return c.ListTokens(ctx)
			}, cols)},
		{name: "revoke", short: "Revoke an API token (yours, or any as tenant administrator)",
			flags: func(fs *flag.FlagSet) { fs.StringVar(&id, "id", "", "token ID (from token list)") },
			run: runDo(func() error { return required("id", id) }, func(ctx context.Context, c *client.Client) error {
				return c.RevokeToken(ctx, id)
			})},
	}}
}
