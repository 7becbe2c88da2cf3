package api

// RouteInfo describes one entry of the route table: what a test or a
// document needs to cover every route without reaching into handlers.
type RouteInfo struct {
	Method  string
	Pattern string
	// Action is the RBAC action checked before the handler runs; empty
	// when the route is anonymous or its handler does its own checks.
	Action    string
	Anonymous bool
}

// Routes returns the route table in registration order.
func (s *Server) Routes() []RouteInfo {
	out := make([]RouteInfo, len(s.routes))
	for i, rt := range s.routes {
		out[i] = RouteInfo{Method: rt.Method, Pattern: rt.Pattern, Action: rt.Action, Anonymous: rt.Anonymous}
	}
	return out
}
