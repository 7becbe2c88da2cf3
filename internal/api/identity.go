package api

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"coffer/internal/identity"
	"coffer/internal/resource"
	"coffer/internal/store"
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
		{Method: "GET", Pattern: "/providers/Coffer.Identity/self", Type: "Coffer.Identity/self", Versions: iv, Handle: h.self},
		{Method: "GET", Pattern: "/providers/Coffer.Identity/principals", Type: "Coffer.Identity/principals", Versions: iv, Handle: h.listPrincipals},
		{Method: "GET", Pattern: "/providers/Coffer.Identity/principals/{id}", Type: "Coffer.Identity/principals", Versions: iv, Handle: h.getPrincipal},
		{Method: "POST", Pattern: "/providers/Coffer.Identity/servicePrincipals", Type: "Coffer.Identity/servicePrincipals", Versions: iv, Handle: h.createServicePrincipal},
		{Method: "DELETE", Pattern: "/providers/Coffer.Identity/principals/{id}", Type: "Coffer.Identity/principals", Versions: iv, Handle: h.deletePrincipal},
		{Method: "POST", Pattern: "/providers/Coffer.Identity/tokens", Type: "Coffer.Identity/tokens", Versions: iv, Handle: h.createToken},
		{Method: "DELETE", Pattern: "/providers/Coffer.Identity/tokens/{id}", Type: "Coffer.Identity/tokens", Versions: iv, Handle: h.revokeToken},
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
	audience := strings.TrimSuffix(strings.Fields(form.Get("scope") + " ")[0], "/.default")
	if audience == "" {
		audience = form.Get("resource")
	}
	tok, ttl, err := h.c.Identity.ClientCredentials(ctx, id, secret, audience)
	if errors.Is(err, identity.ErrInvalidClient) {
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

func tenantAdminOnly(r *Request, action string) error {
	if !r.Principal.TenantAdmin {
		return AuthorizationFailed(r.Principal, action, "/")
	}
	return nil
}

func (h *coreHandlers) self(ctx context.Context, r *Request) (*Response, error) {
	return JSON(http.StatusOK, toPrincipalJSON(r.Principal)), nil
}

func (h *coreHandlers) listPrincipals(ctx context.Context, r *Request) (*Response, error) {
	if err := tenantAdminOnly(r, "Coffer.Identity/principals/read"); err != nil {
		return nil, err
	}
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
	if !strings.EqualFold(r.Var("id"), r.Principal.ID) {
		if err := tenantAdminOnly(r, "Coffer.Identity/principals/read"); err != nil {
			return nil, err
		}
	}
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
	if err := tenantAdminOnly(r, "Coffer.Identity/servicePrincipals/write"); err != nil {
		return nil, err
	}
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
	if err := tenantAdminOnly(r, "Coffer.Identity/principals/delete"); err != nil {
		return nil, err
	}
	id := r.Var("id")
	if strings.EqualFold(id, r.Principal.ID) {
		return nil, resource.Errorf(resource.KindConflict, "CannotDeleteSelf", "A principal cannot delete itself.")
	}
	p, err := h.c.Identity.Get(ctx, id)
	if errors.Is(err, identity.ErrNotFound) {
		return &Response{Status: http.StatusNoContent}, nil
	}
	if err != nil {
		return nil, err
	}
	if p.Kind == identity.ManagedIdentity {
		return nil, resource.Errorf(resource.KindConflict, "ManagedIdentityInUse",
			"Principal '%s' is the managed identity of '%s'; it is deleted with that resource.", id, p.ResourceID)
	}
	err = h.c.Store.Update(ctx, func(tx store.Tx) error {
		if err := h.c.Authz.DeletePrincipal(ctx, tx, id); err != nil {
			return err
		}
		return h.c.Identity.DeleteTx(ctx, tx, id)
	})
	if err != nil {
		return nil, err
	}
	return &Response{Status: http.StatusOK}, nil
}

// createToken issues a long-lived API token to the caller (coffer login).
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
	if in.ExpiresInDays == 0 {
		in.ExpiresInDays = 90
	}
	if in.ExpiresInDays < 1 || in.ExpiresInDays > 3650 {
		return nil, resource.Errorf(resource.KindBadRequest, "InvalidExpiry", "expiresInDays must be between 1 and 3650.").WithTarget("expiresInDays")
	}
	ttl := time.Duration(in.ExpiresInDays) * 24 * time.Hour
	tok, id, err := h.c.Identity.IssueAPIToken(ctx, r.Principal.ID, ttl, in.Description)
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusCreated, map[string]any{"id": id, "token": tok,
		"expiresOn": FormatTime(h.s.Clock.Now().Add(ttl)), "principalId": r.Principal.ID}), nil
}

func (h *coreHandlers) revokeToken(ctx context.Context, r *Request) (*Response, error) {
	if !r.Principal.TenantAdmin && !strings.EqualFold(r.Claims.TokenID, r.Var("id")) {
		return nil, tenantAdminOnly(r, "Coffer.Identity/tokens/delete")
	}
	err := h.c.Identity.RevokeToken(ctx, r.Var("id"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, resource.Errorf(resource.KindNotFound, "TokenNotFound", "The token '%s' was not found.", r.Var("id"))
	}
	if err != nil {
		return nil, err
	}
	return &Response{Status: http.StatusOK}, nil
}
