package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"coffer/internal/api"
)

// FuzzAPIRequest sends arbitrary requests, as the tenant administrator, to
// a live server's handler: every route of the table is a seed (the
// authorization matrix's request for it, with the fixtures' names), and
// the fuzzer mutates the method, the path and query, and the body. Every
// answer must be below 500, and an ARM error must have Azure's shape
// (error.code and error.message): bad input gets a clear error, never an
// internal one or a panic.
//
// Paths hold placeholders ({sub}, {sub2}, {tenant}) for the server's IDs,
// so that corpus entries replay on a new server.
func FuzzAPIRequest(f *testing.F) {
	ctx := context.Background()
	m := newFixtures(ctx, f)
	if err := m.fillRegions(ctx); err != nil {
		f.Fatal(err)
	}
	row := &mxPrincipal{index: 99, label: "fuzz", token: m.admin.Token, clientID: m.env.Admin.ClientID,
		secret: m.env.Admin.ClientSecret, sink: m.sharedSink}
	for _, c := range matrixColumns() {
		if c.request == nil {
			continue
		}
		r := c.request(m, row)
		target, body := m.template(r)
		f.Add(r.method, target, body)
	}
	handler := m.env.Server.Handler()
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		target, body = m.expand(target), []byte(m.expand(string(body)))
		req, err := http.NewRequest(method, target, bytes.NewReader(body))
		if err != nil || req.URL.Path == "" || !strings.HasPrefix(target, "/") {
			return
		}
		req.Host = strings.TrimPrefix(m.env.Endpoint, "http://")
		req.Header.Set("Authorization", "Bearer "+m.admin.Token)
		ctype := "application/json"
		if isOAuth2Path(req.URL.Path) {
			ctype = "application/x-www-form-urlencoded"
		}
		req.Header.Set("Content-Type", ctype)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, target, body, rec.Code, rec.Body.Bytes())
		}
		if rec.Code >= 400 && method != http.MethodHead && isARMPath(req.URL.Path) {
			var e api.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s %s %q: %d with a body that is not an ARM error: %s", method, target, body, rec.Code, rec.Body.Bytes())
			}
		}
	})
}

// isARMPath reports whether answers on path are ARM's (not the data plane
// of grants, which answers in the blob service's XML, nor OAuth2, nor the
// metrics text).
func isARMPath(path string) bool {
	return !strings.HasPrefix(path, api.DataPrefix) && !isOAuth2Path(path) && path != "/metrics"
}

// isOAuth2Path reports whether path is the token endpoint's, which
// answers in OAuth2's error format; like Microsoft Entra ID's, its path
// matches in any case ("/{tenant}/oAuth2/token").
func isOAuth2Path(path string) bool {
	return strings.Contains(strings.ToLower(path), "/oauth2/")
}

// template turns a column's request into a fuzz input: the path and query
// with placeholders for the server's IDs, and the body.
func (m *matrix) template(r mxRequest) (string, []byte) {
	q := r.query
	if r.version != "" {
		q = cloneValues(q)
		q.Set("api-version", r.version)
	}
	target := r.path
	if enc := q.Encode(); enc != "" {
		target += "?" + enc
	}
	var body []byte
	switch {
	case r.form != nil:
		body = []byte(r.form.Encode())
	case r.body != nil:
		body, _ = json.Marshal(r.body)
	}
	ph := strings.NewReplacer(m.sub2, "{sub2}", m.sub, "{sub}", m.tenant, "{tenant}")
	return ph.Replace(strings.TrimPrefix(target, m.env.Endpoint)), []byte(ph.Replace(string(body)))
}

// expand puts the server's IDs in for the placeholders.
func (m *matrix) expand(s string) string {
	return strings.NewReplacer("{sub2}", m.sub2, "{sub}", m.sub, "{tenant}", m.tenant).Replace(s)
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
