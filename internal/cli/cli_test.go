package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"coffer/internal/cli"
	"coffer/internal/e2e"
)

type run struct {
	code           int
	stdout, stderr string
}

func coffer(t *testing.T, args ...string) run {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), args, &cli.Env{Stdout: &out, Stderr: &errb, Stdin: strings.NewReader("")})
	return run{code, out.String(), errb.String()}
}

// startServer starts a server and points the CLI at it with the admin's
// token (through the environment, with no profile and no data dir).
func startServer(t *testing.T) *e2e.Env {
	t.Helper()
	env := e2e.Start(t, e2e.Options{})
	env.UseCLI(t)
	return env
}

func TestCLIFlow(t *testing.T) {
	env := startServer(t)

	r := coffer(t, "group", "create", "-n", "cli-rg", "-l", "local", "--tags", "team=storage")
	if r.code != 0 || !strings.Contains(r.stdout, `"name": "cli-rg"`) {
		t.Fatalf("group create: %+v", r)
	}
	r = coffer(t, "group", "list", "-o", "table")
	if r.code != 0 || !regexp.MustCompile(`cli-rg\s+local\s+Succeeded\s+team=storage`).MatchString(r.stdout) {
		t.Fatalf("group list table: %+v", r)
	}
	r = coffer(t, "group", "list", "-o", "tsv")
	if r.code != 0 || r.stdout != "cli-rg\tlocal\tSucceeded\tteam=storage\n" {
		t.Fatalf("group list tsv: %q", r.stdout)
	}
	r = coffer(t, "group", "show", "-n", "missing")
	if r.code != cli.ExitNotFound || !strings.Contains(r.stderr, "(ResourceGroupNotFound) Resource group 'missing' could not be found.") {
		t.Fatalf("show missing: %+v", r)
	}
	r = coffer(t, "group", "create", "-n", "x", "-l", "moon")
	if r.code != cli.ExitError || !strings.Contains(r.stderr, "LocationNotAvailableForResourceGroup") {
		t.Fatalf("bad location: %+v", r)
	}
	r = coffer(t, "group", "create", "-n", "x")
	if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "--location is required") {
		t.Fatalf("missing flag: %+v", r)
	}
	r = coffer(t, "group", "frobnicate")
	if r.code != cli.ExitUsage {
		t.Fatalf("unknown command: %+v", r)
	}

	// A service principal, a Reader role on the group, and its own login.
	r = coffer(t, "principal", "create", "--display-name", "ci-bot", "-o", "json")
	if r.code != 0 {
		t.Fatalf("principal create: %+v", r)
	}
	var sp struct{ PrincipalID, ClientID, ClientSecret, TenantID string }
	if err := json.Unmarshal([]byte(r.stdout), &sp); err != nil || sp.ClientSecret == "" {
		t.Fatalf("principal create output: %v %q", err, r.stdout)
	}
	r = coffer(t, "role", "assignment", "create", "--assignee", sp.PrincipalID, "--role", "Reader", "-g", "cli-rg")
	if r.code != 0 {
		t.Fatalf("assign: %+v", r)
	}
	r = coffer(t, "role", "assignment", "create", "--assignee", sp.PrincipalID, "--role", "Reader", "-g", "cli-rg")
	if r.code != cli.ExitError || !strings.Contains(r.stderr, "(RoleAssignmentExists)") {
		t.Fatalf("duplicate assign: %+v", r)
	}
	r = coffer(t, "role", "assignment", "list", "-g", "cli-rg", "--assignee", sp.PrincipalID, "-o", "tsv")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 1 || !strings.Contains(r.stdout, "acdd72a7-3385-48ef-bd42-f606fba81ae7") {
		t.Fatalf("assignment list: %+v", r)
	}
	r = coffer(t, "role", "definition", "list", "--name", "Disk Backup Reader", "-o", "tsv")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Disk Backup Reader\t3e5e47e6-65f7-47ef-90b5-e5dd4d455f24\tBuiltInRole") {
		t.Fatalf("definition list: %+v", r)
	}

	// A second subscription through a Microsoft.Subscription alias: its
	// creator is Owner and can create groups in it at once.
	r = coffer(t, "subscription", "create", "-n", "team-b", "--display-name", "Team B", "-o", "json")
	var sub struct{ SubscriptionID, DisplayName string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sub) != nil || sub.DisplayName != "Team B" {
		t.Fatalf("subscription create: %+v", r)
	}
	r = coffer(t, "group", "create", "-n", "b-rg", "-l", "local", "--subscription", sub.SubscriptionID)
	if r.code != 0 {
		t.Fatalf("group in the new subscription: %+v", r)
	}
	r = coffer(t, "subscription", "list", "-o", "tsv")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, sub.SubscriptionID+"\tTeam B\tEnabled") {
		t.Fatalf("subscription list: %+v", r)
	}

	os.Unsetenv("COFFER_TOKEN")
	os.Unsetenv("COFFER_ENDPOINT")
	r = coffer(t, "login", "--endpoint", env.Endpoint, "-u", sp.ClientID, "-p", sp.ClientSecret, "--tenant", sp.TenantID,
		"--subscription", env.Admin.SubscriptionID)
	if r.code != 0 || !strings.Contains(r.stderr, "Logged in") {
		t.Fatalf("login: %+v", r)
	}
	r = coffer(t, "group", "show", "-n", "cli-rg", "-o", "tsv")
	if r.code != 0 {
		t.Fatalf("reader show via profile: %+v", r)
	}
	r = coffer(t, "subscription", "create", "-n", "sneaky")
	if r.code != cli.ExitAuth {
		t.Fatalf("non-admin creating a subscription: %+v", r)
	}
	r = coffer(t, "group", "create", "-n", "cli-rg", "-l", "local")
	if r.code != cli.ExitAuth || !strings.Contains(r.stderr, "(AuthorizationFailed)") {
		t.Fatalf("reader write: %+v", r)
	}
	t.Setenv("COFFER_TOKEN", env.Admin.Token)
	r = coffer(t, "group", "delete", "-n", "cli-rg", "--yes")
	if r.code != 0 {
		t.Fatalf("delete: %+v", r)
	}
	r = coffer(t, "group", "show", "-n", "cli-rg")
	if r.code != cli.ExitNotFound {
		t.Fatalf("show after delete: %+v", r)
	}
}

