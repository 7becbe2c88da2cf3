package tenant

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"coffer/internal/authorization"
	"coffer/internal/identity"
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// Authorizer is what the tenant needs of authorization (authorization.Service
// implements it): decisions on who may see a subscription, and the Owner
// assignment of a subscription's creator.
type Authorizer interface {
	Decide(ctx context.Context, p identity.Principal, action, scope string) (authorization.Decision, error)
	DecideEach(ctx context.Context, p identity.Principal, action string, scopes []string) ([]authorization.Decision, error)
	HoldsWithin(ctx context.Context, p identity.Principal, scopes []string) ([]bool, error)
	Assign(ctx context.Context, tx store.Tx, principalID, principalType, roleGUID, scope, by string) (rbac.Assignment, error)
}

// The RBAC actions on the tenant's containers.
const (
	// ActionSubscriptionRead shows a subscription.
	ActionSubscriptionRead = "Microsoft.Resources/subscriptions/read"
	ActionGroupRead        = "Microsoft.Resources/subscriptions/resourceGroups/read"
	ActionGroupWrite       = "Microsoft.Resources/subscriptions/resourceGroups/write"
	ActionGroupDelete      = "Microsoft.Resources/subscriptions/resourceGroups/delete"
	// ActionAliasWrite creates a subscription (a tenant-level action:
	// tenant administrators only).
	ActionAliasWrite = "Microsoft.Subscription/aliases/write"
)

// Subscription returns a subscription or SubscriptionNotFound.
func (s *Service) Subscription(ctx context.Context, id string) (Subscription, error) {
	var sub Subscription
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		sub, err = s.GetSubscription(ctx, tx, id)
		return err
	})
	return sub, err
}

// VisibleSubscriptions returns the subscriptions p may see: every one for a
// tenant administrator (which creates them), else those p may read
// (Microsoft.Resources/subscriptions/read at the subscription) and, as
// Azure lists them, those where p holds a role assignment on something
// inside (a resource group, a resource): what p may do there is decided
// item by item.
func (s *Service) VisibleSubscriptions(ctx context.Context, p identity.Principal) ([]Subscription, error) {
	var subs []Subscription
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		subs, err = s.ListSubscriptions(ctx, tx)
		return err
	}); err != nil {
		return nil, err
	}
	if p.TenantAdmin {
		return subs, nil
	}
	scopes := make([]string, len(subs))
	for i, sub := range subs {
		scopes[i] = resource.SubscriptionID(sub.ID).String()
	}
	ds, err := s.Authz.DecideEach(ctx, p, ActionSubscriptionRead, scopes)
	if err != nil {
		return nil, err
	}
	within, err := s.Authz.HoldsWithin(ctx, p, scopes)
	if err != nil {
		return nil, err
	}
	var out []Subscription
	for i, d := range ds {
		if d.Allowed || within[i] {
			out = append(out, subs[i])
		}
	}
	return out, nil
}

// VisibleSubscription returns subscription id if p may see it (the rule
// of VisibleSubscriptions): else the 403 for the read it lacks, before
// whether it exists (SubscriptionNotFound) is told.
func (s *Service) VisibleSubscription(ctx context.Context, p identity.Principal, id string) (Subscription, error) {
	if err := s.requireVisible(ctx, p, id); err != nil {
		return Subscription{}, err
	}
	return s.Subscription(ctx, id)
}

// requireVisible is VisibleSubscriptions' rule for one subscription, as an
// error: nil when p may see it, else the 403 for the read it lacks.
func (s *Service) requireVisible(ctx context.Context, p identity.Principal, sub string) error {
	if p.TenantAdmin {
		return nil
	}
	scope := resource.SubscriptionID(sub).String()
	d, err := s.Authz.Decide(ctx, p, ActionSubscriptionRead, scope)
	if err != nil {
		return err
	}
	if d.Allowed {
		return nil
	}
	within, err := s.Authz.HoldsWithin(ctx, p, []string{scope})
	if err != nil {
		return err
	}
	if !within[0] {
		return authorization.Forbidden(p, d)
	}
	return nil
}

// Alias is a Microsoft.Subscription alias: the name a subscription was
// created under.
type Alias struct {
	Name              string
	SubscriptionID    string
	DisplayName       string
	Workload          string
	BillingScope      string
	ProvisioningState string
}

// AliasInput is what an alias PUT says. An empty SubscriptionID makes a
// new one; an empty DisplayName is the alias name.
type AliasInput struct {
	DisplayName    string
	Workload       string
	BillingScope   string
	SubscriptionID string
}

