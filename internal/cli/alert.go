package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"coffer/internal/client"
)

var alertCols = []column[client.Alert]{
	col("ID", func(a client.Alert) string { return a.ID }),
	col("Alert", func(a client.Alert) string { return a.Name }),
	col("Severity", func(a client.Alert) string { return a.Properties.Essentials.Severity }),
	col("State", func(a client.Alert) string { return a.Properties.Essentials.AlertState }),
	col("Condition", func(a client.Alert) string { return a.Properties.Essentials.MonitorCondition }),
	col("Vault", func(a client.Alert) string { return a.Properties.Essentials.TargetResourceName }),
	col("Instance", func(a client.Alert) string { s, _ := a.Properties.Context["backupInstanceName"].(string); return s }),
	col("Started", func(a client.Alert) string { return a.Properties.Essentials.StartDateTime }),
	col("Description", func(a client.Alert) string { return a.Properties.Essentials.Description }),
}

func alertCommand() *command {
	var f dpFlags
	var state, condition, severity, rule, id, comment string
	list := &command{name: "list", short: "List alerts, oldest first (a vault's with -g and -v, a group's with -g, else the subscription's)",
		flags: func(fs *flag.FlagSet) {
			f.bind(fs, "")
			fs.StringVar(&state, "state", "", "New, Acknowledged or Closed")
			fs.StringVar(&condition, "condition", "", "Fired or Resolved")
			fs.StringVar(&severity, "severity", "", "Sev0 … Sev4")
			fs.StringVar(&rule, "rule", "", "BackupFailure, RestoreFailure or RecoveryPointObjectiveMissed")
		},
		run: runList(func() error {
			if f.vault != "" && f.group == "" {
				return usagef("--vault-name needs --resource-group")
			}
			return nil
		}, func(ctx context.Context, c *client.Client) ([]client.Alert, error) {
			scope := ""
			switch {
			case f.vault != "":
				scope = "/subscriptions/" + c.Subscription + "/resourceGroups/" + f.group + "/providers/Microsoft.DataProtection/backupVaults/" + f.vault
			case f.group != "":
				scope = "/subscriptions/" + c.Subscription + "/resourceGroups/" + f.group
			}
			return c.ListAlerts(ctx, scope, client.AlertFilter{State: state, Condition: condition, Severity: severity, Rule: rule})
		}, alertCols)}
	idFlags := func(fs *flag.FlagSet) {
		fs.StringVar(&id, "id", "", "the alert's ID (as alert list shows it), or its name under the subscription")
	}
	change := func(name, short, to string) *command {
		return &command{name: name, short: short,
			flags: func(fs *flag.FlagSet) {
				idFlags(fs)
				fs.StringVar(&comment, "comment", "", "why (kept with the alert)")
			},
			run: runShow(func() error { return required("id", id) }, func(ctx context.Context, c *client.Client) (client.Alert, error) {
				return c.ChangeAlertState(ctx, id, to, comment)
			}, alertCols)}
	}
	return &command{name: "alert", short: "Alerts: failed backups and restores, missed recovery point objectives", sub: []*command{
		list,
		{name: "show", short: "Show an alert", flags: idFlags,
			run: runWithClient(func() error { return required("id", id) }, func(ctx context.Context, e *Env, c *client.Client) error {
				a, err := c.GetAlert(ctx, id)
				if err != nil {
					return err
				}
				if e.output == "json" {
					return printJSON(e, a)
				}
				if err := printOne(e, a, alertCols...); err != nil {
					return err
				}
				return printKV(e, a.Properties.Context)
			})},
		change("ack", "Acknowledge an alert (someone is on it)", "Acknowledged"),
		change("close", "Close an alert", "Closed"),
		change("reopen", "Set an alert back to New", "New"),
	}}
}

var targetCols = []column[client.NotificationTarget]{
	col("Name", func(t client.NotificationTarget) string { return t.Name }),
	col("Kind", func(t client.NotificationTarget) string { return t.Properties.Kind }),
	col("Destination", func(t client.NotificationTarget) string {
		if t.Properties.Kind == "Email" {
			return strings.Join(t.Properties.To, ",") + " via " + t.Properties.SMTPServer
		}
		return t.Properties.URL
	}),
	col("Secret", func(t client.NotificationTarget) string {
		switch {
		case t.Properties.Secret != "":
			return t.Properties.Secret + "  (shown once: give it to the receiver to check signatures)"
		case t.Properties.HasSecret:
			return "set"
		}
		return ""
	}),
	col("LastDelivery", func(t client.NotificationTarget) string {
		d := t.Properties.LastDelivery
		if d == nil {
			return ""
		}
		s := d.Status + " " + d.Time
		if d.Error != "" {
			s += ": " + d.Error
		}
		return s
	}),
}

