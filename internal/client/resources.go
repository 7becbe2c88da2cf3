package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// API versions the client sends.
const (
	ResourcesVersion     = "2021-04-01"
	AuthorizationVersion = "2022-04-01"
	AliasVersion         = "2021-10-01"
	IdentityVersion      = "2024-01-01"
)

// List follows nextLink pages of a list and returns every item.
func (c *Client) List(ctx context.Context, path, apiVersion string, query url.Values) ([]json.RawMessage, error) {
	var all []json.RawMessage
	next := path
	for next != "" {
		var page struct {
			Value    []json.RawMessage `json:"value"`
			NextLink string            `json:"nextLink"`
		}
		if _, err := c.Do(ctx, http.MethodGet, next, apiVersion, query, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Value...)
		next, query = page.NextLink, nil
	}
	return all, nil
}

// Decode unmarshals raw list items into a slice of T.
func Decode[T any](items []json.RawMessage) ([]T, error) {
	out := make([]T, 0, len(items))
	for _, it := range items {
		var v T
		if err := json.Unmarshal(it, &v); err != nil {
			return nil, fmt.Errorf("decode item: %w", err)
		}
		out = append(out, v)
	}
	return out, nil
}

// listAs lists path (following nextLink pages, see List) and decodes the
// items as T.
func listAs[T any](ctx context.Context, c *Client, path, apiVersion string, query url.Values) ([]T, error) {
	items, err := c.List(ctx, path, apiVersion, query)
	if err != nil {
		return nil, err
	}
	return Decode[T](items)
}

// Subscription is a subscription.
type Subscription struct {
	ID             string `json:"id"`
	SubscriptionID string `json:"subscriptionId"`
	DisplayName    string `json:"displayName"`
	State          string `json:"state"`
	TenantID       string `json:"tenantId"`
}

// ListSubscriptions lists the subscriptions the caller can read.
func (c *Client) ListSubscriptions(ctx context.Context) ([]Subscription, error) {
	return listAs[Subscription](ctx, c, "/subscriptions", ResourcesVersion, nil)
}

// GetSubscription reads one subscription.
func (c *Client) GetSubscription(ctx context.Context, id string) (Subscription, error) {
	var s Subscription
	_, err := c.Do(ctx, http.MethodGet, "/subscriptions/"+url.PathEscape(id), ResourcesVersion, nil, nil, &s)
	return s, err
}

// Alias is a Microsoft.Subscription alias.
type Alias struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Properties struct {
		SubscriptionID    string `json:"subscriptionId"`
		DisplayName       string `json:"displayName"`
		ProvisioningState string `json:"provisioningState"`
	} `json:"properties"`
}

// CreateSubscription creates a subscription through an alias (tenant
// administrators only).
func (c *Client) CreateSubscription(ctx context.Context, alias, displayName, subscriptionID string) (Alias, error) {
	props := map[string]string{"displayName": displayName, "workload": "Production"}
	if subscriptionID != "" {
		props["subscriptionId"] = subscriptionID
	}
	var a Alias
	_, err := c.Do(ctx, http.MethodPut, "/providers/Microsoft.Subscription/aliases/"+url.PathEscape(alias), AliasVersion, nil,
		map[string]any{"properties": props}, &a)
	return a, err
}

// Group is a resource group.
type Group struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	Properties struct {
		ProvisioningState string `json:"provisioningState"`
	} `json:"properties"`
}

func (c *Client) sub() (string, error) {
	if c.Subscription == "" {
		return "", fmt.Errorf("no subscription: pass --subscription or set COFFER_SUBSCRIPTION")
	}
	return url.PathEscape(c.Subscription), nil
}

func (c *Client) groupPath(name string) (string, error) {
	s, err := c.sub()
	if err != nil {
		return "", err
	}
	return "/subscriptions/" + s + "/resourcegroups/" + url.PathEscape(name), nil
}

// CreateGroup creates or updates a resource group.
func (c *Client) CreateGroup(ctx context.Context, name, location string, tags map[string]string) (Group, error) {
	p, err := c.groupPath(name)
	if err != nil {
		return Group{}, err
	}
	var g Group
	_, err = c.Do(ctx, http.MethodPut, p, ResourcesVersion, nil, map[string]any{"location": location, "tags": tags}, &g)
	return g, err
}

