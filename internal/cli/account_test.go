package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"coffer/internal/cli"
	"coffer/internal/e2e"
)

// accountJSON is the part of `coffer account show -o json` the tests read.
type accountJSON struct {
	Endpoint       string
	SubscriptionID string
	PrincipalID    string
	DisplayName    string
	TenantAdmin    bool
	Sources        struct {
		Endpoint, Token, Subscription struct{ Kind, Name string }
	}
}

func accountShow(t *testing.T) accountJSON {
	t.Helper()
	r := coffer(t, "account", "show", "-o", "json")
	var a accountJSON
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &a) != nil {
		t.Fatalf("account show: %+v", r)
	}
	return a
}

// TestLoginAccountLogout: the CLI says whom it acts as and where that came
// from (admin.json, the login profile, the environment); login as another
// principal takes the server, tenant and subscription of admin.json when
// not given; logout revokes the profile's token and removes the profile,
// and the CLI is the admin again; a refusal names the credentials used.
func TestLoginAccountLogout(t *testing.T) {
	env := e2e.Start(t, e2e.Options{})
	profile := filepath.Join(t.TempDir(), "profile.json")
	t.Setenv("COFFER_CONFIG", profile)
	t.Setenv("COFFER_DATA", env.DataDir)
	for _, k := range []string{"COFFER_ENDPOINT", "COFFER_TOKEN", "COFFER_SUBSCRIPTION"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	adminFile := filepath.Join(env.DataDir, "admin.json")

	a := accountShow(t)
	if a.PrincipalID != env.Admin.PrincipalID || !a.TenantAdmin || a.Endpoint != env.Endpoint || a.SubscriptionID != env.Admin.SubscriptionID ||
		a.Sources.Token.Kind != "admin.json" || a.Sources.Token.Name != adminFile || a.Sources.Endpoint != a.Sources.Token {
		t.Fatalf("account show with admin.json: %+v", a)
	}
	r := coffer(t, "account", "show", "-o", "table")
	if r.code != 0 || !strings.Contains(r.stdout, "coffer-admin (ServicePrincipal "+env.Admin.PrincipalID+")") ||
		!strings.Contains(r.stdout, "From          admin.json "+adminFile) {
		t.Fatalf("account show table: %+v", r)
	}

	r = coffer(t, "group", "create", "-n", "rg", "-l", "local", "-o", "none")
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("group create -o none: %+v", r)
	}
	r = coffer(t, "principal", "create", "--display-name", "ci-bot", "-o", "json")
	var sp struct{ PrincipalID, ClientID, ClientSecret string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sp) != nil {
		t.Fatalf("principal create: %+v", r)
	}
	if r = coffer(t, "role", "assignment", "create", "--assignee", sp.PrincipalID, "--role", "Reader", "-g", "rg", "-o", "none"); r.code != 0 {
		t.Fatalf("assign: %+v", r)
	}

	// Login as ci-bot with only its client ID and secret: the server, tenant
	// and subscription are admin.json's.
	r = coffer(t, "login", "-u", sp.ClientID, "-p", sp.ClientSecret)
	if r.code != 0 || !strings.Contains(r.stderr, "as ci-bot") || !strings.Contains(r.stderr, "coffer logout") {
		t.Fatalf("login: %+v", r)
	}
	if fi, err := os.Stat(profile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("profile: %v %v", fi, err)
	}
	a = accountShow(t)
	if a.PrincipalID != sp.PrincipalID || a.DisplayName != "ci-bot" || a.TenantAdmin || a.SubscriptionID != env.Admin.SubscriptionID ||
		a.Sources.Token.Kind != "profile" || a.Sources.Token.Name != profile {
		t.Fatalf("account show after login: %+v", a)
	}
	var saved struct{ Token, TokenID string }
	b, _ := os.ReadFile(profile)
	if json.Unmarshal(b, &saved) != nil || saved.Token == "" || saved.TokenID == "" {
		t.Fatalf("profile contents: %s", b)
	}
	// A refusal says whose credentials the command ran with.
	r = coffer(t, "group", "create", "-n", "rg2", "-l", "local")
	if r.code != cli.ExitAuth || !strings.Contains(r.stderr, "ran with the credentials of profile "+profile) {
		t.Fatalf("reader write: %+v", r)
	}
	// The environment outranks the profile, setting by setting.
	t.Setenv("COFFER_TOKEN", env.Admin.Token)
	a = accountShow(t)
	if a.PrincipalID != env.Admin.PrincipalID || a.Sources.Token.Kind != "environment" || a.Sources.Token.Name != "COFFER_TOKEN" ||
		a.Sources.Endpoint.Kind != "profile" {
		t.Fatalf("account show with COFFER_TOKEN: %+v", a)
	}
	os.Unsetenv("COFFER_TOKEN")
	r = coffer(t, "account", "show", "--subscription", "00000000-0000-0000-0000-000000000001", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"subscription": {
      "kind": "flag",
      "name": "--subscription"`) {
		t.Fatalf("account show --subscription: %+v", r)
	}

	// Logout revokes the profile's token and removes the profile: the CLI
	// is the admin again, and the token works nowhere.
	r = coffer(t, "logout")
	if r.code != 0 || !strings.Contains(r.stderr, "revoked the profile's API token "+saved.TokenID) ||
		!strings.Contains(r.stderr, "Commands now act with the credentials of admin.json "+adminFile) {
		t.Fatalf("logout: %+v", r)
	}
	if _, err := os.Stat(profile); !os.IsNotExist(err) {
		t.Fatalf("profile after logout: %v", err)
	}
	if a = accountShow(t); a.PrincipalID != env.Admin.PrincipalID || a.Sources.Token.Kind != "admin.json" {
		t.Fatalf("account show after logout: %+v", a)
	}
	t.Setenv("COFFER_TOKEN", saved.Token)
	if r = coffer(t, "group", "show", "-n", "rg"); r.code != cli.ExitAuth || !strings.Contains(r.stderr, "revoked") {
		t.Fatalf("the profile's token after logout: %+v", r)
	}
	os.Unsetenv("COFFER_TOKEN")
	r = coffer(t, "logout")
	if r.code != 0 || !strings.Contains(r.stderr, "Not logged in") {
		t.Fatalf("logout again: %+v", r)
	}

	// Logging in again replaces the profile and revokes the token of the
	// one it replaces.
	if r = coffer(t, "login", "-u", sp.ClientID, "-p", sp.ClientSecret); r.code != 0 {
		t.Fatalf("login: %+v", r)
	}
	b, _ = os.ReadFile(profile)
	var first struct{ Token string }
	json.Unmarshal(b, &first)
	if r = coffer(t, "login", "-u", sp.ClientID, "-p", sp.ClientSecret); r.code != 0 {
		t.Fatalf("login again: %+v", r)
	}
	t.Setenv("COFFER_TOKEN", first.Token)
	if r = coffer(t, "group", "show", "-n", "rg"); r.code != cli.ExitAuth {
		t.Fatalf("the replaced profile's token: %+v", r)
	}
}

// TestOutputNone: -o none prints nothing on standard output, and is
// refused (nothing created) where the output holds a secret shown once.
func TestOutputNone(t *testing.T) {
	env := startServer(t)
	if r := coffer(t, "group", "create", "-n", "rg", "-l", "local", "-o", "none"); r.code != 0 || r.stdout != "" {
		t.Fatalf("group create -o none: %+v", r)
	}
	if r := coffer(t, "group", "list", "-o", "none"); r.code != 0 || r.stdout != "" {
		t.Fatalf("group list -o none: %+v", r)
	}
	if r := coffer(t, "disk", "create", "-g", "rg", "-n", "d", "--size-gb", "1", "-o", "none"); r.code != 0 || r.stdout != "" {
		t.Fatalf("disk create -o none: %+v", r)
	}
	if r := coffer(t, "disk", "nbd-url", "-g", "rg", "-n", "d", "-o", "none"); r.code != 0 || r.stdout != "" {
		t.Fatalf("disk nbd-url -o none: %+v", r)
	}
	before, err := env.Client("").ListPrincipals(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r := coffer(t, "principal", "create", "--display-name", "x", "-o", "none"); r.code != cli.ExitUsage || !strings.Contains(r.stderr, "shown only once") {
		t.Fatalf("principal create -o none: %+v", r)
	}
	a := env.Admin
	if r := coffer(t, "token", "create", "-u", a.ClientID, "-p", a.ClientSecret, "--tenant", a.TenantID, "-o", "none"); r.code != cli.ExitUsage {
		t.Fatalf("token create -o none: %+v", r)
	}
	after, err := env.Client("").ListPrincipals(t.Context())
	if err != nil || len(after) != len(before) {
		t.Fatalf("principals %d → %d (%v)", len(before), len(after), err)
	}
	toks, err := env.Client("").ListTokens(t.Context())
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens after a refused token create: %d %v", len(toks), err)
	}
	if r := coffer(t, "group", "list", "-o", "yaml"); r.code != cli.ExitUsage || !strings.Contains(r.stderr, "table, json, tsv or none") {
		t.Fatalf("-o yaml: %+v", r)
	}
}
