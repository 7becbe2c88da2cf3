// Package authorization owns who may do what: it is the Microsoft.Authorization
// provider (role assignments at tenant, subscription, resource-group and
// resource scopes, the built-in role definitions, and the rules of putting,
// listing and deleting assignments), and it is Coffer's one decision point.
//
// Every caller is authorized here, once per operation: the API's route
// table before a handler runs, the portal before it renders a button or
// runs a form, and the workers that act as a backup vault's managed
// identity before each Compute call. Decide answers "may this principal
// perform this action at this scope, and if not, which action at which
// scope is missing"; Require turns a refusal into Azure's 403; Visible
// filters a list to what a principal may see. Tenant-level actions
// (Coffer.Identity, Coffer.Admin, Microsoft.Subscription) are held by
// tenant administrators only; every other action is decided by rbac's pure
// policy over the stored assignments.
//
// The policy is cached and rebuilt only when a role assignment has been
// put or deleted since (the store's KindIndex of assignments moves), so the
// per-request check costs one small read transaction, however many other
// writes the store takes.
package authorization

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"coffer/internal/clock"
	"coffer/internal/identity"
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// Kind is the store kind of role assignments.
const Kind = "Microsoft.Authorization/roleAssignments"

// Service stores role assignments and authorizes requests.
type Service struct {
	Store store.Store
	Clock clock.Clock
	// Containers, when set, checks that the subscription and group of an
	// assignment's scope exist.
	Containers Containers
	// Identities is the directory: an assignment's principal must exist in
	// it, and RemovePrincipal deletes from it.
	Identities *identity.Service
	// PrincipalDeleted, if set, runs in the transaction of DeletePrincipal,
	// so that what a deleted principal leaves behind (its access grants)
	// goes with its assignments.
	PrincipalDeleted func(ctx context.Context, tx store.Tx, principalID string) error

	mu          sync.Mutex   // held while the policy is rebuilt: one rebuild at a time
	cachedIndex uint64       // the assignments' KindIndex the cached policy was built at
	cached      *rbac.Policy // nil: none yet
	// changedAt is the highest store index at which an assignment was
	// written through this Service (see Unchanged).
	changedAt atomic.Uint64
}

// changed records a write of assignments in tx.
func (s *Service) changed(tx store.Tx) {
	for {
		cur := s.changedAt.Load()
		if tx.Index() <= cur || s.changedAt.CompareAndSwap(cur, tx.Index()) {
			return
		}
	}
}

// key is the store key of an assignment: its lower-cased resource ID, so
// that deleting a scope's records by prefix removes its assignments too.
func key(a rbac.Assignment) string { return strings.ToLower(a.ID()) }

// Policy returns the current policy (all assignments, built-in roles).
// It is rebuilt when an assignment was put or deleted after the cached one
// was built; every other write leaves it be. Concurrent callers that find
// it stale wait for one rebuild.
func (s *Service) Policy(ctx context.Context) (*rbac.Policy, error) {
	p, _, err := s.policy(ctx)
	return p, err
}

// policy returns the current policy and the store index it was read at.
func (s *Service) policy(ctx context.Context) (*rbac.Policy, uint64, error) {
	var p *rbac.Policy
	var idx uint64
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		if idx, err = tx.KindIndex(ctx, Kind); err != nil {
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		// A policy built at a later index is at least as current as
		// this snapshot.
		if s.cached != nil && s.cachedIndex >= idx {
			idx = s.cachedIndex
			p = s.cached
			return nil
		}
		as, err := s.list(ctx, tx, "")
		if err != nil {
			return err
		}
		p = rbac.NewPolicy(as, rbac.BuiltInRoles()...)
		s.cached, s.cachedIndex = p, idx
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("load role assignments: %w", err)
	}
	return p, idx, nil
}

