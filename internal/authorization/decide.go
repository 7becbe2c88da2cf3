package authorization

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"coffer/internal/identity"
	"coffer/internal/rbac"
	"coffer/internal/resource"
)

// Need is an action at a scope: what an operation needs of its caller.
type Need struct {
	Action string
	Scope  string
}

// Decision is the answer of the decision point to "may this principal
// perform an action at a scope". When Allowed is false, MissingAction and
// Scope name what the principal lacks (the first need missing when several
// were decided together), so that a page can disable a button with the
// reason and the API can answer Azure's 403.
type Decision struct {
	Allowed       bool
	MissingAction string
	Scope         string
}

// Reason says in words why a refused decision refused ("" when allowed).
func (d Decision) Reason() string {
	if d.Allowed {
		return ""
	}
	if d.Scope == TenantScope {
		return fmt.Sprintf("needs %s, which only tenant administrators hold", d.MissingAction)
	}
	return fmt.Sprintf("needs %s at scope %s", d.MissingAction, d.Scope)
}

// TenantScope is the scope of tenant-level actions.
const TenantScope = "/"

// tenantProviders are the namespaces of tenant-level actions: managing
// principals and API tokens (Coffer.Identity), the storage engine's
// maintenance (Coffer.Admin), notification targets (Coffer.Monitor) and
// creating subscriptions (Microsoft.Subscription). No role grants them: only tenant
// administrators hold them, at any scope.
var tenantProviders = []string{"Coffer.Identity/", "Coffer.Admin/", "Coffer.Monitor/", "Microsoft.Subscription/"}

// IsTenantAction reports whether action is a tenant-level action, which
// only tenant administrators hold.
func IsTenantAction(action string) bool {
	for _, p := range tenantProviders {
		if len(action) >= len(p) && strings.EqualFold(action[:len(p)], p) {
			return true
		}
	}
	return false
}

// decide is the one decision function: every answer this package gives
// (Decide, DecideAll, DecideEach, Allowed, AllowedAt, Require and the data
// path's kept decisions) is made by it, on a policy read once per call.
func decide(pol *rbac.Policy, p identity.Principal, action, scope string) Decision {
	allowed := false
	switch {
	case p.ID == "":
	case IsTenantAction(action):
		allowed = p.TenantAdmin
	default:
		allowed = pol.Allowed(p.ID, action, scope)
	}
	if allowed {
		return Decision{Allowed: true}
	}
	return Decision{MissingAction: action, Scope: scope}
}

// invalidScope is the 400 for a scope that is not one.
func invalidScope(scope string, err error) error {
	return resource.Errorf(resource.KindBadRequest, "InvalidScope", "The scope '%s' is not valid: %v", scope, err)
}

// Decide answers whether p may perform action at scope and, if not, what
// it lacks. It is the decision point the API's route table, the portal and
// the workers acting as a vault's identity all go through. An invalid
// scope is a 400 InvalidScope.
func (s *Service) Decide(ctx context.Context, p identity.Principal, action, scope string) (Decision, error) {
	return s.DecideAll(ctx, p, Need{Action: action, Scope: scope})
}

// DecideAll decides several needs on one snapshot of the role assignments:
// allowed when every one is, else the first one missing.
func (s *Service) DecideAll(ctx context.Context, p identity.Principal, needs ...Need) (Decision, error) {
	for _, n := range needs {
		if err := rbac.ValidateScope(n.Scope); err != nil {
			return Decision{}, invalidScope(n.Scope, err)
		}
	}
	pol, _, err := s.policy(ctx)
	if err != nil {
		return Decision{}, err
	}
	for _, n := range needs {
		if d := decide(pol, p, n.Action, n.Scope); !d.Allowed {
			return d, nil
		}
	}
	return Decision{Allowed: true}, nil
}

// DecideEach decides one action at each of scopes on one snapshot of the
// role assignments (for lists: what of them p may see or act on).
func (s *Service) DecideEach(ctx context.Context, p identity.Principal, action string, scopes []string) ([]Decision, error) {
	for _, sc := range scopes {
		if err := rbac.ValidateScope(sc); err != nil {
			return nil, invalidScope(sc, err)
		}
	}
	pol, _, err := s.policy(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Decision, len(scopes))
	for i, sc := range scopes {
		out[i] = decide(pol, p, action, sc)
	}
	return out, nil
}

