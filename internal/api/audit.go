package api

import (
	"context"
	"net/http"

	"coffer/internal/audit"
	"coffer/internal/resource"
)

// auditRefusal writes the security log line of a request refused with 401
// (authentication) or 403 (authorization); other errors write none.
func (s *Server) auditRefusal(ctx context.Context, hr *http.Request, req *Request, reqID string, err error) {
	e := resource.AsError(err)
	if e == nil || (e.Kind != resource.KindUnauthorized && e.Kind != resource.KindForbidden) {
		return
	}
	r := audit.Refusal{Surface: audit.SurfaceAPI, RequestID: reqID, Remote: hr.RemoteAddr, Method: hr.Method, Path: hr.URL.Path,
		Code: e.Code}
	if req != nil {
		r.Principal = req.Principal.ID
	}
	if e.Kind == resource.KindUnauthorized {
		r.Reason = e.Message
		audit.AuthenticationFailed(ctx, s.logger(), r)
		return
	}
	if d, ok := audit.DenialOf(err); ok {
		r.Action, r.Scope = d.Action, d.Scope
		if r.Principal == "" {
			r.Principal = d.Principal
		}
	} else {
		r.Reason = e.Message
	}
	audit.Denied(ctx, s.logger(), r)
}

// denial is ARM's 403 for a denied action, carrying the structured denial
// for the security log.
func denial(e *resource.Error, principal, action, scope string) *resource.Error {
	e.Err = &audit.Denial{Principal: principal, Action: action, Scope: scope}
	return e
}