// readLine reads one line (a secret) from standard input.
func readLine(e *Env) (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := e.Stdin.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				break
			}
			b.WriteByte(buf[0])
		}
		if err != nil {
			break
		}
	}
	s := strings.TrimRight(b.String(), "\r")
	if s == "" {
		return "", usagef("standard input holds no secret")
	}
	return s, nil
}

func notifyCommand() *command {
	var name, webhook, caFile, smtpServer, from, to, user string
	var secretStdin, passwordStdin bool
	need := func() error {
		if err := required("name", name); err != nil {
			return err
		}
		if (webhook == "") == (smtpServer == "") {
			return usagef("give --webhook URL, or --smtp-server with --from and --to")
		}
		if webhook != "" && (from != "" || to != "" || user != "" || passwordStdin) {
			return usagef("--from, --to, --smtp-user and --password-stdin are for email targets")
		}
		if smtpServer != "" && secretStdin {
			return usagef("--secret-stdin is for webhook targets (email takes --password-stdin)")
		}
		return nil
	}
	create := &command{name: "create", short: "Create (or replace) a notification target: a webhook or email recipients (tenant administrators)",
		flags: func(fs *flag.FlagSet) {
			stringFlag(fs, &name, "name", "n", "", "target name")
			fs.StringVar(&webhook, "webhook", "", "webhook URL: alerts are POSTed to it as JSON, signed (X-Coffer-Signature)")
			fs.BoolVar(&secretStdin, "secret-stdin", false, "read the webhook's signing secret from standard input (default: the server makes one and shows it once)")
			fs.StringVar(&smtpServer, "smtp-server", "", "SMTP server host:port for email (STARTTLS required)")
			fs.StringVar(&from, "from", "", "email sender address")
			fs.StringVar(&to, "to", "", "comma-separated email recipients")
			fs.StringVar(&user, "smtp-user", "", "SMTP login")
			fs.BoolVar(&passwordStdin, "password-stdin", false, "read the SMTP password from standard input")
			fs.StringVar(&caFile, "ca-file", "", "PEM file of a CA to trust for the webhook's or the SMTP server's certificate")
		},
		run: runWithClient(need, func(ctx context.Context, e *Env, c *client.Client) error {
			spec := client.NotificationTargetSpec{Kind: "Webhook", URL: webhook}
			if smtpServer != "" {
				spec = client.NotificationTargetSpec{Kind: "Email", SMTPServer: smtpServer, From: from, Username: user}
				for _, t := range strings.Split(to, ",") {
					if t = strings.TrimSpace(t); t != "" {
						spec.To = append(spec.To, t)
					}
				}
			}
			if caFile != "" {
				b, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("--ca-file: %w", err)
				}
				spec.CACertificate = string(b)
			}
			if secretStdin || passwordStdin {
				s, err := readLine(e)
				if err != nil {
					return err
				}
				if secretStdin {
					spec.Secret = s
				} else {
					spec.Password = s
				}
			}
			t, err := c.PutNotificationTarget(ctx, name, spec)
			if err != nil {
				return err
			}
			return printOne(e, t, targetCols...)
		})}
	return &command{name: "notify", short: "Where alerts are delivered (tenant administrators)", sub: []*command{
		{name: "target", short: "Notification targets: webhooks and email", sub: []*command{
			create,
			{name: "list", short: "List notification targets and their latest delivery",
				run: runList(nil, func(ctx context.Context, c *client.Client) ([]client.NotificationTarget, error) {
					return c.ListNotificationTargets(ctx)
				}, targetCols)},
			{name: "delete", short: "Delete a notification target",
				flags: func(fs *flag.FlagSet) { stringFlag(fs, &name, "name", "n", "", "target name") },
				run: runWithClient(func() error { return required("name", name) }, func(ctx context.Context, e *Env, c *client.Client) error {
					existed, err := c.DeleteNotificationTarget(ctx, name)
					if err == nil && !existed {
						fmt.Fprintf(e.Stderr, "no notification target %q\n", name)
					}
					return err
				})},
			{name: "test", short: "Send a test notification to a target now",
				flags: func(fs *flag.FlagSet) { stringFlag(fs, &name, "name", "n", "", "target name") },
				run: runWithClient(func() error { return required("name", name) }, func(ctx context.Context, e *Env, c *client.Client) error {
					r, err := c.TestNotificationTarget(ctx, name)
					if err != nil {
						return err
					}
					if r.Status != "Delivered" {
						return fmt.Errorf("the test notification was not delivered: %s", r.Error)
					}
					fmt.Fprintln(e.Stdout, "Delivered")
					return nil
				})},
		}},
	}}
}
