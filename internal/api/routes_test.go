package api

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"coffer/internal/compute"
)

// allRoutes is the route table of every provider, built without services
// (route builders do not touch them).
func allRoutes() []Route {
	core := &coreHandlers{}
	var rs []Route
	rs = append(rs, core.identityRoutes()...)
	rs = append(rs, core.resourceRoutes()...)
	rs = append(rs, core.authorizationRoutes()...)
	for _, typ := range []string{compute.TypeDisks, compute.TypeSnapshots} {
		rs = append(rs, (&computeHandlers{}).routes(typ)...)
	}
	rs = append(rs, (&dpHandlers{}).routes()...)
	return rs
}

// TestRoutesValidateOnlyWhatTheirPathHolds: a route's path validation
// checks the names its pattern captures and nothing else, so a list at
// subscription scope (no {rg}) is not refused for an empty group name.
func TestRoutesValidateOnlyWhatTheirPathHolds(t *testing.T) {
	for _, rt := range allRoutes() {
		if rt.Validate == nil {
			continue
		}
		vars := map[string]string{}
		for _, seg := range strings.Split(rt.Pattern, "/") {
			if isVar(seg) {
				vars[strings.TrimSuffix(seg[1:len(seg)-1], "...")] = "valid-name1"
			}
		}
		if err := rt.Validate(&Request{Vars: vars}); err != nil {
			t.Errorf("%s %s: valid names refused: %v", rt.Method, rt.Pattern, err)
		}
	}
}

// TestNBDURLHost: when NBD listens on every address, NBD URLs name the
// host of the public endpoint, never the request's Host header.
func TestNBDURLHost(t *testing.T) {
	hr := httptest.NewRequest("POST", "/x", nil)
	hr.Host = "evil.example:666"
	r := &Request{HTTP: hr, BaseURL: "https://backup.example.test:8443"}
	for addr, want := range map[string]string{
		"0.0.0.0:10809":     "nbds://backup.example.test:10809/tok",
		"[::]:10809":        "nbds://backup.example.test:10809/tok",
		":10809":            "nbds://backup.example.test:10809/tok",
		"10.0.0.7:10809":    "nbds://10.0.0.7:10809/tok",
		"[fd00::7]:10809":   "nbds://[fd00::7]:10809/tok",
		"nbd.example:10809": "nbds://nbd.example:10809/tok",
	} {
		h := &computeHandlers{c: Compute{NBDAddress: func(context.Context, string) string { return addr }, NBDTLS: true}}
		if got := h.nbdURL(context.Background(), r, "", "tok"); got != want {
			t.Errorf("NBD on %s: %q, want %q", addr, got, want)
		}
	}
}
