package api

import (
	"coffer/internal/audit"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"coffer/internal/authorization"
	"coffer/internal/identity"
	"coffer/internal/resource"
)

func (h *coreHandlers) identityRoutes() []Route {
	iv := IdentityVersions
	return []Route{
		// OpenID discovery and OAuth2 client credentials, at the paths the
		// Azure identity SDK (MSAL) and the Azure CLI (AD FS authority) use.
		{Method: "GET", Pattern: "/{tenant}/v2.0/.well-known/openid-configuration", Anonymous: true, Handle: h.openIDConfig},
		{Method: "GET", Pattern: "/{tenant}/.well-known/openid-configuration", Anonymous: true, Handle: h.openIDConfig},
		// The Azure CLI checks a tenant at {loginEndpoint}/{tenant}/… with
		// loginEndpoint = /adfs.
		{Method: "GET", Pattern: "/adfs/{tenant}/.well-known/openid-configuration", Anonymous: true, Handle: h.openIDConfig},
		{Method: "POST", Pattern: "/{tenant}/oauth2/v2.0/token", Anonymous: true, Handle: h.token},
		{Method: "POST", Pattern: "/{tenant}/oauth2/token", Anonymous: true, Handle: h.token},
		{Method: "GET", Pattern: "/{tenant}/discovery/v2.0/keys", Anonymous: true, Handle: h.jwks},
		{Method: "GET", Pattern: "/metadata/endpoints", Anonymous: true, Handle: h.cloudEndpoints},
		// Coffer.Identity: principals and API tokens.
		{Method: "GET", Pattern: "/providers/Coffer.Identity/self", Type: "Coffer.Identity/self", Versions: iv,
			Checks: "any principal: its own record", Handle: h.self},
		{Method: "GET", Pattern: "/providers/Coffer.Identity/principals", Type: "Coffer.Identity/principals", Versions: iv,
			TenantAction: actionPrincipalsRead, Handle: h.listPrincipals},
		{Method: "GET", Pattern: "/providers/Coffer.Identity/principals/{id}", Type: "Coffer.Identity/principals", Versions: iv,
			TenantAction: actionPrincipalsRead, Self: isSelf, Handle: h.getPrincipal},
		{Method: "POST", Pattern: "/providers/Coffer.Identity/servicePrincipals", Type: "Coffer.Identity/servicePrincipals", Versions: iv,
			TenantAction: "Coffer.Identity/servicePrincipals/write", Handle: h.createServicePrincipal},
		{Method: "DELETE", Pattern: "/providers/Coffer.Identity/principals/{id}", Type: "Coffer.Identity/principals", Versions: iv,
			TenantAction: "Coffer.Identity/principals/delete", Handle: h.deletePrincipal},
		{Method: "POST", Pattern: "/providers/Coffer.Identity/tokens", Type: "Coffer.Identity/tokens", Versions: iv,
			Checks: "any principal, for itself, with an access token from its client credentials", Handle: h.createToken},
		{Method: "GET", Pattern: "/providers/Coffer.Identity/tokens", Type: "Coffer.Identity/tokens", Versions: iv,
			Checks: "the caller's own tokens; with ?all=true " + actionTokensRead + " (tenant administrators)", Handle: h.listTokens},
		{Method: "GET", Pattern: "/providers/Coffer.Identity/principals/{id}/tokens", Type: "Coffer.Identity/tokens", Versions: iv,
			TenantAction: actionTokensRead, Self: isSelf, Handle: h.listPrincipalTokens},
		{Method: "GET", Pattern: "/providers/Coffer.Identity/tokens/{id}", Type: "Coffer.Identity/tokens", Versions: iv,
			Checks: "the token's owner, or " + actionTokensRead + " (tenant administrators)", Handle: h.getToken},
		{Method: "DELETE", Pattern: "/providers/Coffer.Identity/tokens/{id}", Type: "Coffer.Identity/tokens", Versions: iv,
			Checks: "the token's owner, or " + actionTokensDelete + " (tenant administrators)", Handle: h.revokeToken},
	}
}

func (h *coreHandlers) knownTenant(t string) bool {
	return strings.EqualFold(t, h.c.Identity.TenantID) || strings.EqualFold(t, "adfs") ||
		strings.EqualFold(t, "organizations") || strings.EqualFold(t, "common")
}

func (h *coreHandlers) openIDConfig(ctx context.Context, r *Request) (*Response, error) {
	t := r.Var("tenant")
	if !h.knownTenant(t) {
		return nil, resource.Errorf(resource.KindNotFound, "TenantNotFound", "Tenant '%s' not found.", t)
	}
	base := r.BaseURL + "/" + t
	issuer := base + "/v2.0"
	tokenPath := base + "/oauth2/v2.0/token"
	if strings.EqualFold(t, "adfs") {
		issuer, tokenPath = base, base+"/oauth2/token"
	}
	return JSON(http.StatusOK, map[string]any{
		"issuer":                                issuer,
		"token_endpoint":                        tokenPath,
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_types_supported":              []string{"token"},
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic"},
		"id_token_signing_alg_values_supported": []string{"EdDSA"},
		"subject_types_supported":               []string{"pairwise"},
		"tenant_region_scope":                   nil,
	}), nil
}

