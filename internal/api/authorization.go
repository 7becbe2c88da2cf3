package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"coffer/internal/authorization"
	"coffer/internal/rbac"
	"coffer/internal/resource"
)

func (h *coreHandlers) authorizationRoutes() []Route {
	v := AuthorizationVersions
	scope := func(r *Request) string { return r.Var("scope") }
	const ns = "{scope...}/providers/Microsoft.Authorization/"
	return []Route{
		{Method: "GET", Pattern: ns + "roleDefinitions", Type: "Microsoft.Authorization/roleDefinitions", Versions: v,
			Action: rbac.ActionRoleDefinitionsRead, Scope: scope, Filter: true, Handle: h.listRoleDefinitions},
		{Method: "GET", Pattern: ns + "roleDefinitions/{id}", Type: "Microsoft.Authorization/roleDefinitions", Versions: v,
			Action: rbac.ActionRoleDefinitionsRead, Scope: scope, Handle: h.getRoleDefinition},
		{Method: "GET", Pattern: ns + "roleAssignments", Type: "Microsoft.Authorization/roleAssignments", Versions: v,
			Action: rbac.ActionRoleAssignmentsRead, Scope: scope, Filter: true, Handle: h.listAssignments},
		{Method: "GET", Pattern: ns + "roleAssignments/{name}", Type: "Microsoft.Authorization/roleAssignments", Versions: v,
			Action: rbac.ActionRoleAssignmentsRead, Scope: scope, Handle: h.getAssignment},
		{Method: "PUT", Pattern: ns + "roleAssignments/{name}", Type: "Microsoft.Authorization/roleAssignments", Versions: v,
			Action: rbac.ActionRoleAssignmentsWrite, Scope: scope, Handle: h.putAssignment},
		{Method: "DELETE", Pattern: ns + "roleAssignments/{name}", Type: "Microsoft.Authorization/roleAssignments", Versions: v,
			Action: rbac.ActionRoleAssignmentsDelete, Scope: scope, Handle: h.deleteAssignment},
	}
}

func subscriptionOf(scope string) string {
	id, err := resource.Parse(scope)
	if err != nil {
		return ""
	}
	return id.Subscription
}

func (h *coreHandlers) listRoleDefinitions(ctx context.Context, r *Request) (*Response, error) {
	f, err := rbac.ParseRoleDefinitionFilter(r.Query("$filter"))
	if err != nil {
		return nil, rbac.ErrorFor(err)
	}
	ds, err := h.c.Authz.RoleDefinitions(ctx, r.Var("scope"), f)
	if err != nil {
		return nil, err
	}
	sub := subscriptionOf(r.Var("scope"))
	var items []any
	for _, d := range ds {
		items = append(items, rbac.NewRoleDefinitionResource(d, sub))
	}
	return JSON(http.StatusOK, Page{Value: nonNilItems(items)}), nil
}

func nonNilItems(items []any) []any {
	if items == nil {
		return []any{}
	}
	return items
}

func (h *coreHandlers) getRoleDefinition(ctx context.Context, r *Request) (*Response, error) {
	d, err := h.c.Authz.RoleDefinition(ctx, r.Var("id"))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, rbac.NewRoleDefinitionResource(d, subscriptionOf(r.Var("scope")))), nil
}

func (h *coreHandlers) listAssignments(ctx context.Context, r *Request) (*Response, error) {
	f, err := rbac.ParseAssignmentFilter(r.Query("$filter"))
	if err != nil {
		return nil, rbac.ErrorFor(err)
	}
	scope, as, err := h.c.Authz.ListAssignments(ctx, r.Var("scope"), f)
	if err != nil {
		return nil, err
	}
	sub := subscriptionOf(scope)
	var items []any
	var keys []string
	for _, a := range as {
		items = append(items, rbac.NewAssignmentResource(a, sub))
		keys = append(keys, strings.ToLower(a.ID()))
	}
	return h.s.Paginate(r, items, keys)
}

func (h *coreHandlers) getAssignment(ctx context.Context, r *Request) (*Response, error) {
	a, err := h.c.Authz.GetAssignment(ctx, r.Var("scope"), r.Var("name"))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, rbac.NewAssignmentResource(a, subscriptionOf(a.Scope))), nil
}

// decodeAssignment decodes a role assignment PUT body, with the errors
// ARM gives a body that is not JSON (InvalidRequestContent) or lacks its
// properties.
func decodeAssignment(body []byte) (authorization.AssignmentInput, error) {
	var req struct {
		Properties *rbac.AssignmentProperties `json:"properties"`
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&req); err != nil {
		if e := resource.AsError(DecodeJSON(body, &map[string]any{})); e != nil {
			return authorization.AssignmentInput{}, e
		}
		return authorization.AssignmentInput{}, rbac.ErrorFor(fmt.Errorf("%w: %v", rbac.ErrInvalidBody, err))
	}
	if req.Properties == nil {
		return authorization.AssignmentInput{}, rbac.ErrorFor(fmt.Errorf("%w: missing properties", rbac.ErrInvalidBody))
	}
	p := req.Properties
	return authorization.AssignmentInput{RoleDefinitionID: p.RoleDefinitionID, PrincipalID: p.PrincipalID, PrincipalType: p.PrincipalType,
		Description: p.Description, Condition: p.Condition, ConditionVersion: p.ConditionVersion,
		DelegatedManagedIdentityResourceID: p.DelegatedManagedIdentityResourceID}, nil
}

func (h *coreHandlers) putAssignment(ctx context.Context, r *Request) (*Response, error) {
	// The scope is reported before the body, as ARM does; PutAssignment
	// checks it again in its transaction.
	if _, err := h.c.Authz.CheckScope(ctx, r.Var("scope")); err != nil {
		return nil, err
	}
	in, err := decodeAssignment(r.Body)
	if err != nil {
		return nil, err
	}
	a, created, err := h.c.Authz.PutAssignment(ctx, r.Var("scope"), r.Var("name"), in, r.Principal.ID)
	if err != nil {
		return nil, err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return JSON(status, rbac.NewAssignmentResource(a, subscriptionOf(a.Scope))), nil
}

func (h *coreHandlers) deleteAssignment(ctx context.Context, r *Request) (*Response, error) {
	a, existed, err := h.c.Authz.DeleteAssignment(ctx, r.Var("scope"), r.Var("name"))
	if err != nil {
		return nil, err
	}
	if !existed {
		return &Response{Status: http.StatusNoContent}, nil
	}
	return JSON(http.StatusOK, rbac.NewAssignmentResource(a, subscriptionOf(a.Scope))), nil
}
