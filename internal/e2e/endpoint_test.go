package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestAbsoluteURLsIgnoreHost sends requests whose Host header names an
// attacker's server and checks that every absolute URL in the answers —
// Location and Azure-AsyncOperation of long-running operations, a grant's
// accessSAS, nextLink, the OpenID configuration, the cloud metadata and
// the WWW-Authenticate challenge — names the server's configured endpoint:
// the one derived from --listen, or --public-endpoint when given.
func TestAbsoluteURLsIgnoreHost(t *testing.T) {
	t.Run("listen address", func(t *testing.T) {
		env := Start(t, Options{})
		checkURLs(t, env, env.Endpoint)
	})
	t.Run("public endpoint", func(t *testing.T) {
		const public = "https://backup.example.test:8443"
		env := Start(t, Options{PublicEndpoint: public + "/"})
		if env.Endpoint != public || env.Admin.Endpoint != public {
			t.Fatalf("endpoint %q, admin.json %q; want %q", env.Endpoint, env.Admin.Endpoint, public)
		}
		checkURLs(t, env, public)
	})
}

func checkURLs(t *testing.T, env *Env, want string) {
	t.Helper()
	const evil = "evil.example:666"
	sub := env.Admin.SubscriptionID
	env.Server.API.PageSize = 1
	do := func(method, path, token string, body string) (*http.Response, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+env.Listen+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = evil
		req.Header.Set("X-Forwarded-Host", evil)
		if token != "-" {
			req.Header.Set("Authorization", "Bearer "+env.Admin.Token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := env.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var out map[string]any
		json.Unmarshal(data, &out)
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
		}
		return resp, out
	}
	check := func(what, u string) {
		t.Helper()
		if !strings.HasPrefix(u, want+"/") {
			t.Errorf("%s: %q does not start with %s/", what, u, want)
		}
	}
	rg := "/subscriptions/" + sub + "/resourcegroups/"
	for _, g := range []string{"rg1", "rg2"} {
		if resp, _ := do("PUT", rg+g+"?api-version=2021-04-01", "", `{"location":"local"}`); resp.StatusCode != 201 {
			t.Fatalf("create %s: %d", g, resp.StatusCode)
		}
	}
	_, page := do("GET", "/subscriptions/"+sub+"/resourcegroups?api-version=2021-04-01", "", "")
	next, _ := page["nextLink"].(string)
	check("nextLink", next)

	resp, _ := do("PUT", "/subscriptions/"+sub+"/resourceGroups/rg1/providers/Microsoft.DataProtection/backupVaults/v1?api-version=2024-04-01", "",
		`{"location":"local","identity":{"type":"SystemAssigned"},"properties":{"storageSettings":[{"datastoreType":"VaultStore","type":"LocallyRedundant"}]}}`)
	check("vault Azure-AsyncOperation", resp.Header.Get("Azure-AsyncOperation"))
	check("vault Location", resp.Header.Get("Location"))

	disk := "/subscriptions/" + sub + "/resourceGroups/rg1/providers/Microsoft.Compute/disks/d1"
	resp, _ = do("PUT", disk+"?api-version=2024-03-02", "", `{"location":"local","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`)
	if resp.StatusCode == http.StatusAccepted {
		check("disk Azure-AsyncOperation", resp.Header.Get("Azure-AsyncOperation"))
	}
	for i := 0; ; i++ {
		_, d := do("GET", disk+"?api-version=2024-03-02", "", "")
		if p, _ := d["properties"].(map[string]any); p["provisioningState"] == "Succeeded" {
			break
		}
		if i > 500 {
			t.Fatal("disk not provisioned")
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, _ = do("POST", disk+"/beginGetAccess?api-version=2024-03-02", "", `{"access":"Read","durationInSeconds":600}`)
	loc := resp.Header.Get("Location")
	check("beginGetAccess Location", loc)
	lu, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	_, grant := do("GET", lu.RequestURI(), "", "")
	sas, _ := grant["accessSAS"].(string)
	check("accessSAS", sas)

	resp, _ = do("DELETE", rg+"rg2?api-version=2021-04-01", "", "")
	check("group delete Location", resp.Header.Get("Location"))

	for _, tenant := range []string{env.Admin.TenantID, "adfs"} {
		_, oidc := do("GET", "/"+tenant+"/v2.0/.well-known/openid-configuration", "-", "")
		for _, k := range []string{"issuer", "token_endpoint", "authorization_endpoint", "jwks_uri"} {
			v, _ := oidc[k].(string)
			check("openid-configuration "+k+" ("+tenant+")", v)
		}
	}
	_, meta := do("GET", "/metadata/endpoints?api-version=2015-01-01", "-", "")
	auth, _ := meta["authentication"].(map[string]any)
	login, _ := auth["loginEndpoint"].(string)
	check("metadata loginEndpoint", login)
	aud, _ := auth["audiences"].([]any)
	if len(aud) != 1 || aud[0] != want+"/" {
		t.Errorf("metadata audiences %v, want [%s/]", aud, want)
	}
	for _, k := range []string{"galleryEndpoint", "graphEndpoint", "portalEndpoint"} {
		v, _ := meta[k].(string)
		check("metadata "+k, v)
	}
	resp, _ = do("GET", rg+"rg1?api-version=2021-04-01", "-", "")
	challenge := resp.Header.Get("WWW-Authenticate")
	if !strings.Contains(challenge, `authorization_uri="`+want+"/") {
		t.Errorf("WWW-Authenticate %q does not name %s", challenge, want)
	}
	var all bytes.Buffer
	for _, h := range []string{challenge, next, sas, login, loc} {
		all.WriteString(h)
	}
	if strings.Contains(all.String(), "evil.example") {
		t.Errorf("an answer names the forged host: %s", all.String())
	}
}