func (h *coreHandlers) jwks(ctx context.Context, r *Request) (*Response, error) {
	pub := h.c.Identity.Signer.PublicKey()
	return JSON(http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": h.c.Identity.Signer.KeyID(),
		"x": base64.RawURLEncoding.EncodeToString(ed25519.PublicKey(pub)),
	}}}), nil
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func (h *coreHandlers) token(ctx context.Context, r *Request) (*Response, error) {
	if !h.knownTenant(r.Var("tenant")) {
		return JSON(http.StatusBadRequest, oauthError{"invalid_request", "Tenant '" + r.Var("tenant") + "' not found."}), nil
	}
	form, err := url.ParseQuery(string(r.Body))
	if err != nil {
		return JSON(http.StatusBadRequest, oauthError{"invalid_request", "The request body must be application/x-www-form-urlencoded."}), nil
	}
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		return JSON(http.StatusBadRequest, oauthError{"unsupported_grant_type", "Only the client_credentials grant is supported, not '" + gt + "'."}), nil
	}
	id, secret := form.Get("client_id"), form.Get("client_secret")
	if u, p, ok := r.HTTP.BasicAuth(); ok {
		id, secret = u, p
	}
	if id == "" || secret == "" {
		return JSON(http.StatusBadRequest, oauthError{"invalid_request", "client_id and client_secret are required."}), nil
	}
	audience := ""
	if scopes := strings.Fields(form.Get("scope")); len(scopes) > 0 {
		audience = strings.TrimSuffix(scopes[0], "/.default")
	}
	if audience == "" {
		audience = form.Get("resource")
	}
	tok, ttl, err := h.c.Identity.ClientCredentials(ctx, id, secret, audience)
	if errors.Is(err, identity.ErrUnknownAudience) {
		want := ""
		if len(h.c.Identity.Audiences) > 0 {
			want = " Request '" + strings.TrimRight(h.c.Identity.Audiences[0], "/") + "/.default'."
		}
		if audience == "" {
			return JSON(http.StatusBadRequest, oauthError{"invalid_request", "The request must name the resource in 'scope' (or 'resource')." + want}), nil
		}
		return JSON(http.StatusBadRequest, oauthError{"invalid_resource", "The resource '" + audience + "' is not served by this server." + want}), nil
	}
	if errors.Is(err, identity.ErrInvalidClient) {
		audit.AuthenticationFailed(ctx, h.s.logger(), audit.Refusal{Surface: audit.SurfaceOAuth, RequestID: r.RequestID,
			Remote: r.HTTP.RemoteAddr, Path: r.HTTP.URL.Path, ClientID: resource.Printable(id), Code: "invalid_client"})
		return JSON(http.StatusUnauthorized, oauthError{"invalid_client", "Invalid client ID or client secret."}), nil
	}
	if err != nil {
		return nil, err
	}
	secs := int(ttl / time.Second)
	return JSON(http.StatusOK, map[string]any{"token_type": "Bearer", "access_token": tok, "expires_in": secs,
		"ext_expires_in": secs, "expires_on": h.s.Clock.Now().Add(ttl).Unix(), "resource": audience}), nil
}

func (h *coreHandlers) cloudEndpoints(ctx context.Context, r *Request) (*Response, error) {
	b := r.BaseURL
	return JSON(http.StatusOK, map[string]any{
		"galleryEndpoint": b + "/", "graphEndpoint": b + "/", "portalEndpoint": b + "/",
		"authentication": map[string]any{"loginEndpoint": b + "/adfs", "audiences": []string{b + "/"}},
	}), nil
}

// principalJSON is the Coffer.Identity wire shape of a principal.
type principalJSON struct {
	ID           string `json:"id"`
	PrincipalID  string `json:"principalId"`
	Kind         string `json:"kind"`
	DisplayName  string `json:"displayName"`
	ClientID     string `json:"clientId,omitempty"`
	ClientSecret string `json:"clientSecret,omitempty"`
	TenantID     string `json:"tenantId"`
	ResourceID   string `json:"resourceId,omitempty"`
	TenantAdmin  bool   `json:"tenantAdmin,omitempty"`
	CreatedAt    string `json:"createdAt"`
}

