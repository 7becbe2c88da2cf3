package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/identity"
)

// TestForgedTokensRefused checks defect 7's claim validation over HTTP:
// tokens signed with the server's own key (in-process) whose tenant,
// issuer, audience, expiry or kind is wrong are refused with 401
// InvalidAuthenticationToken, while the same token with the right claims
// is accepted.
func TestForgedTokensRefused(t *testing.T) {
	env := Start(t, Options{})
	now := time.Now()
	good := identity.Claims{Issuer: "coffer", Audience: env.Endpoint, Subject: env.Admin.PrincipalID, ObjectID: env.Admin.PrincipalID,
		TenantID: env.Admin.TenantID, AppID: env.Admin.ClientID, IssuedAt: now.Unix(), NotBefore: now.Unix(),
		Expires: now.Add(time.Hour).Unix(), TokenID: identity.NewGUID(), Kind: "access"}
	sign := func(c identity.Claims) string {
		tok, err := env.Server.IDs.Signer.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if code, body, _ := raw(t, env, "GET", "/providers/Coffer.Identity/self?api-version=2024-01-01", sign(good), nil, nil); code != 200 {
		t.Fatalf("the well-formed token: %d %v", code, body)
	}
	for _, c := range []struct {
		name string
		edit func(c *identity.Claims)
	}{
		{"another tenant", func(c *identity.Claims) { c.TenantID = identity.NewGUID() }},
		{"another issuer", func(c *identity.Claims) { c.Issuer = "https://sts.windows.net/" + c.TenantID + "/" }},
		{"another audience", func(c *identity.Claims) { c.Audience = "https://management.azure.com/" }},
		{"no audience", func(c *identity.Claims) { c.Audience = "" }},
		{"no expiry", func(c *identity.Claims) { c.Expires = 0 }},
		{"an access token for ten years", func(c *identity.Claims) { c.Expires = now.AddDate(10, 0, 0).Unix() }},
		{"an unknown kind", func(c *identity.Claims) { c.Kind = "session" }},
	} {
		claims := good
		c.edit(&claims)
		code, body, hdr := raw(t, env, "GET", "/providers/Coffer.Identity/self?api-version=2024-01-01", sign(claims), nil, nil)
		if code != http.StatusUnauthorized || errCode(body) != "InvalidAuthenticationToken" || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("%s: %d %v, want 401 InvalidAuthenticationToken with a challenge", c.name, code, body)
		}
	}

	// The token endpoint issues tokens only for this server's audience,
	// with or without the trailing slash the Azure CLI adds.
	tokenAt := func(path string, what url.Values) (int, map[string]any) {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {env.Admin.ClientID},
			"client_secret": {env.Admin.ClientSecret}}
		for k, v := range what {
			form[k] = v
		}
		resp, err := env.HTTP.PostForm(env.Endpoint+"/"+env.Admin.TenantID+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	tokenReq := func(scope string) (int, map[string]any) {
		return tokenAt("/oauth2/v2.0/token", url.Values{"scope": {scope}})
	}
	for _, scope := range []string{env.Endpoint + "/.default", env.Endpoint + "//.default"} {
		if code, out := tokenReq(scope); code != 200 || out["access_token"] == nil {
			t.Errorf("token for %s: %d %v", scope, code, out)
		}
	}
	if code, out := tokenReq("https://management.azure.com/.default"); code != http.StatusBadRequest || out["error"] != "invalid_resource" {
		t.Errorf("token for another resource: %d %v, want 400 invalid_resource", code, out)
	}
	// The v1 endpoint names the audience in 'resource', with no scope; a
	// request naming neither, or an empty or blank scope, is told what
	// to ask for (the blank scope once panicked the handler: found by
	// FuzzAPIRequest).
	if code, out := tokenAt("/oauth2/token", url.Values{"resource": {env.Endpoint}}); code != 200 || out["access_token"] == nil {
		t.Errorf("v1 token for resource %s: %d %v", env.Endpoint, code, out)
	}
	for _, what := range []url.Values{{}, {"scope": {""}}, {"scope": {"  "}}} {
		if code, out := tokenAt("/oauth2/token", what); code != http.StatusBadRequest || out["error"] != "invalid_request" {
			t.Errorf("token with %v: %d %v, want 400 invalid_request", what, code, out)
		}
	}
}

// TestAPITokens checks defect 7's API-token rules over HTTP: the lifetime
// cap (400), that only an access token from client credentials may mint an
// API token (403 for an API token), listing one's own tokens (never the
// token itself), the tenant administrator listing anyone's, a non-admin
// refused another's tokens (403), and revocation by owner and admin.
func TestAPITokens(t *testing.T) {
	ctx := context.Background()
	env := Start(t, Options{})
	admin := env.Client("")
	const v = "?api-version=2024-01-01"
	newSP := func(name string) (client.Principal, string) {
		sp, err := admin.CreateServicePrincipal(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		access, err := admin.ClientCredentials(ctx, env.Admin.TenantID, sp.ClientID, sp.ClientSecret)
		if err != nil {
			t.Fatal(err)
		}
		return sp, access
	}
	sp, access := newSP("alice")
	sp2, access2 := newSP("bob")
	mint := func(token, body string) (int, map[string]any) {
		code, out, _ := raw(t, env, "POST", "/providers/Coffer.Identity/tokens"+v, token, []byte(body), nil)
		return code, out
	}

	// The lifetime cap (90 days by default).
	for _, days := range []string{"3650", "91"} {
		code, out := mint(access, `{"expiresInDays":`+days+`}`)
		if code != http.StatusBadRequest || errCode(out) != "InvalidExpiry" || !strings.Contains(out["error"].(map[string]any)["message"].(string), "maximum") {
			t.Errorf("%s days: %d %v, want 400 InvalidExpiry naming the maximum", days, code, out)
		}
	}
	// A description with a terminal escape in it is refused.
	if code, out := mint(access, `{"description":"\u001b]0;pwned\u0007"}`); code != http.StatusBadRequest || errCode(out) != "InvalidParameter" {
		t.Errorf("a description with control characters: %d %v, want 400 InvalidParameter", code, out)
	}
	code, created := mint(access, `{"description":"ci"}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, created)
	}
	apiTok, _ := created["token"].(string)
	id, _ := created["id"].(string)
	exp, _ := time.Parse(time.RFC3339, created["expiresOn"].(string))
	if d := time.Until(exp); apiTok == "" || id == "" || d < 89*24*time.Hour || d > 90*24*time.Hour {
		t.Fatalf("created token: %v (expires in %v, want 90 days)", created, d)
	}
	if code, out := mint(access, `{"expiresInDays":90}`); code != http.StatusCreated {
		t.Fatalf("90 days: %d %v", code, out)
	}

	// An API token cannot mint another: not the new one, not admin.json's.
	for name, tok := range map[string]string{"a service principal's API token": apiTok, "admin.json's token": env.Admin.Token} {
		if code, out := mint(tok, `{"expiresInDays":1}`); code != http.StatusForbidden || errCode(out) != "FreshCredentialsRequired" {
			t.Errorf("minting with %s: %d %v, want 403 FreshCredentialsRequired", name, code, out)
		}
	}

	// Listing one's own tokens: the record, never the token.
	code, list, _ := raw(t, env, "GET", "/providers/Coffer.Identity/tokens"+v, access, nil, nil)
	items, _ := list["value"].([]any)
	if code != 200 || len(items) != 2 {
		t.Fatalf("own tokens: %d %v", code, list)
	}
	first := items[0].(map[string]any)
	if first["id"] != id || first["description"] != "ci" || first["revoked"] != false || first["createdAt"] == nil ||
		first["expiresOn"] == nil || first["principalId"] != sp.PrincipalID || first["token"] != nil {
		t.Fatalf("listed token: %v", first)
	}
	// Bob may not list Alice's tokens, nor everyone's; the admin may.
	if code, out, _ := raw(t, env, "GET", "/providers/Coffer.Identity/principals/"+sp.PrincipalID+"/tokens"+v, access2, nil, nil); code != http.StatusForbidden || errCode(out) != "AuthorizationFailed" {
		t.Errorf("bob listing alice's tokens: %d %v, want 403", code, out)
	}
	if code, out, _ := raw(t, env, "GET", "/providers/Coffer.Identity/tokens"+v+"&all=true", access2, nil, nil); code != http.StatusForbidden {
		t.Errorf("bob listing every token: %d %v, want 403", code, out)
	}
	if code, out, _ := raw(t, env, "GET", "/providers/Coffer.Identity/principals/"+sp.PrincipalID+"/tokens"+v, "", nil, nil); code != 200 || len(out["value"].([]any)) != 2 {
		t.Errorf("admin listing alice's tokens: %d %v", code, out)
	}
	code, out, _ := raw(t, env, "GET", "/providers/Coffer.Identity/tokens"+v+"&all=true", "", nil, nil)
	if all, _ := out["value"].([]any); code != 200 || len(all) != 3 { // alice's two and admin.json's
		t.Errorf("admin listing every token: %d %v", code, out)
	}

	// Revocation: Bob may not revoke Alice's token; Alice may (with her
	// access token, not the token itself); the admin may revoke Bob's.
	if code, out, _ := raw(t, env, "DELETE", "/providers/Coffer.Identity/tokens/"+id+v, access2, nil, nil); code != http.StatusForbidden {
		t.Errorf("bob revoking alice's token: %d %v, want 403", code, out)
	}
	if code, out, _ := raw(t, env, "GET", "/providers/Coffer.Identity/self"+v, apiTok, nil, nil); code != 200 {
		t.Fatalf("alice's token after bob's try: %d %v", code, out)
	}
	if code, out, _ := raw(t, env, "DELETE", "/providers/Coffer.Identity/tokens/"+id+v, access, nil, nil); code != 200 {
		t.Fatalf("alice revoking her token: %d %v", code, out)
	}
	if code, out, _ := raw(t, env, "GET", "/providers/Coffer.Identity/self"+v, apiTok, nil, nil); code != http.StatusUnauthorized || errCode(out) != "InvalidAuthenticationToken" {
		t.Errorf("revoked token: %d %v, want 401", code, out)
	}
	code, bobs := mint(access2, `{}`)
	if code != http.StatusCreated {
		t.Fatalf("bob's token: %d %v", code, bobs)
	}
	if code, out, _ := raw(t, env, "DELETE", "/providers/Coffer.Identity/tokens/"+bobs["id"].(string)+v, "", nil, nil); code != 200 {
		t.Fatalf("admin revoking bob's token: %d %v", code, out)
	}
	code, list, _ = raw(t, env, "GET", "/providers/Coffer.Identity/principals/"+sp2.PrincipalID+"/tokens"+v, access2, nil, nil)
	if items, _ := list["value"].([]any); code != 200 || len(items) != 1 || items[0].(map[string]any)["revoked"] != true || items[0].(map[string]any)["revokedAt"] == nil {
		t.Errorf("bob's revoked token listed: %d %v", code, list)
	}
	if code, out, _ := raw(t, env, "DELETE", "/providers/Coffer.Identity/tokens/"+identity.NewGUID()+v, "", nil, nil); code != http.StatusNotFound || errCode(out) != "TokenNotFound" {
		t.Errorf("revoking an unknown token: %d %v, want 404", code, out)
	}
}
