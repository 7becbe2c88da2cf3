package e2e

import (
	"bytes"
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
	do := func(method, path, token string, body string) (int, map[string]any, http.Header) {
		t.Helper()
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		status, out, hdr := raw(t, env, method, path, token, b, map[string]string{"Host": evil, "X-Forwarded-Host": evil})
		if status >= 500 {
			t.Fatalf("%s %s: %d %v", method, path, status, out)
		}
		return status, out, hdr
	}
	check := func(what, u string) {
		t.Helper()
		if !strings.HasPrefix(u, want+"/") {
			t.Errorf("%s: %q does not start with %s/", what, u, want)
		}
	}
	rg := "/subscriptions/" + sub + "/resourcegroups/"
	for _, g := range []string{"rg1", "rg2"} {
		if status, _, _ := do("PUT", rg+g+"?api-version=2021-04-01", "", `{"location":"local"}`); status != 201 {
			t.Fatalf("create %s: %d", g, status)
		}
	}
	_, page, _ := do("GET", "/subscriptions/"+sub+"/resourcegroups?api-version=2021-04-01", "", "")
	next, _ := page["nextLink"].(string)
	check("nextLink", next)

	_, _, hdr := do("PUT", "/subscriptions/"+sub+"/resourceGroups/rg1/providers/Microsoft.DataProtection/backupVaults/v1?api-version=2024-04-01", "",
		`{"location":"local","identity":{"type":"SystemAssigned"},"properties":{"storageSettings":[{"datastoreType":"VaultStore","type":"LocallyRedundant"}]}}`)
	check("vault Azure-AsyncOperation", hdr.Get("Azure-AsyncOperation"))
	check("vault Location", hdr.Get("Location"))

	disk := "/subscriptions/" + sub + "/resourceGroups/rg1/providers/Microsoft.Compute/disks/d1"
	status, _, hdr := do("PUT", disk+"?api-version=2024-03-02", "", `{"location":"local","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`)
	if status == http.StatusAccepted {
		check("disk Azure-AsyncOperation", hdr.Get("Azure-AsyncOperation"))
	}
	for i := 0; ; i++ {
		_, d, _ := do("GET", disk+"?api-version=2024-03-02", "", "")
		if p, _ := d["properties"].(map[string]any); p["provisioningState"] == "Succeeded" {
			break
		}
		if i > 500 {
			t.Fatal("disk not provisioned")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, _, hdr = do("POST", disk+"/beginGetAccess?api-version=2024-03-02", "", `{"access":"Read","durationInSeconds":600}`)
	loc := hdr.Get("Location")
	check("beginGetAccess Location", loc)
	lu, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	_, grant, _ := do("GET", lu.RequestURI(), "", "")
	sas, _ := grant["accessSAS"].(string)
	check("accessSAS", sas)

	_, _, hdr = do("DELETE", rg+"rg2?api-version=2021-04-01", "", "")
	check("group delete Location", hdr.Get("Location"))

	for _, tenant := range []string{env.Admin.TenantID, "adfs"} {
		_, oidc, _ := do("GET", "/"+tenant+"/v2.0/.well-known/openid-configuration", "-", "")
		for _, k := range []string{"issuer", "token_endpoint", "authorization_endpoint", "jwks_uri"} {
			v, _ := oidc[k].(string)
			check("openid-configuration "+k+" ("+tenant+")", v)
		}
	}
	_, meta, _ := do("GET", "/metadata/endpoints?api-version=2015-01-01", "-", "")
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
	_, _, hdr = do("GET", rg+"rg1?api-version=2021-04-01", "-", "")
	challenge := hdr.Get("WWW-Authenticate")
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