// Allowed reports whether p may perform action at scope: Decide's answer
// as a boolean, for callers that need no reason.
func (s *Service) Allowed(ctx context.Context, p identity.Principal, action, scope string) (bool, error) {
	ok, _, err := s.AllowedAt(ctx, p, action, scope)
	return ok, err
}

// AllowedAt is Allowed, plus the store index of the assignments the
// decision was made on, for callers that keep decisions (see Unchanged).
func (s *Service) AllowedAt(ctx context.Context, p identity.Principal, action, scope string) (bool, uint64, error) {
	pol, idx, err := s.policy(ctx)
	if err != nil {
		return false, 0, err
	}
	return decide(pol, p, action, scope).Allowed, idx, nil
}

// Unchanged reports, without reading the store, whether a decision made on
// the assignments at index still holds: no assignment has been written
// through s (Put, Delete, DeletePrincipal) at a later index. A write that
// has not committed yet counts as made, so a decision taken meanwhile (on
// the old assignments) is not trusted. Assignments removed with a whole
// scope (a deleted group or subscription) bypass s; the resources under
// that scope are deleted with them.
func (s *Service) Unchanged(index uint64) bool {
	return index >= s.changedAt.Load()
}

// list returns the assignments whose keys start with prefix (all, if
// empty).
func (s *Service) list(ctx context.Context, tx store.Tx, prefix string) ([]rbac.Assignment, error) {
	objs, err := tx.List(ctx, store.Query{Kind: Kind, Prefix: prefix})
	if err != nil {
		return nil, err
	}
	out := make([]rbac.Assignment, 0, len(objs))
	for _, o := range objs {
		var a rbac.Assignment
		if err := json.Unmarshal(o.Data, &a); err != nil {
			return nil, fmt.Errorf("decode role assignment %s: %w", o.Key, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// atScope is the key prefix of the assignments at scope itself (a valid,
// normalised scope).
func atScope(scope string) string {
	return strings.ToLower(rbac.AssignmentResourceID(rbac.ScopeKey(scope), ""))
}

// List returns every assignment.
func (s *Service) List(ctx context.Context, tx store.Tx) ([]rbac.Assignment, error) {
	return s.list(ctx, tx, "")
}

// Get returns the assignment with the given scope and name, or a 404
// RoleAssignmentNotFound.
func (s *Service) Get(ctx context.Context, tx store.Tx, scope, name string) (rbac.Assignment, error) {
	var a rbac.Assignment
	o, err := tx.Get(ctx, Kind, strings.ToLower(rbac.AssignmentResourceID(scope, name)))
	if errors.Is(err, store.ErrNotFound) {
		e := NotFound(name)
		e.Err = errAssignmentNotFound
		return a, e
	}
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(o.Data, &a); err != nil {
		return a, fmt.Errorf("decode role assignment %s: %w", o.Key, err)
	}
	return a, nil
}

// errAssignmentNotFound is wrapped by Get's 404, for errors.Is.
var errAssignmentNotFound = errors.New("role assignment not found")

// NotFound is the 404 for a missing assignment.
func NotFound(name string) *resource.Error {
	return resource.Errorf(resource.KindNotFound, "RoleAssignmentNotFound", "The role assignment '%s' is not found.", name)
}

// put creates or updates an assignment after validating it (GUID name,
// scope, known role assignable there, and with checkPrincipal that its
// principal exists in s.Identities) and refusing a duplicate grant under
// another name (409 RoleAssignmentExists). It reports whether it created
// the assignment.
func (s *Service) put(ctx context.Context, tx store.Tx, a rbac.Assignment, checkPrincipal bool, by string) (rbac.Assignment, bool, error) {
	a, err := rbac.ValidateAssignment(a, nil)
	if err != nil {
		return a, false, rbac.ErrorFor(err)
	}
	if ids := s.Identities; checkPrincipal && ids != nil {
		var p identity.Principal
		o, err := tx.Get(ctx, "identity.principal", "/principals/"+strings.ToLower(a.PrincipalID))
		if errors.Is(err, store.ErrNotFound) {
			return a, false, resource.Errorf(resource.KindBadRequest, "PrincipalNotFound",
				"Principal %s does not exist in the directory %s.", strings.ReplaceAll(a.PrincipalID, "-", ""), ids.TenantID)
		}
		if err != nil {
			return a, false, err
		}
		if err := json.Unmarshal(o.Data, &p); err != nil {
			return a, false, fmt.Errorf("decode principal: %w", err)
		}
		if a.PrincipalType == "" {
			a.PrincipalType = p.Kind.PrincipalType()
		}
	}
	// A duplicate is at the same scope: reading only those keeps the
	// check inside the write transaction short (with 400 assignments,
	// reading them all held the store's writer for 20-180 ms).
	existing, err := s.list(ctx, tx, atScope(a.Scope))
	if err != nil {
		return a, false, err
	}
	if dup, ok := rbac.FindDuplicate(existing, a); ok {
		return a, false, rbac.ErrorFor(rbac.DuplicateError(dup))
	}
	now := s.Clock.Now().UTC()
	old, err := s.Get(ctx, tx, a.Scope, a.Name)
	created := err != nil
	if err != nil && !errors.Is(err, errAssignmentNotFound) {
		return a, false, err
	}
	if !created {
		if err := rbac.CheckUpdate(old, a); err != nil {
			return a, false, rbac.ErrorFor(err)
		}
		a.CreatedOn, a.CreatedBy = old.CreatedOn, old.CreatedBy
	} else {
		a.CreatedOn, a.CreatedBy = now, by
	}
	a.UpdatedOn, a.UpdatedBy = now, by
	b, err := json.Marshal(a)
	if err != nil {
		return a, false, fmt.Errorf("encode role assignment: %w", err)
	}
	if err := tx.Put(ctx, &store.Object{Kind: Kind, Key: key(a), Data: b}, store.PutOptions{}); err != nil {
		return a, false, fmt.Errorf("put role assignment %s: %w", a.Name, err)
	}
	s.changed(tx)
	return a, created, nil
}

// Delete removes an assignment and returns it.
func (s *Service) Delete(ctx context.Context, tx store.Tx, scope, name string) (rbac.Assignment, error) {
	a, err := s.Get(ctx, tx, scope, name)
	if err != nil {
		return a, err
	}
	if err := tx.Delete(ctx, Kind, key(a)); err != nil {
		return a, fmt.Errorf("delete role assignment %s: %w", name, err)
	}
	s.changed(tx)
	return a, nil
}

// DeletePrincipal removes every assignment of a principal (when the
// principal is deleted, as Azure leaves "Identity not found" assignments;
// Coffer removes them) and runs PrincipalDeleted.
func (s *Service) DeletePrincipal(ctx context.Context, tx store.Tx, principalID string) error {
	as, err := s.list(ctx, tx, "")
	if err != nil {
		return err
	}
	s.changed(tx)
	for _, a := range as {
		if strings.EqualFold(a.PrincipalID, principalID) {
			if err := tx.Delete(ctx, Kind, key(a)); err != nil && !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("delete role assignment %s: %w", a.Name, err)
			}
		}
	}
	if s.PrincipalDeleted != nil {
		if err := s.PrincipalDeleted(ctx, tx, principalID); err != nil {
			return fmt.Errorf("delete principal %s: %w", principalID, err)
		}
	}
	return nil
}

// Assign is a convenience for bootstrap and tests: assign role (by GUID)
// to principal at scope with a new random name.
func (s *Service) Assign(ctx context.Context, tx store.Tx, principalID, principalType, roleGUID, scope, by string) (rbac.Assignment, error) {
	a := rbac.Assignment{Name: identity.NewGUID(), Scope: scope, RoleDefinitionID: roleGUID, PrincipalID: principalID, PrincipalType: principalType}
	a, _, err := s.put(ctx, tx, a, false, by)
	return a, err
}
