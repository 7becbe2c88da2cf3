package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"coffer/internal/identity"
)

// adminTokenDescription names the API token kept in admin.json.
const adminTokenDescription = "admin.json"

// adminTokenCheck is how often a running server checks admin.json's token.
const adminTokenCheck = time.Hour

// audiences are the resource URIs of this server's API, for which clients
// get access tokens: its endpoint, and its listen port under every name its
// TLS certificate carries (as the Azure CLI asks, with a trailing slash,
// is accepted too).
func (s *Server) audiences() []string {
	out := []string{s.Endpoint()}
	scheme := "http"
	if s.cfg.TLS {
		scheme = "https"
	}
	host, port, _ := net.SplitHostPort(s.cfg.Listen)
	dns, ips := serverNames([]string{host})
	for _, ip := range ips {
		dns = append(dns, ip.String())
	}
	for _, h := range dns {
		if a := scheme + "://" + net.JoinHostPort(h, port); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// renewAdminToken keeps the API token in admin.json usable within the
// maximum API-token lifetime: when the server refuses it (expired,
// revoked, signed with another key, or issued by an older version without
// the claims now required) or it has less than half the maximum lifetime
// left, the server issues a new one and rewrites admin.json. A refused
// token's record is revoked; a half-spent one runs out by itself.
func (s *Server) renewAdminToken(ctx context.Context) error {
	if s.Admin.Token == "" || s.Admin.PrincipalID == "" {
		return nil // no admin.json (refreshAdminFile warned)
	}
	maxLife := s.IDs.MaxAPITokenLife()
	_, c, err := s.IDs.Authenticate(ctx, s.Admin.Token)
	reason := "refused: "
	switch {
	case err == nil:
		end := min(c.Expires, c.IssuedAt+int64(maxLife/time.Second))
		if time.Unix(end, 0).Sub(s.cfg.Clock.Now()) >= maxLife/2 {
			return nil
		}
		reason = "less than half its lifetime left"
	case errors.Is(err, identity.ErrExpiredToken), errors.Is(err, identity.ErrRevokedToken),
		errors.Is(err, identity.ErrInvalidClaim), errors.Is(err, identity.ErrMalformedToken),
		errors.Is(err, identity.ErrBadSignature), errors.Is(err, identity.ErrUnknownSubject):
		reason += err.Error()
	default:
		return fmt.Errorf("check the admin token: %w", err)
	}
	tok, rec, ierr := s.IDs.IssueAPIToken(ctx, s.Admin.PrincipalID, 0, adminTokenDescription)
	if errors.Is(ierr, identity.ErrNotFound) {
		s.log.Warn("the admin principal of admin.json no longer exists; its token is not renewed", "principal", s.Admin.PrincipalID)
		return nil
	}
	if ierr != nil {
		return fmt.Errorf("renew the admin token: %w", ierr)
	}
	if err != nil && c.Kind == identity.TokenAPI && c.TokenID != "" {
		if rerr := s.IDs.RevokeToken(ctx, c.TokenID); rerr != nil && !errors.Is(rerr, identity.ErrTokenNotFound) {
			return fmt.Errorf("renew the admin token: %w", rerr)
		}
	}
	s.Admin.Token = tok
	if err := s.writeAdminFile(); err != nil {
		return err
	}
	s.log.Info("renewed the API token in admin.json", "reason", reason, "expires", rec.ExpiresAt)
	return nil
}

// keepAdminToken checks admin.json's token every adminTokenCheck until ctx
// ends, renewing it as renewAdminToken says.
func (s *Server) keepAdminToken(ctx context.Context) {
	for {
		t := s.cfg.Clock.NewTimer(adminTokenCheck)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		if err := s.renewAdminToken(ctx); err != nil {
			s.log.Error("renewing the admin token failed", "err", err)
		}
	}
}
