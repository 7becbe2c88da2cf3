package api

// RouteInfo describes one entry of the route table: what a test or a
// document needs to cover every route without reaching into handlers.
// Exactly one of Anonymous, Action, TenantAction and Checks is set.
type RouteInfo struct {
	Method  string
	Pattern string
	// Action is the RBAC action checked before the body is read and the
	// handler runs.
	Action    string
	Anonymous bool
	// TenantAction is the tenant-level action checked before the handler
	// runs (SelfAllowed: not when the caller acts on itself).
	TenantAction string
	SelfAllowed  bool
	// Checks names the rule a route applies once it has read what the
	// rule depends on.
	Checks string
	// Versions are the api-versions the route accepts (nil: none needed).
	Versions []string
}

// Routes returns the route table in registration order.
func (s *Server) Routes() []RouteInfo {
	out := make([]RouteInfo, len(s.routes))
	for i, rt := range s.routes {
		out[i] = RouteInfo{Method: rt.Method, Pattern: rt.Pattern, Action: rt.Action, Anonymous: rt.Anonymous,
			TenantAction: rt.TenantAction, SelfAllowed: rt.Self != nil, Checks: rt.Checks, Versions: rt.Versions}
	}
	return out
}
