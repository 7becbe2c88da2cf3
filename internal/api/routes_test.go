package api

import (
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