func toPrincipalJSON(p identity.Principal) principalJSON {
	return principalJSON{ID: "/providers/Coffer.Identity/principals/" + p.ID, PrincipalID: p.ID, Kind: string(p.Kind),
		DisplayName: p.DisplayName, ClientID: p.ClientID, TenantID: p.TenantID, ResourceID: p.ResourceID,
		TenantAdmin: p.TenantAdmin, CreatedAt: FormatTime(p.CreatedAt)}
}

// Tenant-level actions of Coffer.Identity (authorization.IsTenantAction).
const (
	actionPrincipalsRead = "Coffer.Identity/principals/read"
	actionTokensRead     = "Coffer.Identity/tokens/read"
	actionTokensDelete   = "Coffer.Identity/tokens/delete"
)

// isSelf reports whether the {id} of the path is the caller.
func isSelf(r *Request) bool { return strings.EqualFold(r.Var("id"), r.Principal.ID) }

func (h *coreHandlers) self(ctx context.Context, r *Request) (*Response, error) {
	return JSON(http.StatusOK, toPrincipalJSON(r.Principal)), nil
}

func (h *coreHandlers) listPrincipals(ctx context.Context, r *Request) (*Response, error) {
	ps, err := h.c.Identity.List(ctx)
	if err != nil {
		return nil, err
	}
	items := make([]any, 0, len(ps))
	keys := make([]string, 0, len(ps))
	for _, p := range ps {
		items = append(items, toPrincipalJSON(p))
		keys = append(keys, p.ID)
	}
	return h.s.Paginate(r, items, keys)
}

func (h *coreHandlers) getPrincipal(ctx context.Context, r *Request) (*Response, error) {
	p, err := h.c.Identity.Get(ctx, r.Var("id"))
	if errors.Is(err, identity.ErrNotFound) {
		return nil, identity.NotFound(r.Var("id"))
	}
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, toPrincipalJSON(p)), nil
}

