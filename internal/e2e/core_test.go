package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"coffer/internal/client"
	"coffer/internal/identity"
	"coffer/internal/rbac"
	"coffer/internal/store"
)

// raw sends a request with the admin token unless token is "-" (none), to
// the address the server listens on (whatever its public endpoint); a
// "Host" entry of hdr sets the request's Host.
func raw(t *testing.T, env *Env, method, path, token string, body []byte, hdr map[string]string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, env.Listen+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := hdr["Host"]; ok {
		req.Host = h
	}
	if token == "" {
		token = env.Admin.Token
	}
	if token != "-" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := env.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(data, &out)
	return resp.StatusCode, out, resp.Header
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// background lists the kinds (or kind prefixes) the server writes on its
// own while it runs: the job queue, node heartbeats and leases, monitoring
// and maintenance state.
var background = []string{"job.", "cluster.lease", "cluster.node", "coffer.monitor", "coffer.maintenance"}

// storeState returns the ModifyIndex of every object by kind and key,
// leaving out the background kinds: if it does not change, a request
// changed nothing, whatever ran beside it.
func storeState(t *testing.T, env *Env) map[string]uint64 {
	t.Helper()
	state := map[string]uint64{}
	err := env.Server.Store().View(context.Background(), func(tx store.Tx) error {
		objs, err := tx.List(context.Background(), store.Query{})
		for _, o := range objs {
			if !slices.ContainsFunc(background, func(b string) bool { return strings.HasPrefix(o.Kind, b) }) {
				state[o.Kind+" "+o.Key] = o.ModifyIndex
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(state) == 0 {
		t.Fatal("the store lists no object: storeState would see no change")
	}
	return state
}

// storeChanges names the objects that differ between two storeStates.
func storeChanges(before, after map[string]uint64) []string {
	var ch []string
	for k, v := range after {
		if w, ok := before[k]; !ok || w != v {
			ch = append(ch, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			ch = append(ch, k+" (deleted)")
		}
	}
	slices.Sort(ch)
	return ch
}

// TestBadInput sends malformed requests and checks each gets the right
// status and ARM error code, and that none of them changes the store.
func TestBadInput(t *testing.T) {
	env := Start(t, Options{})
	sub := env.Admin.SubscriptionID
	grp := "/subscriptions/" + sub + "/resourcegroups/"
	v := "?api-version=2021-04-01"
	if code, _, _ := raw(t, env, "PUT", grp+"existing"+v, "", []byte(`{"location":"local"}`), nil); code != 201 {
		t.Fatalf("setup: %d", code)
	}
	big := []byte(`{"location":"local","tags":{"x":"` + strings.Repeat("a", 5<<20) + `"}}`)
	tests := []struct {
		name, method, path string
		token              string
		body               []byte
		hdr                map[string]string
		status             int
		code               string
	}{
		{"missing api-version", "PUT", grp + "g1", "", []byte(`{"location":"local"}`), nil, 400, "MissingApiVersionParameter"},
		{"unknown api-version", "PUT", grp + "g1?api-version=2001-01-01", "", []byte(`{"location":"local"}`), nil, 400, "InvalidApiVersionParameter"},
		{"no token", "PUT", grp + "g1" + v, "-", []byte(`{"location":"local"}`), nil, 401, "AuthenticationFailed"},
		{"garbage token", "PUT", grp + "g1" + v, "not.a.jwt", []byte(`{"location":"local"}`), nil, 401, "InvalidAuthenticationToken"},
		{"invalid group name", "PUT", grp + "bad%20name" + v, "", []byte(`{"location":"local"}`), nil, 400, "InvalidResourceGroup"},
		{"group name too long", "PUT", grp + strings.Repeat("g", 91) + v, "", []byte(`{"location":"local"}`), nil, 400, "InvalidResourceGroup"},
		{"unknown location", "PUT", grp + "g1" + v, "", []byte(`{"location":"mars"}`), nil, 400, "LocationNotAvailableForResourceGroup"},
		{"no location", "PUT", grp + "g1" + v, "", []byte(`{}`), nil, 400, "LocationRequired"},
		{"malformed JSON", "PUT", grp + "g1" + v, "", []byte(`{"location":`), nil, 400, "InvalidRequestContent"},
		{"wrong type", "PUT", grp + "g1" + v, "", []byte(`{"location":42}`), nil, 400, "InvalidRequestContent"},
		{"wrong tag type", "PUT", grp + "g1" + v, "", []byte(`{"location":"local","tags":{"a":1}}`), nil, 400, "InvalidRequestContent"},
		{"empty body", "PUT", grp + "g1" + v, "", []byte{}, nil, 400, "InvalidRequestContent"},
		{"trailing garbage", "PUT", grp + "g1" + v, "", []byte(`{"location":"local"} x`), nil, 400, "InvalidRequestContent"},
		{"oversized body", "PUT", grp + "g1" + v, "", big, nil, 413, "RequestEntityTooLarge"},
		{"bad tag name", "PUT", grp + "g1" + v, "", []byte(`{"location":"local","tags":{"a/b":"c"}}`), nil, 400, "InvalidTagNameCharacters"},
		{"unknown route", "GET", "/subscriptions/" + sub + "/nonsense/x" + v, "", nil, nil, 404, "NotFound"},
		{"unknown root route", "GET", "/definitely/not/here", "", nil, nil, 404, "NotFound"},
		{"wrong method", "POST", grp + "g1" + v, "", []byte(`{}`), nil, 405, "MethodNotAllowed"},
		{"unknown subscription", "PUT", "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/g1" + v, "",
			[]byte(`{"location":"local"}`), nil, 403, "AuthorizationFailed"},
		{"If-Match on missing", "PUT", grp + "g1" + v, "", []byte(`{"location":"local"}`), map[string]string{"If-Match": `W/"1"`}, 412, "PreconditionFailed"},
		{"If-None-Match * on existing", "PUT", grp + "existing" + v, "", []byte(`{"location":"local"}`), map[string]string{"If-None-Match": "*"}, 412, "PreconditionFailed"},
		{"stale If-Match", "PATCH", grp + "existing" + v, "", []byte(`{"tags":{}}`), map[string]string{"If-Match": `W/"999999"`}, 412, "PreconditionFailed"},
		{"move location", "PUT", grp + "existing" + v, "", []byte(`{"location":"elsewhere"}`), nil, 400, "LocationNotAvailableForResourceGroup"},
		{"assignment name not GUID", "PUT", "/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleAssignments/abc?api-version=2022-04-01", "",
			[]byte(`{"properties":{"roleDefinitionId":"` + rbac.RoleReader + `","principalId":"` + env.Admin.PrincipalID + `"}}`), nil, 400, "InvalidRoleAssignmentId"},
		{"assignment unknown role", "PUT", "/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleAssignments/" + identity.NewGUID() + "?api-version=2022-04-01", "",
			[]byte(`{"properties":{"roleDefinitionId":"` + identity.NewGUID() + `","principalId":"` + env.Admin.PrincipalID + `"}}`), nil, 400, "RoleDefinitionDoesNotExist"},
		{"assignment unknown principal", "PUT", "/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleAssignments/" + identity.NewGUID() + "?api-version=2022-04-01", "",
			[]byte(`{"properties":{"roleDefinitionId":"` + rbac.RoleReader + `","principalId":"` + identity.NewGUID() + `"}}`), nil, 400, "PrincipalNotFound"},
		{"assignment bad filter", "GET", "/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=nonsense", "",
			nil, nil, 400, "InvalidFilter"},
		{"assignment in missing group", "GET", grp + "nope/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01", "",
			nil, nil, 404, "ResourceGroupNotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := storeState(t, env)
			status, body, hdr := raw(t, env, tt.method, tt.path, tt.token, tt.body, tt.hdr)
			if status != tt.status || errCode(body) != tt.code {
				t.Fatalf("got %d %q, want %d %q (body %v)", status, errCode(body), tt.status, tt.code, body)
			}
			if e, _ := body["error"].(map[string]any); e["message"] == "" {
				t.Errorf("error without a message: %v", body)
			}
			if hdr.Get("x-ms-request-id") == "" || hdr.Get("x-ms-correlation-request-id") == "" {
				t.Errorf("missing request ID headers: %v", hdr)
			}
			if status == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("401 without a Bearer challenge: %q", hdr.Get("WWW-Authenticate"))
			}
			if ch := storeChanges(before, storeState(t, env)); len(ch) > 0 {
				t.Errorf("%s: %v", "a refused request changed something", ch)
			}
		})
	}
}

// TestRestart creates resources, stops the server, starts it on the same
// data directory and reads them back with the same credentials.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	env := Start(t, Options{DataDir: dir})
	c := env.Client("")
	if _, err := c.CreateGroup(ctx, "keep-me", "local", map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	sp, err := c.CreateServicePrincipal(ctx, "survivor")
	if err != nil {
		t.Fatal(err)
	}
	scope := "/subscriptions/" + env.Admin.SubscriptionID + "/resourceGroups/keep-me"
	if _, err := c.CreateRoleAssignment(ctx, scope, identity.NewGUID(), rbac.RoleReader, sp.PrincipalID, ""); err != nil {
		t.Fatal(err)
	}
	admin := env.Admin
	env.Stop()

	env2 := Start(t, Options{DataDir: dir})
	if env2.Admin.Token != admin.Token || env2.Admin.SubscriptionID != admin.SubscriptionID {
		t.Fatal("admin.json changed across a restart")
	}
	c2 := env2.Client(admin.Token)
	g, err := c2.GetGroup(ctx, "keep-me")
	if err != nil || g.Tags["k"] != "v" {
		t.Fatalf("group after restart: %+v %v", g, err)
	}
	as, err := c2.ListRoleAssignments(ctx, scope, "principalId eq '"+sp.PrincipalID+"'")
	if err != nil || len(as) != 1 {
		t.Fatalf("assignments after restart: %v %v", as, err)
	}
	// The service principal's secret still works: the signing key survived.
	tok, err := c2.ClientCredentials(ctx, admin.TenantID, sp.ClientID, sp.ClientSecret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env2.Client(tok).GetGroup(ctx, "keep-me"); err != nil {
		t.Fatalf("reader after restart: %v", err)
	}
	st, err := os.Stat(dir + "/admin.json")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin.json mode: %v %v", st.Mode(), err)
	}
}

// TestTokens checks client credentials, API token revocation, principal
// deletion and tenant-admin-only identity routes.
func TestTokens(t *testing.T) {
	ctx := context.Background()
	env := Start(t, Options{})
	admin := env.Client("")
	sp, err := admin.CreateServicePrincipal(ctx, "worker")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ClientCredentials(ctx, env.Admin.TenantID, sp.ClientID, "wrong"); client.AsError(err) == nil || client.AsError(err).Code != "invalid_client" {
		t.Fatalf("wrong secret: %v", err)
	}
	access, err := admin.ClientCredentials(ctx, env.Admin.TenantID, sp.ClientID, sp.ClientSecret)
	if err != nil {
		t.Fatal(err)
	}
	worker := env.Client(access)
	self, err := worker.Self(ctx)
	if err != nil || self.PrincipalID != sp.PrincipalID {
		t.Fatalf("self: %+v %v", self, err)
	}
	// Not a tenant admin: cannot create principals.
	if _, err := worker.CreateServicePrincipal(ctx, "x"); client.AsError(err) == nil || client.AsError(err).StatusCode != 403 {
		t.Fatalf("non-admin creating a principal: %v", err)
	}
	// A long-lived API token works until revoked.
	api, err := worker.CreateToken(ctx, 1, "test")
	if err != nil {
		t.Fatal(err)
	}
	longLived := env.Client(api.Token)
	if _, err := longLived.Self(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Do(ctx, "DELETE", "/providers/Coffer.Identity/tokens/"+api.ID, client.IdentityVersion, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := longLived.Self(ctx); client.AsError(err) == nil || client.AsError(err).StatusCode != 401 {
		t.Fatalf("revoked token: %v", err)
	}
	// Deleting the principal invalidates its access token too.
	if err := admin.DeletePrincipal(ctx, sp.PrincipalID); err != nil {
		t.Fatal(err)
	}
	if _, err := worker.Self(ctx); client.AsError(err) == nil || client.AsError(err).StatusCode != 401 {
		t.Fatalf("token of a deleted principal: %v", err)
	}
}

// TestHealthAndMetrics checks /healthz and the Prometheus metrics.
func TestHealthAndMetrics(t *testing.T) {
	env := Start(t, Options{})
	if code, body, _ := raw(t, env, "GET", "/healthz", "-", nil, nil); code != 200 || body["status"] != "ok" {
		t.Fatalf("healthz: %d %v", code, body)
	}
	raw(t, env, "GET", "/subscriptions?api-version=2021-04-01", "", nil, nil)
	resp, err := env.HTTP.Get(env.Endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	text := string(data)
	for _, want := range []string{
		`coffer_http_requests_total{route="GET /subscriptions",status="200"} 1`,
		`coffer_http_request_duration_seconds_count{route="GET /subscriptions"} 1`,
		"# TYPE coffer_http_requests_total counter",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("metrics content type %q", ct)
	}
}
