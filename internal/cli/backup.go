package cli

import (
	"context"
	"flag"

	"coffer/internal/client"
)

func backupCommand() *command {
	var f dpFlags
	var tag, rule string
	var noWait bool
	return &command{name: "backup", short: "On-demand backups", sub: []*command{
		{name: "now", short: "Back up a protected disk now and follow the job",
			flags: func(fs *flag.FlagSet) {
				f.bindInstance(fs, "backup instance name")
				fs.StringVar(&tag, "retention-tag", "Default", "the policy's retention rule, by tag (Default, Daily, Weekly), that decides how long the point is kept")
				alias(fs, "rule", "retention-tag")
				fs.StringVar(&rule, "backup-rule", "", "the policy's backup rule (default: the policy's only one)")
				fs.BoolVar(&noWait, "no-wait", false, "print the job ID and return")
			},
			run: runWithClient(f.needInstance, func(ctx context.Context, e *Env, c *client.Client) error {
				if rule == "" {
					bi, err := c.GetInstance(ctx, f.group, f.vault, f.name)
					if err != nil {
						return err
					}
					if rule, err = backupRuleOf(ctx, c, f.group, f.vault, lastSegment(bi.Properties.PolicyInfo.PolicyID)); err != nil {
						return err
					}
				}
				id, err := c.BackupNow(ctx, f.group, f.vault, f.name, rule, tag)
				if err != nil {
					return err
				}
				return followJob(ctx, e, c, f.group, f.vault, id, noWait)
			})},
	}}
}

// backupRuleOf returns the name of a policy's backup rule.
func backupRuleOf(ctx context.Context, c *client.Client, rg, vault, policy string) (string, error) {
	p, err := c.GetPolicy(ctx, rg, vault, policy)
	if err != nil {
		return "", err
	}
	return p.BackupRule()
}
