// Package audit writes the security log: one structured line (slog, at
// Warn) for every security-relevant refusal — an authentication that
// failed (a bad or expired token, wrong client credentials, an unknown or
// revoked access grant on the data plane or NBD) and an authorization that
// denied an action — in one shape whatever the surface (the ARM API, the
// OAuth endpoint, the SAS data plane, NBD), so that an operator can alert
// on it. A line names who (the principal, or the client ID that tried),
// what (the action and scope, or the reason), where from (the remote
// address) and which request; it never holds a credential: tokens,
// secrets and grant URLs are not given to this package.
package audit

import (
	"context"
	"log/slog"
)

// Surfaces a refusal happens on.
const (
	SurfaceAPI   = "api"
	SurfaceOAuth = "oauth"
	SurfaceData  = "data"
	SurfaceNBD   = "nbd"
)

// Event names.
const (
	EventAuthenticationFailed = "authentication_failed"
	EventAuthorizationDenied  = "authorization_denied"
)

// Refusal is one refused request.
type Refusal struct {
	Surface   string
	RequestID string
	Remote    string
	Method    string
	Path      string // the request path, never its query (a SAS carries its token there)
	// Principal is the authenticated principal (denials), ClientID the
	// client that tried to authenticate (OAuth), when known.
	Principal string
	ClientID  string
	// Action and Scope are what was denied.
	Action, Scope string
	// Code and Reason say why (an ARM or storage error code, a sentence).
	Code, Reason string
}

// AuthenticationFailed logs a failed authentication.
func AuthenticationFailed(ctx context.Context, log *slog.Logger, r Refusal) {
	write(ctx, log, "security: authentication failed", EventAuthenticationFailed, r)
}

// Denied logs a denied authorization.
func Denied(ctx context.Context, log *slog.Logger, r Refusal) {
	write(ctx, log, "security: authorization denied", EventAuthorizationDenied, r)
}

func write(ctx context.Context, log *slog.Logger, msg, event string, r Refusal) {
	if log == nil {
		log = slog.Default()
	}
	attrs := []slog.Attr{slog.String("event", event), slog.String("surface", r.Surface)}
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	add("request", r.RequestID)
	add("remote", r.Remote)
	add("method", r.Method)
	add("path", r.Path)
	add("principal", r.Principal)
	add("client", r.ClientID)
	add("action", r.Action)
	add("scope", r.Scope)
	add("code", r.Code)
	add("reason", r.Reason)
	log.LogAttrs(ctx, slog.LevelWarn, msg, attrs...)
}
