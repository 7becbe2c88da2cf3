package api

import (
	"context"
	"net/http"
	"strings"

	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/store"
)

func (h *coreHandlers) authorizationRoutes() []Route {
	v := AuthorizationVersions
	scope := func(r *Request) string { return r.Var("scope") }
	const ns = "{scope...}/providers/Microsoft.Authorization/"
	return []Route{
		{Method: "GET", Pattern: ns + "roleDefinitions", Type: "Microsoft.Authorization/roleDefinitions", Versions: v,
			Action: "Microsoft.Authorization/roleDefinitions/read", Scope: scope, Filter: true, Handle: h.listRoleDefinitions},
		{Method: "GET", Pattern: ns + "roleDefinitions/{id}", Type: "Microsoft.Authorization/roleDefinitions", Versions: v,
			Action: "Microsoft.Authorization/roleDefinitions/read", Scope: scope, Handle: h.getRoleDefinition},
		{Method: "GET", Pattern: ns + "roleAssignments", Type: "Microsoft.Authorization/roleAssignments", Versions: v,
			Action: "Microsoft.Authorization/roleAssignments/read", Scope: scope, Filter: true, Handle: h.listAssignments},
		{Method: "GET", Pattern: ns + "roleAssignments/{name}", Type: "Microsoft.Authorization/roleAssignments", Versions: v,
			Action: "Microsoft.Authorization/roleAssignments/read", Scope: scope, Handle: h.getAssignment},
		{Method: "PUT", Pattern: ns + "roleAssignments/{name}", Type: "Microsoft.Authorization/roleAssignments", Versions: v,
			Action: "Microsoft.Authorization/roleAssignments/write", Scope: scope, Handle: h.putAssignment},
		{Method: "DELETE", Pattern: ns + "roleAssignments/{name}", Type: "Microsoft.Authorization/roleAssignments", Versions: v,
			Action: "Microsoft.Authorization/roleAssignments/delete", Scope: scope, Handle: h.deleteAssignment},
	}
}

// checkScope validates a scope path and that its subscription and group
// exist (ARM answers 404 for assignments under missing containers).
func (h *coreHandlers) checkScope(ctx context.Context, tx store.Tx, scope string) (string, error) {
	norm, err := rbac.NormalizeScope(scope)
	if err != nil {
		return "", rbac.ErrorFor(err)
	}
	if norm == "/" {
		return norm, nil
	}
	id, err := resource.Parse(norm)
	if err != nil {
		return "", resource.Errorf(resource.KindBadRequest, "InvalidScope", "The scope '%s' is not valid.", scope)
	}
	if id.Subscription != "" {
		if _, err := h.c.Tenant.GetSubscription(ctx, tx, id.Subscription); err != nil {
			return "", err
		}
	}
	if id.ResourceGroup != "" {
		if _, err := h.c.Tenant.GetGroup(ctx, tx, id); err != nil {
			return "", err
		}
	}
	return norm, nil
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
	pol, err := h.c.Authz.Policy(ctx)
	if err != nil {
		return nil, err
	}
	sub := subscriptionOf(r.Var("scope"))
	var items []any
	var keys []string
	for _, d := range rbac.ListRoleDefinitions(pol, r.Var("scope"), f) {
		items = append(items, rbac.NewRoleDefinitionResource(d, sub))
		keys = append(keys, d.ID)
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
	pol, err := h.c.Authz.Policy(ctx)
	if err != nil {
		return nil, err
	}
	d, ok := pol.Role(r.Var("id"))
	if !ok {
		return nil, resource.Errorf(resource.KindNotFound, "RoleDefinitionDoesNotExist", "The specified role definition with ID '%s' does not exist.", r.Var("id"))
	}
	return JSON(http.StatusOK, rbac.NewRoleDefinitionResource(d, subscriptionOf(r.Var("scope")))), nil
}

func (h *coreHandlers) listAssignments(ctx context.Context, r *Request) (*Response, error) {
	f, err := rbac.ParseAssignmentFilter(r.Query("$filter"))
	if err != nil {
		return nil, rbac.ErrorFor(err)
	}
	var as []rbac.Assignment
	var scope string
	err = h.c.Store.View(ctx, func(tx store.Tx) error {
		var err error
		if scope, err = h.checkScope(ctx, tx, r.Var("scope")); err != nil {
			return err
		}
		as, err = h.c.Authz.List(ctx, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	sub := subscriptionOf(scope)
	var items []any
	var keys []string
	for _, a := range rbac.FilterAssignments(as, scope, f) {
		items = append(items, rbac.NewAssignmentResource(a, sub))
		keys = append(keys, strings.ToLower(a.ID()))
	}
	return h.s.Paginate(r, items, keys)
}

func (h *coreHandlers) getAssignment(ctx context.Context, r *Request) (*Response, error) {
	var a rbac.Assignment
	err := h.c.Store.View(ctx, func(tx store.Tx) error {
		scope, err := h.checkScope(ctx, tx, r.Var("scope"))
		if err != nil {
			return err
		}
		a, err = h.c.Authz.Get(ctx, tx, scope, r.Var("name"))
		return err
	})
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, rbac.NewAssignmentResource(a, subscriptionOf(a.Scope))), nil
}

func (h *coreHandlers) putAssignment(ctx context.Context, r *Request) (*Response, error) {
	var a rbac.Assignment
	var created bool
	err := h.c.Store.Update(ctx, func(tx store.Tx) error {
		scope, err := h.checkScope(ctx, tx, r.Var("scope"))
		if err != nil {
			return err
		}
		in, err := rbac.DecodeAssignmentRequest(r.Body, scope, r.Var("name"), nil)
		if err != nil {
			if e := resource.AsError(DecodeJSON(r.Body, &map[string]any{})); e != nil {
				return e
			}
			return rbac.ErrorFor(err)
		}
		a, created, err = h.c.Authz.Put(ctx, tx, in, h.c.Identity, r.Principal.ID)
		return err
	})
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
	var a rbac.Assignment
	err := h.c.Store.Update(ctx, func(tx store.Tx) error {
		scope, err := h.checkScope(ctx, tx, r.Var("scope"))
		if err != nil {
			return err
		}
		a, err = h.c.Authz.Delete(ctx, tx, scope, r.Var("name"))
		return err
	})
	if resource.IsCode(err, "RoleAssignmentNotFound") {
		return &Response{Status: http.StatusNoContent}, nil
	}
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, rbac.NewAssignmentResource(a, subscriptionOf(a.Scope))), nil
}
