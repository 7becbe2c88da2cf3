package cli

import (
	"context"
	"flag"
	"strings"

	"coffer/internal/client"
)

var rpCols = []column[client.RecoveryPoint]{
	col("Name", func(r client.RecoveryPoint) string { return r.Name }),
	col("Time", func(r client.RecoveryPoint) string { return r.Properties.RecoveryPointTime }),
	col("Tag", func(r client.RecoveryPoint) string { return r.Properties.RetentionTagName }),
	col("Expiry", func(r client.RecoveryPoint) string { return r.Properties.ExpiryTime }),
	col("Policy", func(r client.RecoveryPoint) string { return r.Properties.PolicyName }),
}

func rpCommand() *command {
	var f dpFlags
	var start, end string
	return &command{name: "rp", short: "Recovery points", sub: []*command{
		{name: "list", short: "List a backup instance's recovery points",
			flags: func(fs *flag.FlagSet) {
				f.bindInstance(fs, "backup instance name")
				fs.StringVar(&start, "start", "", "only points at or after this time (RFC 3339)")
				fs.StringVar(&end, "end", "", "only points at or before this time (RFC 3339)")
			},
			run: runList(f.needInstance,
				func(ctx context.Context, c *client.Client) ([]client.RecoveryPoint, error) {
					var clauses []string
					if start != "" {
						clauses = append(clauses, "startDate eq '"+start+"'")
					}
					if end != "" {
						clauses = append(clauses, "endDate eq '"+end+"'")
					}
					return c.ListRecoveryPoints(ctx, f.group, f.vault, f.name, strings.Join(clauses, " and "))
				}, rpCols)},
	}}
}
