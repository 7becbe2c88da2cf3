package e2e

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"coffer/internal/cli"
	"coffer/internal/client"
)

// cliAgainst points the in-process CLI at env for the rest of the test: a
// profile with its endpoint, CA, the admin's token and subscription, and no
// COFFER_* variable to override it.
func cliAgainst(t *testing.T, env *Env) {
	t.Helper()
	t.Setenv("COFFER_CONFIG", filepath.Join(t.TempDir(), "profile.json"))
	for _, v := range []string{"COFFER_ENDPOINT", "COFFER_TOKEN", "COFFER_SUBSCRIPTION"} {
		t.Setenv(v, "")
	}
	if _, err := client.SaveProfile(client.Config{Endpoint: env.Endpoint, Token: env.Admin.Token, Subscription: env.Admin.SubscriptionID,
		CACertificate: env.Admin.CACertificate}); err != nil {
		t.Fatal(err)
	}
}

// runCLI runs `coffer args...` in-process with stdin (a terminal when
// interactive) and returns its exit code, standard output and error.
func runCLI(stdin string, interactive bool, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), args, &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Interactive: interactive})
	return code, out.String(), errb.String()
}
