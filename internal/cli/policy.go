package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"coffer/internal/client"
)

var policyCols = []column[client.Policy]{
	col("Name", func(p client.Policy) string { return p.Name }),
	col("Schedule", func(p client.Policy) string { return policySchedule(p) }),
}

// policySchedule extracts the repeating interval of a policy for tables.
func policySchedule(p client.Policy) string {
	var props struct {
		PolicyRules []struct {
			Trigger *struct {
				Schedule struct {
					RepeatingTimeIntervals []string `json:"repeatingTimeIntervals"`
					TimeZone               string   `json:"timeZone"`
				} `json:"schedule"`
			} `json:"trigger"`
		} `json:"policyRules"`
	}
	if json.Unmarshal(p.Properties, &props) != nil {
		return ""
	}
	for _, r := range props.PolicyRules {
		if r.Trigger != nil && len(r.Trigger.Schedule.RepeatingTimeIntervals) > 0 {
			s := r.Trigger.Schedule.RepeatingTimeIntervals[0]
			if tz := r.Trigger.Schedule.TimeZone; tz != "" {
				s += " " + tz
			}
			return s
		}
	}
	return ""
}

func policyCommand() *command {
	var f dpFlags
	var file, at, date, tz, retention, daily, weekly string
	var hourly int
	var yes bool
	return &command{name: "policy", short: "Manage backup policies", sub: []*command{
		{name: "template", short: "Print Azure's default disk backup policy template",
			run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
				return printJSON(e, client.DefaultPolicyTemplate())
			}},
		{name: "create", short: "Create a policy from --policy FILE, or from --hourly/--time/--retention…",
			flags: func(fs *flag.FlagSet) {
				f.bind(fs, "policy name")
				fs.StringVar(&file, "policy", "", "policy JSON file (the template's shape); - for stdin")
				fs.IntVar(&hourly, "hourly", 0, "back up every N hours (1, 2, 4, 6, 8 or 12); 0: daily")
				fs.StringVar(&at, "time", "", "start time of day, HH:MM (default 00:00)")
				fs.StringVar(&date, "start-date", "", "first day of the schedule, YYYY-MM-DD: nothing is due before it (default 2020-01-01)")
				fs.StringVar(&tz, "timezone", "UTC", "time zone (IANA or Windows name)")
				fs.StringVar(&retention, "retention", "7d", "retention of the Default tag (e.g. 7d, 12w, 6m)")
				fs.StringVar(&daily, "daily-retention", "", "retention of the first backup of each day (Daily tag)")
				fs.StringVar(&weekly, "weekly-retention", "", "retention of the first backup of each week (Weekly tag)")
			},
			run: func(ctx context.Context, e *Env, fs *flag.FlagSet) error {
				if err := f.needName(); err != nil {
					return err
				}
				var props any
				if file != "" {
					var b []byte
					var err error
					if file == "-" {
						b, err = io.ReadAll(e.Stdin)
					} else {
						b, err = os.ReadFile(file)
					}
					if err != nil {
						return fmt.Errorf("read policy: %w", err)
					}
					var raw map[string]json.RawMessage
					if err := json.Unmarshal(b, &raw); err != nil {
						return usagef("the policy file is not JSON: %v", err)
					}
					if p, ok := raw["properties"]; ok {
						props = p
					} else {
						props = json.RawMessage(b)
					}
				} else {
					var day time.Time
					if date != "" {
						var err error
						if day, err = time.Parse(time.DateOnly, date); err != nil {
							return usagef("--start-date %q is not a date like 2026-01-31", date)
						}
					}
					p, err := client.BuildDiskPolicy(client.DiskPolicyOptions{Hours: hourly, Time: at, Date: day, TimeZone: tz,
						Retention: retention, DailyRetention: daily, WeeklyRetention: weekly})
					if err != nil {
						return err
					}
					props = p
				}
				c, err := e.Client()
				if err != nil {
					return err
				}
				p, err := c.PutPolicy(ctx, f.group, f.vault, f.name, props)
				if err != nil {
					return err
				}
				return printOne(e, p, policyCols...)
			}},
		{name: "show", short: "Show a policy",
			flags: func(fs *flag.FlagSet) { f.bind(fs, "policy name") },
			run: runShow(f.needName, func(ctx context.Context, c *client.Client) (client.Policy, error) {
				return c.GetPolicy(ctx, f.group, f.vault, f.name)
			}, policyCols)},
		{name: "list", short: "List a vault's policies",
			flags: func(fs *flag.FlagSet) { f.bind(fs, "") },
			run: runList(f.needVault, func(ctx context.Context, c *client.Client) ([]client.Policy, error) {
				return c.ListPolicies(ctx, f.group, f.vault)
			}, policyCols)},
		{name: "delete", short: "Delete a policy (refused while an instance uses it)",
			flags: func(fs *flag.FlagSet) {
				f.bind(fs, "policy name")
				boolFlag(fs, &yes, "yes", "y", "do not ask for confirmation")
			},
			run: runConfirmedDelete("backup policy", &f.name, &yes, f.needName, func(ctx context.Context, c *client.Client) error {
				return c.DeletePolicy(ctx, f.group, f.vault, f.name)
			})},
	}}
}