func (h *coreHandlers) createServicePrincipal(ctx context.Context, r *Request) (*Response, error) {
	var in struct {
		DisplayName string `json:"displayName"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.DisplayName == "" || len(in.DisplayName) > 120 {
		return nil, resource.Errorf(resource.KindBadRequest, "InvalidDisplayName", "displayName is required and must be at most 120 characters.").WithTarget("displayName")
	}
	if err := resource.CheckLine("displayName", in.DisplayName); err != nil {
		return nil, err
	}
	p, secret, err := h.c.Identity.Create(ctx, identity.CreateOptions{Kind: identity.ServicePrincipal, DisplayName: in.DisplayName, WithSecret: true})
	if err != nil {
		return nil, err
	}
	out := toPrincipalJSON(p)
	out.ClientSecret = secret
	return JSON(http.StatusCreated, out), nil
}

func (h *coreHandlers) deletePrincipal(ctx context.Context, r *Request) (*Response, error) {
	existed, err := h.c.Authz.RemovePrincipal(ctx, r.Principal, r.Var("id"))
	if err != nil {
		return nil, err
	}
	if !existed {
		return &Response{Status: http.StatusNoContent}, nil
	}
	return &Response{Status: http.StatusOK}, nil
}

// tokenJSON is the Coffer.Identity wire shape of an API token; the token
// itself appears only in the answer that creates it.
type tokenJSON struct {
	ID          string `json:"id"`
	Token       string `json:"token,omitempty"`
	PrincipalID string `json:"principalId"`
	Description string `json:"description"`
	CreatedAt   string `json:"createdAt"`
	ExpiresOn   string `json:"expiresOn"`
	Revoked     bool   `json:"revoked"`
	RevokedAt   string `json:"revokedAt,omitempty"`
}

func toTokenJSON(t identity.APIToken) tokenJSON {
	out := tokenJSON{ID: t.ID, PrincipalID: t.PrincipalID, Description: t.Description, CreatedAt: FormatTime(t.CreatedAt),
		ExpiresOn: FormatTime(t.ExpiresAt), Revoked: t.Revoked}
	if t.Revoked {
		out.RevokedAt = FormatTime(t.RevokedAt)
	}
	return out
}

// createToken issues a long-lived API token to the caller (coffer login,
// coffer token create). Only a request made with an access token from the
// client-credentials grant may (identity.MintAPIToken).
func (h *coreHandlers) createToken(ctx context.Context, r *Request) (*Response, error) {
	var in struct {
		ExpiresInDays int    `json:"expiresInDays"`
		Description   string `json:"description"`
	}
	if len(r.Body) > 0 {
		if err := r.Decode(&in); err != nil {
			return nil, err
		}
	}
	maxLife := h.c.Identity.MaxAPITokenLife()
	if in.ExpiresInDays < 0 {
		return nil, resource.Errorf(resource.KindBadRequest, "InvalidExpiry", "expiresInDays must be positive (or omitted for this server's maximum, %s).", formatLifetime(maxLife)).WithTarget("expiresInDays")
	}
	if len(in.Description) > 256 {
		return nil, resource.Errorf(resource.KindBadRequest, "InvalidDescription", "description must be at most 256 characters.").WithTarget("description")
	}
	if err := resource.CheckLine("description", in.Description); err != nil {
		return nil, err
	}
	ttl := time.Duration(in.ExpiresInDays) * 24 * time.Hour
	tok, rec, err := h.c.Identity.MintAPIToken(ctx, r.Claims, ttl, in.Description)
	switch {
	case errors.Is(err, identity.ErrLifetimeExceeded):
		return nil, resource.Errorf(resource.KindBadRequest, "InvalidExpiry",
			"expiresInDays %d is longer than this server's maximum API-token lifetime of %s (serve --max-api-token-lifetime).",
			in.ExpiresInDays, formatLifetime(maxLife)).WithTarget("expiresInDays")
	case errors.Is(err, identity.ErrFreshCredentialsRequired):
		return nil, resource.Errorf(resource.KindForbidden, "FreshCredentialsRequired",
			"An API token can only be created with an access token from the client-credentials grant (the client ID and secret, as `coffer login` and `coffer token create -u -p` use); an API token cannot create another.")
	case err != nil:
		return nil, err
	}
	out := toTokenJSON(rec)
	out.Token = tok
	return JSON(http.StatusCreated, out), nil
}

// formatLifetime says a lifetime in days when it is whole days.
func formatLifetime(d time.Duration) string {
	switch {
	case d == 24*time.Hour:
		return "1 day"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

func (h *coreHandlers) tokenPage(r *Request, ts []identity.APIToken) (*Response, error) {
	items := make([]any, 0, len(ts))
	keys := make([]string, 0, len(ts))
	for _, t := range ts {
		items = append(items, toTokenJSON(t))
		keys = append(keys, t.CreatedAt.UTC().Format("20060102T150405.000000000")+"/"+t.ID)
	}
	return h.s.Paginate(r, items, keys)
}

// listTokens lists the caller's API tokens, or with ?all=true (tenant
// administrator) every principal's.
func (h *coreHandlers) listTokens(ctx context.Context, r *Request) (*Response, error) {
	owner := r.Principal.ID
	switch all := r.Query("all"); all {
	case "", "false":
	case "true":
		if err := h.s.Authorize(ctx, r, actionTokensRead, authorization.TenantScope); err != nil {
			return nil, err
		}
		owner = ""
	default:
		return nil, resource.Errorf(resource.KindBadRequest, "InvalidQueryParameterValue", "The value '%s' of 'all' is invalid: use true or false.", all)
	}
	ts, err := h.c.Identity.ListAPITokens(ctx, owner)
	if err != nil {
		return nil, err
	}
	return h.tokenPage(r, ts)
}

// listPrincipalTokens lists one principal's API tokens: the principal
// itself or a tenant administrator.
func (h *coreHandlers) listPrincipalTokens(ctx context.Context, r *Request) (*Response, error) {
	id := r.Var("id")
	if !isSelf(r) {
		if _, err := h.c.Identity.Get(ctx, id); errors.Is(err, identity.ErrNotFound) {
			return nil, identity.NotFound(id)
		} else if err != nil {
			return nil, err
		}
	}
	ts, err := h.c.Identity.ListAPITokens(ctx, id)
	if err != nil {
		return nil, err
	}
	return h.tokenPage(r, ts)
}

// ownToken returns an API token's record if the caller owns it or is a
// tenant administrator (else 403, naming action).
func (h *coreHandlers) ownToken(ctx context.Context, r *Request, action string) (identity.APIToken, error) {
	t, err := h.c.Identity.GetAPIToken(ctx, r.Var("id"))
	if errors.Is(err, identity.ErrTokenNotFound) {
		return t, resource.Errorf(resource.KindNotFound, "TokenNotFound", "The token '%s' was not found.", r.Var("id"))
	}
	if err != nil {
		return t, err
	}
	if !strings.EqualFold(t.PrincipalID, r.Principal.ID) {
		if err := h.s.Authorize(ctx, r, action, authorization.TenantScope); err != nil {
			return t, err
		}
	}
	return t, nil
}

func (h *coreHandlers) getToken(ctx context.Context, r *Request) (*Response, error) {
	t, err := h.ownToken(ctx, r, actionTokensRead)
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, toTokenJSON(t)), nil
}

// revokeToken revokes an API token: its owner's or, for a tenant
// administrator, anyone's.
func (h *coreHandlers) revokeToken(ctx context.Context, r *Request) (*Response, error) {
	if _, err := h.ownToken(ctx, r, actionTokensDelete); err != nil {
		return nil, err
	}
	if err := h.c.Identity.RevokeToken(ctx, r.Var("id")); err != nil {
		return nil, err
	}
	return &Response{Status: http.StatusOK}, nil
}
