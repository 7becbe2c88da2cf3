package authorization

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"coffer/internal/identity"
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// Containers says whether the subscription and resource group a scope
// lies in exist (tenant.Service implements it): role assignments at a
// scope whose container is missing are ARM's 404.
type Containers interface {
	CheckScopeExists(ctx context.Context, tx store.Tx, scope resource.ID) error
}

// checkScope validates a role assignment scope, normalises it and checks,
// in tx, that its subscription and group exist.
func (s *Service) checkScope(ctx context.Context, tx store.Tx, scope string) (string, error) {
	norm, err := rbac.NormalizeScope(scope)
	if err != nil {
		return "", rbac.ErrorFor(err)
	}
	if norm == TenantScope {
		return norm, nil
	}
	id, err := resource.Parse(norm)
	if err != nil {
		return "", resource.Errorf(resource.KindBadRequest, "InvalidScope", "The scope '%s' is not valid.", scope)
	}
	if s.Containers != nil {
		if err := s.Containers.CheckScopeExists(ctx, tx, id); err != nil {
			return "", err
		}
	}
	return norm, nil
}

// CheckScope validates a role assignment scope and that its subscription
// and group exist, and returns it normalised: the first check of every
// role assignment operation, for callers that must report it before the
// request's body.
func (s *Service) CheckScope(ctx context.Context, scope string) (string, error) {
	var norm string
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		norm, err = s.checkScope(ctx, tx, scope)
		return err
	})
	return norm, err
}

// RoleDefinitions returns the role definitions visible at scope that pass
// f (built-in roles first).
func (s *Service) RoleDefinitions(ctx context.Context, scope string, f rbac.RoleDefinitionFilter) ([]rbac.RoleDefinition, error) {
	pol, err := s.Policy(ctx)
	if err != nil {
		return nil, err
	}
	return rbac.ListRoleDefinitions(pol, scope, f), nil
}

// RoleDefinition returns the role definition with the given ID, or a 404
// RoleDefinitionDoesNotExist.
func (s *Service) RoleDefinition(ctx context.Context, id string) (rbac.RoleDefinition, error) {
	pol, err := s.Policy(ctx)
	if err != nil {
		return rbac.RoleDefinition{}, err
	}
	d, ok := pol.Role(id)
	if !ok {
		return d, resource.Errorf(resource.KindNotFound, "RoleDefinitionDoesNotExist", "The specified role definition with ID '%s' does not exist.", id)
	}
	return d, nil
}

// ListAssignments returns the role assignments a list at scope shows
// under f (those at, above and below scope, as ARM lists them), and the
// normalised scope.
func (s *Service) ListAssignments(ctx context.Context, scope string, f rbac.AssignmentFilter) (string, []rbac.Assignment, error) {
	var as []rbac.Assignment
	var norm string
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		if norm, err = s.checkScope(ctx, tx, scope); err != nil {
			return err
		}
		as, err = s.list(ctx, tx, "")
		return err
	})
	if err != nil {
		return "", nil, err
	}
	return norm, rbac.FilterAssignments(as, norm, f), nil
}

// GetAssignment returns the assignment name at scope, or a 404
// RoleAssignmentNotFound.
func (s *Service) GetAssignment(ctx context.Context, scope, name string) (rbac.Assignment, error) {
	var a rbac.Assignment
	err := s.Store.View(ctx, func(tx store.Tx) error {
		norm, err := s.checkScope(ctx, tx, scope)
		if err != nil {
			return err
		}
		a, err = s.Get(ctx, tx, norm, name)
		return err
	})
	return a, err
}

// AssignmentInput is what a role assignment PUT says.
type AssignmentInput struct {
	RoleDefinitionID                   string
	PrincipalID                        string
	PrincipalType                      string
	Description                        string
	Condition                          string
	ConditionVersion                   string
	DelegatedManagedIdentityResourceID string
}

// PutAssignment creates or updates the role assignment name at scope for
// by (the caller's principal ID), in one transaction: the scope and its
// containers, the assignment's rules (rbac.ValidateAssignment), that its
// principal exists, and no duplicate grant under another name (Put). It
// reports whether it created the assignment.
func (s *Service) PutAssignment(ctx context.Context, scope, name string, in AssignmentInput, by string) (rbac.Assignment, bool, error) {
	var a rbac.Assignment
	var created bool
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		norm, err := s.checkScope(ctx, tx, scope)
		if err != nil {
			return err
		}
		switch {
		case in.RoleDefinitionID == "":
			return rbac.ErrorFor(fmt.Errorf("%w: missing properties.roleDefinitionId", rbac.ErrInvalidRoleDefinitionID))
		case in.PrincipalID == "":
			return rbac.ErrorFor(fmt.Errorf("%w: missing properties.principalId", rbac.ErrInvalidPrincipalID))
		}
		a = rbac.Assignment{Name: name, Scope: norm, RoleDefinitionID: in.RoleDefinitionID, PrincipalID: in.PrincipalID,
			PrincipalType: in.PrincipalType, Description: in.Description, Condition: in.Condition,
			ConditionVersion: in.ConditionVersion, DelegatedManagedIdentityResourceID: in.DelegatedManagedIdentityResourceID}
		a, created, err = s.put(ctx, tx, a, true, by)
		return err
	})
	return a, created, err
}

// DeleteAssignment deletes the role assignment name at scope and returns
// it; existed is false (and err nil) when there was none.
func (s *Service) DeleteAssignment(ctx context.Context, scope, name string) (a rbac.Assignment, existed bool, err error) {
	err = s.Store.Update(ctx, func(tx store.Tx) error {
		norm, err := s.checkScope(ctx, tx, scope)
		if err != nil {
			return err
		}
		a, err = s.Delete(ctx, tx, norm, name)
		return err
	})
	if errors.Is(err, errAssignmentNotFound) {
		return a, false, nil
	}
	return a, err == nil, err
}

// RemovePrincipal deletes a principal with everything that refers to it,
// in one transaction: its role assignments (and what PrincipalDeleted
// removes) and its directory entry. A managed identity is deleted with its
// resource instead, and a principal may not delete itself.
func (s *Service) RemovePrincipal(ctx context.Context, caller identity.Principal, id string) (existed bool, err error) {
	if strings.EqualFold(id, caller.ID) {
		return false, resource.Errorf(resource.KindConflict, "CannotDeleteSelf", "A principal cannot delete itself.")
	}
	p, err := s.Identities.Get(ctx, id)
	if errors.Is(err, identity.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if p.Kind == identity.ManagedIdentity {
		return false, resource.Errorf(resource.KindConflict, "ManagedIdentityInUse",
			"Principal '%s' is the managed identity of '%s'; it is deleted with that resource.", id, p.ResourceID)
	}
	err = s.Store.Update(ctx, func(tx store.Tx) error {
		if err := s.DeletePrincipal(ctx, tx, id); err != nil {
			return err
		}
		return s.Identities.DeleteTx(ctx, tx, id)
	})
	return err == nil, err
}