// HoldsWithin reports, for each scope, whether p holds a role assignment
// at it or below it (rbac.Policy.HoldsWithin).
func (s *Service) HoldsWithin(ctx context.Context, p identity.Principal, scopes []string) ([]bool, error) {
	pol, err := s.Policy(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(scopes))
	for i, sc := range scopes {
		out[i] = pol.HoldsWithin(p.ID, sc)
	}
	return out, nil
}

// Visible returns the items p may perform action on, each at the scope
// scope(item) returns, in order: what a list shows a principal whose roles
// cover only some of it.
func Visible[T any](ctx context.Context, s *Service, p identity.Principal, action string, items []T, scope func(T) string) ([]T, error) {
	scopes := make([]string, len(items))
	for i, it := range items {
		scopes[i] = scope(it)
	}
	ds, err := s.DecideEach(ctx, p, action, scopes)
	if err != nil {
		return nil, err
	}
	var out []T
	for i, d := range ds {
		if d.Allowed {
			out = append(out, items[i])
		}
	}
	return out, nil
}

// Require is Decide as an error: nil when p may perform action at scope,
// else Azure's 403 AuthorizationFailed (see Forbidden).
func (s *Service) Require(ctx context.Context, p identity.Principal, action, scope string) error {
	return s.RequireAll(ctx, p, Need{Action: action, Scope: scope})
}

// RequireAll is DecideAll as an error.
func (s *Service) RequireAll(ctx context.Context, p identity.Principal, needs ...Need) error {
	d, err := s.DecideAll(ctx, p, needs...)
	if err != nil {
		return err
	}
	if !d.Allowed {
		return Forbidden(p, d)
	}
	return nil
}

// RequireLinked checks, for a request whose own need (action at scope) its
// caller holds, the need on the resource the request reads from: Azure's
// linked access check. A refusal is Azure's 403 LinkedAuthorizationFailed.
func (s *Service) RequireLinked(ctx context.Context, p identity.Principal, own, linked Need) error {
	d, err := s.DecideAll(ctx, p, linked)
	if err != nil {
		return err
	}
	if !d.Allowed {
		return LinkedForbidden(p, own, d)
	}
	return nil
}

// ErrDenied is wrapped by every refusal of the decision point.
var ErrDenied = errors.New("authorization denied")

// DeniedError is the cause of a refusal: who was refused and the decision.
// The ARM 403 errors of this package wrap it, so that a caller acting as a
// vault identity learns which action was missing (errors.As).
type DeniedError struct {
	PrincipalID string
	Decision    Decision
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("principal %s may not perform %s at %s", e.PrincipalID, e.Decision.MissingAction, e.Decision.Scope)
}

// Is makes a DeniedError match ErrDenied.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// clientName is how Azure's 403 names the caller: its client ID, or its
// object ID when it has none (a managed identity).
func clientName(p identity.Principal) string {
	if p.ClientID != "" {
		return p.ClientID
	}
	return p.ID
}

// Forbidden is Azure's 403 AuthorizationFailed for a refused decision, in
// Azure's words; it wraps a *DeniedError. It is the one place that text is
// made.
func Forbidden(p identity.Principal, d Decision) *resource.Error {
	e := resource.Errorf(resource.KindForbidden, "AuthorizationFailed",
		"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. If access was recently granted, please refresh your credentials.",
		clientName(p), p.ID, d.MissingAction, d.Scope)
	e.Err = &DeniedError{PrincipalID: p.ID, Decision: d}
	return e
}

// LinkedForbidden is Azure's 403 LinkedAuthorizationFailed: p may perform
// own but not the linked need d lacks.
func LinkedForbidden(p identity.Principal, own Need, d Decision) *resource.Error {
	e := resource.Errorf(resource.KindForbidden, "LinkedAuthorizationFailed",
		"The client '%s' with object id '%s' has permission to perform action '%s' on scope '%s'; however, it does not have permission to perform action '%s' on the linked scope(s) '%s' or the linked scope(s) are invalid.",
		clientName(p), p.ID, own.Action, own.Scope, d.MissingAction, d.Scope)
	e.Err = &DeniedError{PrincipalID: p.ID, Decision: d}
	return e
}

// Denial returns the decision a refusal of this package carries, and
// whether err is one.
func Denial(err error) (Decision, bool) {
	var d *DeniedError
	if errors.As(err, &d) {
		return d.Decision, true
	}
	return Decision{}, false
}