// GetGroup reads a resource group.
func (c *Client) GetGroup(ctx context.Context, name string) (Group, error) {
	p, err := c.groupPath(name)
	if err != nil {
		return Group{}, err
	}
	var g Group
	_, err = c.Do(ctx, http.MethodGet, p, ResourcesVersion, nil, nil, &g)
	return g, err
}

// ListGroups lists the subscription's resource groups.
func (c *Client) ListGroups(ctx context.Context) ([]Group, error) {
	s, err := c.sub()
	if err != nil {
		return nil, err
	}
	return listAs[Group](ctx, c, "/subscriptions/"+s+"/resourcegroups", ResourcesVersion, nil)
}

// DeleteGroup deletes a group and everything in it; with wait it follows
// the operation to its end.
func (c *Client) DeleteGroup(ctx context.Context, name string, wait bool) (*Response, error) {
	p, err := c.groupPath(name)
	if err != nil {
		return nil, err
	}
	r, err := c.Do(ctx, http.MethodDelete, p, ResourcesVersion, nil, nil, nil)
	if err != nil || !wait {
		return r, err
	}
	_, err = c.Wait(ctx, r, nil)
	return r, err
}

// Principal is a Coffer principal.
type Principal struct {
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

// Self returns the calling principal.
func (c *Client) Self(ctx context.Context) (Principal, error) {
	var p Principal
	_, err := c.Do(ctx, http.MethodGet, "/providers/Coffer.Identity/self", IdentityVersion, nil, nil, &p)
	return p, err
}

// CreateServicePrincipal creates a service principal; the answer carries
// its client secret, shown only this once.
func (c *Client) CreateServicePrincipal(ctx context.Context, displayName string) (Principal, error) {
	var p Principal
	_, err := c.Do(ctx, http.MethodPost, "/providers/Coffer.Identity/servicePrincipals", IdentityVersion, nil,
		map[string]string{"displayName": displayName}, &p)
	return p, err
}

// ListPrincipals lists every principal.
func (c *Client) ListPrincipals(ctx context.Context) ([]Principal, error) {
	return listAs[Principal](ctx, c, "/providers/Coffer.Identity/principals", IdentityVersion, nil)
}

// DeletePrincipal deletes a principal and its role assignments.
func (c *Client) DeletePrincipal(ctx context.Context, id string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/providers/Coffer.Identity/principals/"+url.PathEscape(id), IdentityVersion, nil, nil, nil)
	return err
}

// APIToken is a long-lived API token's record. Token is set only in the
// answer of CreateToken: the server never shows it again.
type APIToken struct {
	ID          string `json:"id"`
	Token       string `json:"token,omitempty"`
	PrincipalID string `json:"principalId"`
	Description string `json:"description"`
	CreatedAt   string `json:"createdAt"`
	ExpiresOn   string `json:"expiresOn"`
	Revoked     bool   `json:"revoked"`
	RevokedAt   string `json:"revokedAt,omitempty"`
}

// CreateToken issues a long-lived API token for the caller, valid for days
// (0: the server's maximum). The server requires that the client
// authenticates with an access token from ClientCredentials: an API token
// cannot create another.
func (c *Client) CreateToken(ctx context.Context, days int, description string) (APIToken, error) {
	body := map[string]any{"description": description}
	if days != 0 {
		body["expiresInDays"] = days
	}
	var t APIToken
	_, err := c.Do(ctx, http.MethodPost, "/providers/Coffer.Identity/tokens", IdentityVersion, nil, body, &t)
	return t, err
}

// ListTokens lists the caller's API tokens.
func (c *Client) ListTokens(ctx context.Context) ([]APIToken, error) {
	return listAs[APIToken](ctx, c, "/providers/Coffer.Identity/tokens", IdentityVersion, nil)
}

// ListAllTokens lists every principal's API tokens (tenant administrators).
func (c *Client) ListAllTokens(ctx context.Context) ([]APIToken, error) {
	return listAs[APIToken](ctx, c, "/providers/Coffer.Identity/tokens", IdentityVersion, url.Values{"all": {"true"}})
}

// ListPrincipalTokens lists a principal's API tokens (the principal itself
// or a tenant administrator).
func (c *Client) ListPrincipalTokens(ctx context.Context, principalID string) ([]APIToken, error) {
	return listAs[APIToken](ctx, c, "/providers/Coffer.Identity/principals/"+url.PathEscape(principalID)+"/tokens", IdentityVersion, nil)
}

// RevokeToken revokes an API token by ID: one of the caller's, or anyone's
// for a tenant administrator.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/providers/Coffer.Identity/tokens/"+url.PathEscape(id), IdentityVersion, nil, nil, nil)
	return err
}