// TestCLITrustsTLSThroughAdminFile runs the CLI with nothing but the data
// directory: it finds admin.json and trusts the server's generated CA.
func TestCLITrustsTLSThroughAdminFile(t *testing.T) {
	env := e2e.Start(t, e2e.Options{TLS: true})
	t.Setenv("COFFER_CONFIG", filepath.Join(t.TempDir(), "none.json"))
	t.Setenv("COFFER_DATA", env.DataDir)
	for _, k := range []string{"COFFER_ENDPOINT", "COFFER_TOKEN", "COFFER_SUBSCRIPTION"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	if !strings.HasPrefix(env.Endpoint, "https://") {
		t.Fatalf("endpoint %s", env.Endpoint)
	}
	r := coffer(t, "group", "create", "-n", "tls-rg", "-l", "local", "-o", "tsv")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "tls-rg\tlocal") {
		t.Fatalf("CLI over TLS via admin.json: %+v", r)
	}
}

// TestServeCommand runs `coffer serve` in-process on a free port and stops
// it the way SIGINT does (its context ends).
func TestServeCommand(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int)
	go func() {
		done <- cli.Main(ctx, []string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--nbd-listen", "127.0.0.1:0"}, &cli.Env{Stdout: &out, Stderr: &errb})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "Coffer is serving") {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s %s", out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out.String(), filepath.Join(dir, "admin.json")) {
		t.Errorf("start message does not say where admin.json is: %q", out.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exit %d: %s", code, errb.String())
	}
	var admin map[string]string
	b, _ := os.ReadFile(filepath.Join(dir, "admin.json"))
	json.Unmarshal(b, &admin)
	for _, k := range []string{"endpoint", "tenantId", "subscriptionId", "principalId", "clientId", "clientSecret", "token"} {
		if admin[k] == "" {
			t.Errorf("admin.json lacks %s", k)
		}
	}
	// Plain HTTP on a non-loopback address is refused without --insecure-http.
	var errb2 bytes.Buffer
	code := cli.Main(context.Background(), []string{"serve", "--data", t.TempDir(), "--listen", "0.0.0.0:0"}, &cli.Env{Stdout: &bytes.Buffer{}, Stderr: &errb2})
	if code == 0 || !strings.Contains(errb2.String(), "refusing to serve plain HTTP") {
		t.Fatalf("non-loopback without TLS: %d %s", code, errb2.String())
	}
	// So is NBD without TLS on a non-loopback address, without --insecure-nbd.
	errb2.Reset()
	code = cli.Main(context.Background(), []string{"serve", "--data", t.TempDir(), "--nbd-listen", "0.0.0.0:0"}, &cli.Env{Stdout: &bytes.Buffer{}, Stderr: &errb2})
	if code == 0 || !strings.Contains(errb2.String(), "refusing to serve NBD without TLS") {
		t.Fatalf("NBD on a non-loopback address without TLS: %d %s", code, errb2.String())
	}
}

// TestCLITokens drives `coffer token create|list|revoke`: creating needs
// the client's credentials and respects the server's maximum lifetime, a
// listing never shows a token, a non-admin cannot list another's tokens,
// and a revoked token stops working.
func TestCLITokens(t *testing.T) {
	a := startServer(t).Admin

	r := coffer(t, "token", "create", "--days", "7")
	if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "fresh credentials") {
		t.Fatalf("create without credentials: %+v", r)
	}
	r = coffer(t, "token", "create", "-u", a.ClientID, "-p", a.ClientSecret, "--tenant", a.TenantID, "--days", "365")
	if r.code != cli.ExitError || !strings.Contains(r.stderr, "(InvalidExpiry)") || !strings.Contains(r.stderr, "maximum API-token lifetime of 90 days") {
		t.Fatalf("create above the maximum: %+v", r)
	}
	r = coffer(t, "token", "create", "-u", a.ClientID, "-p", a.ClientSecret, "--tenant", a.TenantID, "--days", "7", "--description", "ci", "-o", "json")
	var tok struct{ ID, Token, ExpiresOn, Description string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &tok) != nil || tok.Token == "" || tok.Description != "ci" {
		t.Fatalf("create: %+v", r)
	}
	if exp, err := time.Parse(time.RFC3339, tok.ExpiresOn); err != nil || time.Until(exp) > 7*24*time.Hour || time.Until(exp) < 6*24*time.Hour {
		t.Fatalf("7-day token expires %s", tok.ExpiresOn)
	}

	r = coffer(t, "token", "list", "-o", "tsv")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, tok.ID+"\t"+a.PrincipalID+"\tci\t") ||
		!strings.Contains(r.stdout, "\tadmin.json\t") || strings.Contains(r.stdout, tok.Token) {
		t.Fatalf("token list: %+v", r)
	}

	// A non-admin sees only its own.
	r = coffer(t, "principal", "create", "--display-name", "ci-bot", "-o", "json")
	var sp struct{ PrincipalID, ClientID, ClientSecret string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sp) != nil {
		t.Fatalf("principal create: %+v", r)
	}
	r = coffer(t, "token", "create", "-u", sp.ClientID, "-p", sp.ClientSecret, "--tenant", a.TenantID, "-o", "json")
	var spTok struct{ ID, Token string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &spTok) != nil {
		t.Fatalf("sp token create: %+v", r)
	}
	t.Setenv("COFFER_TOKEN", spTok.Token)
	for _, args := range [][]string{{"--principal", a.PrincipalID}, {"--all"}} {
		if r = coffer(t, append([]string{"token", "list"}, args...)...); r.code != cli.ExitAuth || !strings.Contains(r.stderr, "(AuthorizationFailed)") {
			t.Fatalf("non-admin token list %v: %+v", args, r)
		}
	}
	if r = coffer(t, "token", "revoke", "--id", tok.ID); r.code != cli.ExitAuth {
		t.Fatalf("non-admin revoking the admin's token: %+v", r)
	}
	r = coffer(t, "token", "list", "-o", "tsv")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 1 || !strings.HasPrefix(r.stdout, spTok.ID+"\t"+sp.PrincipalID) {
		t.Fatalf("sp's own list: %+v", r)
	}

	// The admin revokes the 7-day token; it stops working.
	t.Setenv("COFFER_TOKEN", a.Token)
	if r = coffer(t, "token", "revoke", "--id", tok.ID); r.code != 0 {
		t.Fatalf("revoke: %+v", r)
	}
	t.Setenv("COFFER_TOKEN", tok.Token)
	if r = coffer(t, "group", "list"); r.code != cli.ExitAuth || !strings.Contains(r.stderr, "revoked") {
		t.Fatalf("revoked token: %+v", r)
	}
	t.Setenv("COFFER_TOKEN", a.Token)
	if r = coffer(t, "token", "list", "--all", "-o", "tsv"); r.code != 0 || !strings.Contains(r.stdout, tok.ID+"\t"+a.PrincipalID+"\tci\t") ||
		!strings.Contains(r.stdout, "\ttrue\n") || !strings.Contains(r.stdout, spTok.ID) {
		t.Fatalf("admin list --all: %+v", r)
	}
}

// TestServeClockOffset: a COFFER_CLOCK_OFFSET that is not a duration, or is
// negative, is a usage error and nothing is created.
func TestServeClockOffset(t *testing.T) {
	for _, v := range []string{"yesterday", "-1h"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv(cli.ClockOffsetEnv, v)
			dir := filepath.Join(t.TempDir(), "data")
			r := coffer(t, "serve", "--data", dir, "--listen", "127.0.0.1:0", "--nbd-listen", "127.0.0.1:0")
			if r.code != cli.ExitUsage || !strings.Contains(r.stderr, cli.ClockOffsetEnv) {
				t.Fatalf("exit %d, stderr %q; want %d naming %s", r.code, r.stderr, cli.ExitUsage, cli.ClockOffsetEnv)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("the data dir was created (%v)", err)
			}
		})
	}
}
