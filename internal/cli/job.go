package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"coffer/internal/client"
)

var jobCols = []column[client.Job]{
	col("Name", func(j client.Job) string { return j.Name }),
	col("Operation", func(j client.Job) string { return j.Properties.Operation }),
	col("Status", func(j client.Job) string { return j.Properties.Status }),
	col("Instance", func(j client.Job) string { return j.Properties.BackupInstanceName }),
	col("StartTime", func(j client.Job) string { return j.Properties.StartTime }),
	col("Duration", func(j client.Job) string { return j.Properties.Duration }),
	col("Error", func(j client.Job) string {
		if len(j.Properties.ErrorDetails) > 0 {
			return j.Properties.ErrorDetails[0].Code
		}
		return ""
	}),
}

var clientRestoreRequest = client.RestoreRequest

func progressOf(j client.Job) string {
	if j.Properties.ExtendedInfo != nil {
		if p := j.Properties.ExtendedInfo.AdditionalDetails["Progress"]; p != "" {
			return p
		}
	}
	if j.Properties.Status == "Completed" {
		return "100%"
	}
	return "0%"
}

// followJob prints a job's progress until it ends (a bar on a terminal,
// lines otherwise), then the job; a job that does not complete is an
// error. It polls at the client's Poller pace, so it returns soon after
// the job ends.
func followJob(ctx context.Context, e *Env, c *client.Client, rg, vault, id string, noWait bool) error {
	if noWait {
		return printValue(e, id)
	}
	last := ""
	j, err := c.WaitJob(ctx, rg, vault, id, func(j client.Job) {
		pct := progressOf(j)
		if e.Terminal {
			n := 0
			fmt.Sscanf(pct, "%d%%", &n)
			bar := strings.Repeat("#", n/5) + strings.Repeat(".", 20-n/5)
			fmt.Fprintf(e.Stderr, "\r[%s] %4s %s", bar, pct, j.Properties.Status)
			return
		}
		if line := fmt.Sprintf("%s %s: %s %s", j.Properties.Operation, j.Name, j.Properties.Status, pct); line != last {
			fmt.Fprintln(e.Stderr, line)
			last = line
		}
	})
	if e.Terminal {
		fmt.Fprintln(e.Stderr) // end the bar's line
	}
	if err != nil {
		return err
	}
	if err := printOne(e, j, jobCols...); err != nil {
		return err
	}
	if j.Properties.Status != "Completed" {
		if len(j.Properties.ErrorDetails) > 0 {
			return &client.Error{Code: j.Properties.ErrorDetails[0].Code, Message: j.Properties.ErrorDetails[0].Message}
		}
		return fmt.Errorf("the job %s", j.Properties.Status)
	}
	return nil
}

func jobCommand() *command {
	var f dpFlags
	var id, status, operation string
	show := func(name, short string, follow bool) *command {
		return &command{name: name, short: short,
			flags: func(fs *flag.FlagSet) {
				f.bind(fs, "")
				fs.StringVar(&id, "id", "", "job name or ID")
			},
			run: runWithClient(func() error { return required("resource-group", f.group, "vault-name", f.vault, "id", id) },
				func(ctx context.Context, e *Env, c *client.Client) error {
					if follow {
						return followJob(ctx, e, c, f.group, f.vault, id, false)
					}
					j, err := c.GetJob(ctx, f.group, f.vault, id)
					if err != nil {
						return err
					}
					return printOne(e, j, jobCols...)
				})}
	}
	return &command{name: "job", short: "Backup, restore, retention and validation jobs", sub: []*command{
		{name: "list", short: "List a vault's jobs, newest first",
			flags: func(fs *flag.FlagSet) {
				f.bind(fs, "")
				fs.StringVar(&status, "status", "", "InProgress, Completed, Failed or Cancelled")
				fs.StringVar(&operation, "operation", "", "Backup, OnDemandBackup, ScheduledBackup, Restore, Retention, …")
			},
			run: runList(f.needVault, func(ctx context.Context, c *client.Client) ([]client.Job, error) {
				return c.ListJobs(ctx, f.group, f.vault, client.JobsFilter(status, operation))
			}, jobCols)},
		show("show", "Show a job", false),
		show("watch", "Follow a job until it ends", true),
		{name: "cancel", short: "Cancel a backup or restore in progress (it stops and removes what it made)",
			flags: func(fs *flag.FlagSet) {
				f.bind(fs, "")
				fs.StringVar(&id, "id", "", "job name or ID")
			},
			run: runWithClient(func() error { return required("resource-group", f.group, "vault-name", f.vault, "id", id) },
				func(ctx context.Context, e *Env, c *client.Client) error {
					j, err := c.CancelJob(ctx, f.group, f.vault, id)
					if err != nil {
						return err
					}
					return printOne(e, j, jobCols...)
				})},
	}}
}
