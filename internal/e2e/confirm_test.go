package e2e

import (
	"context"
	"strings"
	"testing"

	"coffer/internal/cli"
	"coffer/internal/client"
)

// TestDestructiveCommandsNeedConfirmation: every command that deletes data
// or credentials asks on a terminal and, when standard input is not a
// terminal (a script, a pipe, even one that says "y"), refuses without
// --yes with a usage error that says so, changing nothing; with --yes it
// deletes.
func TestDestructiveCommandsNeedConfirmation(t *testing.T) {
	env := Start(t, Options{})
	ctx := context.Background()
	p := protectForJobs(t, env)
	c := p.c
	if _, err := c.CreateGroup(ctx, "rg-other", "local", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSnapshot(ctx, "rg-disks", "s1", client.SnapshotSpec{Location: "local", Source: p.diskID}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutPolicy(ctx, "rg-vault", "v1", "spare", defaultPolicy()); err != nil {
		t.Fatal(err)
	}
	sp, err := c.CreateServicePrincipal(ctx, "ci")
	if err != nil {
		t.Fatal(err)
	}
	cliAgainst(t, env)
	coffer := func(interactive bool, stdin string, args ...string) (int, string) {
		code, _, stderr := runCLI(stdin, interactive, args...)
		return code, stderr
	}
	exists := map[string]func() error{
		"group":     func() error { _, err := c.GetGroup(ctx, "rg-other"); return err },
		"disk":      func() error { _, err := c.GetDisk(ctx, "rg-disks", "data1"); return err },
		"snapshot":  func() error { _, err := c.GetSnapshot(ctx, "rg-disks", "s1"); return err },
		"instance":  func() error { _, err := c.GetInstance(ctx, "rg-vault", "v1", "data1-bi"); return err },
		"policy":    func() error { _, err := c.GetPolicy(ctx, "rg-vault", "v1", "spare"); return err },
		"vault":     func() error { _, err := c.GetVault(ctx, "rg-vault", "v1"); return err },
		"principal": func() error { return principalExists(c, sp.PrincipalID) },
	}
	commands := []struct {
		what string
		args []string
	}{
		{"group", []string{"group", "delete", "-n", "rg-other"}},
		{"snapshot", []string{"snapshot", "delete", "-g", "rg-disks", "-n", "s1"}},
		{"instance", []string{"instance", "delete", "-g", "rg-vault", "-v", "v1", "-n", "data1-bi"}},
		{"disk", []string{"disk", "delete", "-g", "rg-disks", "-n", "data1"}},
		{"policy", []string{"policy", "delete", "-g", "rg-vault", "-v", "v1", "-n", "spare"}},
		{"vault", []string{"vault", "delete", "-g", "rg-vault", "-n", "v1"}},
		{"principal", []string{"principal", "delete", "--id", sp.PrincipalID}},
	}
	for _, cmd := range commands {
		// Not a terminal: refused even though stdin says yes.
		code, msg := coffer(false, "y\n", cmd.args...)
		if code != cli.ExitUsage || !strings.Contains(msg, "standard input is not a terminal") || !strings.Contains(msg, "--yes") {
			t.Errorf("%s without --yes and without a terminal: exit %d: %s", strings.Join(cmd.args, " "), code, msg)
		}
		if err := exists[cmd.what](); err != nil {
			t.Fatalf("%s gone after a refused delete: %v", cmd.what, err)
		}
		// A terminal that answers no.
		if code, msg := coffer(true, "n\n", cmd.args...); code == 0 || !strings.Contains(msg, "(y/N)") {
			t.Errorf("%s answered no: exit %d: %s", strings.Join(cmd.args, " "), code, msg)
		}
		if err := exists[cmd.what](); err != nil {
			t.Fatalf("%s gone after answering no: %v", cmd.what, err)
		}
		// --yes deletes.
		if code, msg := coffer(false, "", append(cmd.args, "--yes")...); code != 0 {
			t.Fatalf("%s --yes: exit %d: %s", strings.Join(cmd.args, " "), code, msg)
		}
		if err := exists[cmd.what](); client.AsError(err) == nil || client.AsError(err).StatusCode != 404 {
			t.Errorf("%s still there after --yes: %v", cmd.what, err)
		}
	}
}

// principalExists is nil when the principal is listed, a 404 when not, so
// that a principal's existence reads like the other resources'.
func principalExists(c *client.Client, id string) error {
	ps, err := c.ListPrincipals(context.Background())
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.PrincipalID == id {
			return nil
		}
	}
	return &client.Error{StatusCode: 404, Code: "PrincipalNotFound"}
}
