package api

import (
	"context"
	"errors"
	"net/http"

	"coffer/internal/audit"
	"coffer/internal/authorization"
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
	var d *authorization.DeniedError
	if errors.As(err, &d) {
		r.Action, r.Scope = d.Decision.MissingAction, d.Decision.Scope
		if r.Principal == "" {
			r.Principal = d.PrincipalID
		}
	} else {
		r.Reason = e.Message
	}
	audit.Denied(ctx, s.logger(), r)
}