// ClientCredentials exchanges a client ID and secret for an access token
// at the tenant's OAuth2 endpoint.
func (c *Client) ClientCredentials(ctx context.Context, tenant, clientID, secret string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret},
		"scope": {strings.TrimSuffix(c.Endpoint, "/") + "/.default"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.Endpoint, "/")+"/"+url.PathEscape(tenant)+"/oauth2/v2.0/token",
		strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	if out.AccessToken == "" {
		return "", &Error{StatusCode: resp.StatusCode, Code: out.Error, Message: out.Description}
	}
	return out.AccessToken, nil
}

// RoleDefinition is a role definition.
type RoleDefinition struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Properties struct {
		RoleName    string `json:"roleName"`
		Type        string `json:"type"`
		Description string `json:"description"`
		Permissions []struct {
			Actions    []string `json:"actions"`
			NotActions []string `json:"notActions"`
		} `json:"permissions"`
	} `json:"properties"`
}

// ListRoleDefinitions lists role definitions at scope, optionally by name.
func (c *Client) ListRoleDefinitions(ctx context.Context, scope, roleName string) ([]RoleDefinition, error) {
	q := url.Values{}
	if roleName != "" {
		q.Set("$filter", fmt.Sprintf("roleName eq '%s'", strings.ReplaceAll(roleName, "'", "''")))
	}
	return listAs[RoleDefinition](ctx, c, strings.TrimSuffix(scope, "/")+"/providers/Microsoft.Authorization/roleDefinitions", AuthorizationVersion, q)
}

// RoleAssignment is a role assignment.
type RoleAssignment struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Properties struct {
		RoleDefinitionID string `json:"roleDefinitionId"`
		PrincipalID      string `json:"principalId"`
		PrincipalType    string `json:"principalType"`
		Scope            string `json:"scope"`
		Description      string `json:"description,omitempty"`
	} `json:"properties"`
}

// CreateRoleAssignment assigns roleDefinitionID to principalID at scope
// under the assignment name (a GUID).
func (c *Client) CreateRoleAssignment(ctx context.Context, scope, name, roleDefinitionID, principalID, principalType string) (RoleAssignment, error) {
	props := map[string]string{"roleDefinitionId": roleDefinitionID, "principalId": principalID}
	if principalType != "" {
		props["principalType"] = principalType
	}
	var a RoleAssignment
	_, err := c.Do(ctx, http.MethodPut, strings.TrimSuffix(scope, "/")+"/providers/Microsoft.Authorization/roleAssignments/"+url.PathEscape(name),
		AuthorizationVersion, nil, map[string]any{"properties": props}, &a)
	return a, err
}

// ListRoleAssignments lists assignments at scope under an optional $filter.
func (c *Client) ListRoleAssignments(ctx context.Context, scope, filter string) ([]RoleAssignment, error) {
	q := url.Values{}
	if filter != "" {
		q.Set("$filter", filter)
	}
	return listAs[RoleAssignment](ctx, c, strings.TrimSuffix(scope, "/")+"/providers/Microsoft.Authorization/roleAssignments", AuthorizationVersion, q)
}

// DeleteRoleAssignment deletes an assignment by its full ID.
func (c *Client) DeleteRoleAssignment(ctx context.Context, id string) error {
	_, err := c.Do(ctx, http.MethodDelete, id, AuthorizationVersion, nil, nil, nil)
	return err
}