// aliasRecord is an alias as stored: ARM's shape of the alias resource,
// which earlier releases stored as it was answered.
type aliasRecord struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		SubscriptionID    string `json:"subscriptionId"`
		DisplayName       string `json:"displayName,omitempty"`
		Workload          string `json:"workload,omitempty"`
		BillingScope      string `json:"billingScope,omitempty"`
		ProvisioningState string `json:"provisioningState"`
	} `json:"properties"`
}

func (r aliasRecord) alias() Alias {
	p := r.Properties
	return Alias{Name: r.Name, SubscriptionID: p.SubscriptionID, DisplayName: p.DisplayName, Workload: p.Workload,
		BillingScope: p.BillingScope, ProvisioningState: p.ProvisioningState}
}

func aliasKey(name string) string {
	return "/providers/microsoft.subscription/aliases/" + strings.ToLower(name)
}

// CheckAliasName checks an alias name by Azure's rule for child resource
// names.
func CheckAliasName(name string) error {
	return resource.ChildNameRule.Check("InvalidAliasName", name)
}

// Workloads of a subscription alias.
var workloads = []string{"Production", "DevTest"}

// PutAlias creates a subscription under the alias name for by (a tenant
// administrator: the caller authorizes Microsoft.Subscription/aliases/write),
// who becomes Owner of it, as in Azure. An alias that exists is returned
// as it is (created false): PUT is idempotent.
func (s *Service) PutAlias(ctx context.Context, by identity.Principal, name string, in AliasInput) (Alias, bool, error) {
	if err := CheckAliasName(name); err != nil {
		return Alias{}, false, err
	}
	if err := resource.CheckLine("properties.displayName", in.DisplayName); err != nil {
		return Alias{}, false, err
	}
	if in.Workload != "" && !strings.EqualFold(in.Workload, workloads[0]) && !strings.EqualFold(in.Workload, workloads[1]) {
		return Alias{}, false, resource.Errorf(resource.KindBadRequest, "InvalidWorkload", "The workload '%s' is invalid. Allowed values are 'Production' and 'DevTest'.", in.Workload)
	}
	var out aliasRecord
	created := false
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		created = false // a re-run (store contract) decides afresh
		if o, err := tx.Get(ctx, KindAlias, aliasKey(name)); err == nil {
			return decode(o, &out)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		subID := in.SubscriptionID
		if subID == "" {
			subID = identity.NewGUID()
		} else if !identity.IsGUID(subID) {
			return resource.Errorf(resource.KindBadRequest, "InvalidSubscriptionId", "The subscription ID '%s' must be a GUID.", subID)
		}
		display := in.DisplayName
		if display == "" {
			display = name
		}
		if _, err := s.CreateSubscription(ctx, tx, subID, display, by.ID); err != nil {
			return err
		}
		if _, err := s.Authz.Assign(ctx, tx, by.ID, by.Kind.PrincipalType(), rbac.RoleOwner, "/subscriptions/"+strings.ToLower(subID), by.ID); err != nil {
			return err
		}
		out = aliasRecord{ID: "/providers/Microsoft.Subscription/aliases/" + name, Name: name, Type: KindAlias}
		out.Properties.SubscriptionID = strings.ToLower(subID)
		out.Properties.DisplayName = display
		out.Properties.Workload = in.Workload
		out.Properties.BillingScope = in.BillingScope
		out.Properties.ProvisioningState = "Succeeded"
		created = true
		o := store.Object{Kind: KindAlias, Key: aliasKey(name), Data: encode(out)}
		if err := tx.Put(ctx, &o, store.PutOptions{}); err != nil {
			return fmt.Errorf("put alias %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return Alias{}, false, err
	}
	return out.alias(), created, nil
}

// GetAlias returns the alias name if p may see its subscription (see
// VisibleSubscriptions), a 404 when there is none.
func (s *Service) GetAlias(ctx context.Context, p identity.Principal, name string) (Alias, error) {
	var rec aliasRecord
	err := s.Store.View(ctx, func(tx store.Tx) error {
		o, err := tx.Get(ctx, KindAlias, aliasKey(name))
		if errors.Is(err, store.ErrNotFound) {
			return resource.Errorf(resource.KindNotFound, "ResourceNotFound", "The subscription alias '%s' was not found.", name)
		}
		if err != nil {
			return err
		}
		return decode(o, &rec)
	})
	if err != nil {
		return Alias{}, err
	}
	if err := s.requireVisible(ctx, p, rec.Properties.SubscriptionID); err != nil {
		return Alias{}, err
	}
	return rec.alias(), nil
}
