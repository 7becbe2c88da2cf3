// Package tenant owns the containers every resource lives in: the tenant,
// its subscriptions and their Microsoft.Subscription aliases (a tenant
// administrator creates a subscription under an alias and becomes its
// Owner), which subscriptions a principal may see, the resource groups
// (Microsoft.Resources) with their preconditions and deletion, and the
// regions the server serves.
//
// Its operations take typed inputs and the caller's principal; HTTP and
// ARM's wire shapes stay in package api. Decisions on who may see what go
// through the decision point (package authorization).
//
// Deleting a resource group deletes what it holds: each resource provider
// registers a Cleaner that removes its resources (and their data) under a
// scope, and the group record goes last.
package tenant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"coffer/internal/clock"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// Store kinds.
const (
	KindSubscription = "Microsoft.Resources/subscriptions"
	KindGroup        = "Microsoft.Resources/resourceGroups"
	KindAlias        = "Microsoft.Subscription/aliases"
)

// Subscription is a subscription record.
type Subscription struct {
	ID          string    `json:"subscriptionId"`
	DisplayName string    `json:"displayName"`
	State       string    `json:"state"`
	TenantID    string    `json:"tenantId"`
	CreatedAt   time.Time `json:"createdAt"`
	CreatedBy   string    `json:"createdBy,omitempty"`
}

// Group is a resource group record; ID keeps the creator's casing.
type Group struct {
	ID                string            `json:"id"`
	Name              string            `json:"name"`
	Location          string            `json:"location"`
	Tags              map[string]string `json:"tags,omitempty"`
	ManagedBy         string            `json:"managedBy,omitempty"`
	ProvisioningState string            `json:"provisioningState"`
	SystemData        SystemData        `json:"systemData"`
	ETag              uint64            `json:"-"`
}

// SystemData is ARM's systemData block.
type SystemData struct {
	CreatedBy          string    `json:"createdBy,omitempty"`
	CreatedByType      string    `json:"createdByType,omitempty"`
	CreatedAt          time.Time `json:"createdAt"`
	LastModifiedBy     string    `json:"lastModifiedBy,omitempty"`
	LastModifiedByType string    `json:"lastModifiedByType,omitempty"`
	LastModifiedAt     time.Time `json:"lastModifiedAt"`
}

// Cleaner deletes a provider's resources (and their data) within scope. It
// runs inside no transaction: it must be safe to call again after a crash.
type Cleaner func(ctx context.Context, scope resource.ID) error

// Service manages subscriptions and groups.
type Service struct {
	Store    store.Store
	Clock    clock.Clock
	TenantID string
	// Regions are the locations the server serves, canonical form.
	Regions  []string
	Cleaners []Cleaner
	// Authz decides who may see a subscription and assigns a new
	// subscription's Owner (needed by VisibleSubscriptions, GetAlias and
	// PutAlias).
	Authz Authorizer
}

// CanonicalLocation folds a location the way ARM does ("West US" → "westus").
func CanonicalLocation(loc string) string {
	return strings.ToLower(strings.ReplaceAll(loc, " ", ""))
}

// CheckLocation returns the canonical location, or a 400 error naming the
// served regions.
func (s *Service) CheckLocation(loc, code, what string) (string, error) {
	c := CanonicalLocation(loc)
	for _, r := range s.Regions {
		if r == c {
			return c, nil
		}
	}
	if loc == "" {
		return "", resource.Errorf(resource.KindBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	return "", resource.Errorf(resource.KindBadRequest, code,
		"The provided location '%s' is not available for %s. List of available regions is '%s'.", loc, what, strings.Join(s.Regions, ","))
}

// Errors raised by this package.
func SubscriptionNotFound(sub string) *resource.Error {
	return resource.Errorf(resource.KindNotFound, "SubscriptionNotFound", "The subscription '%s' could not be found.", sub)
}

// GroupNotFound is the ARM error for a missing group (IsGroupNotFound
// matches it).
func GroupNotFound(rg string) *resource.Error {
	e := resource.Errorf(resource.KindNotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", rg)
	e.Err = errGroupNotFound
	return e
}

func decode(o store.Object, v any) error {
	if err := json.Unmarshal(o.Data, v); err != nil {
		return fmt.Errorf("decode %s %s: %w", o.Kind, o.Key, err)
	}
	return nil
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", v, err)) // only plain structs are encoded here
	}
	return b
}

// CreateSubscription creates a subscription record with the given ID.
func (s *Service) CreateSubscription(ctx context.Context, tx store.Tx, id, displayName, createdBy string) (Subscription, error) {
	sub := Subscription{ID: strings.ToLower(id), DisplayName: displayName, State: "Enabled", TenantID: s.TenantID,
		CreatedAt: s.Clock.Now().UTC(), CreatedBy: createdBy}
	o := store.Object{Kind: KindSubscription, Key: resource.SubscriptionID(sub.ID).Key(), Data: encode(sub)}
	if err := tx.Put(ctx, &o, store.PutOptions{CreateOnly: true}); err != nil {
		return sub, fmt.Errorf("create subscription %s: %w", id, err)
	}
	return sub, nil
}

// GetSubscription returns a subscription or SubscriptionNotFound.
func (s *Service) GetSubscription(ctx context.Context, tx store.Tx, id string) (Subscription, error) {
	var sub Subscription
	o, err := tx.Get(ctx, KindSubscription, resource.SubscriptionID(id).Key())
	if errors.Is(err, store.ErrNotFound) {
		return sub, SubscriptionNotFound(id)
	}
	if err != nil {
		return sub, err
	}
	return sub, decode(o, &sub)
}

// ListSubscriptions returns every subscription of the tenant.
func (s *Service) ListSubscriptions(ctx context.Context, tx store.Tx) ([]Subscription, error) {
	objs, err := tx.List(ctx, store.Query{Kind: KindSubscription})
	if err != nil {
		return nil, err
	}
	out := make([]Subscription, 0, len(objs))
	for _, o := range objs {
		var sub Subscription
		if err := decode(o, &sub); err != nil {
			return nil, err
		}
		out = append(out, sub)
	}
	return out, nil
}

// GetGroup returns a group or ResourceGroupNotFound (or SubscriptionNotFound).
func (s *Service) GetGroup(ctx context.Context, tx store.Tx, id resource.ID) (Group, error) {
	var g Group
	o, err := tx.Get(ctx, KindGroup, id.GroupScope().Key())
	if errors.Is(err, store.ErrNotFound) {
		if _, serr := s.GetSubscription(ctx, tx, id.Subscription); serr != nil {
			return g, serr
		}
		return g, GroupNotFound(id.ResourceGroup)
	}
	if err != nil {
		return g, err
	}
	if err := decode(o, &g); err != nil {
		return g, err
	}
	g.ETag = o.ModifyIndex
	return g, nil
}

// GroupExists reports whether a group exists.
func (s *Service) GroupExists(ctx context.Context, tx store.Tx, id resource.ID) (bool, error) {
	_, err := s.GetGroup(ctx, tx, id)
	if err == nil {
		return true, nil
	}
	if e := resource.AsError(err); e != nil && e.Kind == resource.KindNotFound {
		return false, nil
	}
	return false, err
}

// PutGroupInput is what a group PUT says.
type PutGroupInput struct {
	Location  string
	Tags      map[string]string
	ManagedBy string
}

// PutGroup creates or updates a group. The location of an existing group
// cannot change (InvalidResourceGroupLocation, as in Azure).
func (s *Service) PutGroup(ctx context.Context, tx store.Tx, id resource.ID, in PutGroupInput, principal, principalType string) (Group, bool, error) {
	if err := resource.GroupNameRule.Check("InvalidResourceGroup", id.ResourceGroup); err != nil {
		return Group{}, false, err
	}
	if err := resource.CheckTags(in.Tags); err != nil {
		return Group{}, false, err
	}
	loc, err := s.CheckLocation(in.Location, "LocationNotAvailableForResourceGroup", "resource group")
	if err != nil {
		return Group{}, false, err
	}
	if _, err := s.GetSubscription(ctx, tx, id.Subscription); err != nil {
		return Group{}, false, err
	}
	now := s.Clock.Now().UTC()
	old, err := s.GetGroup(ctx, tx, id)
	created := false
	var g Group
	switch {
	case err == nil:
		if old.Location != loc {
			return Group{}, false, resource.Errorf(resource.KindConflict, "InvalidResourceGroupLocation",
				"Invalid resource group location '%s'. The Resource group already exists in location '%s'.", in.Location, old.Location)
		}
		g = old
		g.Tags = in.Tags
		if in.ManagedBy != "" {
			g.ManagedBy = in.ManagedBy
		}
	case IsGroupNotFound(err):
		created = true
		g = Group{ID: resource.GroupID(id.Subscription, id.ResourceGroup).String(), Name: id.ResourceGroup, Location: loc,
			Tags: in.Tags, ManagedBy: in.ManagedBy, ProvisioningState: "Succeeded",
			SystemData: SystemData{CreatedBy: principal, CreatedByType: principalType, CreatedAt: now}}
	default:
		return Group{}, false, err
	}
	g.SystemData.LastModifiedBy, g.SystemData.LastModifiedByType, g.SystemData.LastModifiedAt = principal, principalType, now
	o := store.Object{Kind: KindGroup, Key: id.GroupScope().Key(), Data: encode(g)}
	if err := tx.Put(ctx, &o, store.PutOptions{}); err != nil {
		return Group{}, false, fmt.Errorf("put group %s: %w", id, err)
	}
	g.ETag = o.ModifyIndex
	return g, created, nil
}

// PatchGroup replaces a group's tags (the only mutable field with PATCH).
func (s *Service) PatchGroup(ctx context.Context, tx store.Tx, id resource.ID, tags map[string]string, principal, principalType string) (Group, error) {
	g, err := s.GetGroup(ctx, tx, id)
	if err != nil {
		return g, err
	}
	if err := resource.CheckTags(tags); err != nil {
		return g, err
	}
	if tags != nil {
		g.Tags = tags
	}
	g.SystemData.LastModifiedBy, g.SystemData.LastModifiedByType, g.SystemData.LastModifiedAt = principal, principalType, s.Clock.Now().UTC()
	o := store.Object{Kind: KindGroup, Key: id.GroupScope().Key(), Data: encode(g)}
	if err := tx.Put(ctx, &o, store.PutOptions{}); err != nil {
		return g, fmt.Errorf("patch group %s: %w", id, err)
	}
	g.ETag = o.ModifyIndex
	return g, nil
}

// ListGroups lists the groups of a subscription in name order, starting
// after the key `after` (paging), at most limit (0: all).
func (s *Service) ListGroups(ctx context.Context, tx store.Tx, sub, after string, limit int) ([]Group, error) {
	if _, err := s.GetSubscription(ctx, tx, sub); err != nil {
		return nil, err
	}
	prefix := resource.SubscriptionID(sub).Key() + "/resourcegroups/"
	objs, err := tx.List(ctx, store.Query{Kind: KindGroup, Prefix: prefix, After: after, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]Group, 0, len(objs))
	for _, o := range objs {
		var g Group
		if err := decode(o, &g); err != nil {
			return nil, err
		}
		g.ETag = o.ModifyIndex
		out = append(out, g)
	}
	return out, nil
}

// MarkGroupDeleting sets a group's provisioningState to Deleting.
func (s *Service) MarkGroupDeleting(ctx context.Context, tx store.Tx, id resource.ID) (Group, error) {
	g, err := s.GetGroup(ctx, tx, id)
	if err != nil {
		return g, err
	}
	g.ProvisioningState = "Deleting"
	o := store.Object{Kind: KindGroup, Key: id.GroupScope().Key(), Data: encode(g)}
	return g, tx.Put(ctx, &o, store.PutOptions{})
}

// DeleteGroupContents runs every Cleaner on the group and then removes every
// remaining record under it (role assignments and anything else stored
// under the group's key) and the group itself. It is idempotent.
func (s *Service) DeleteGroupContents(ctx context.Context, id resource.ID) error {
	scope := id.GroupScope()
	for _, c := range s.Cleaners {
		if err := c(ctx, scope); err != nil {
			// The group stays, usable again; what was deleted stays deleted.
			s.setGroupState(ctx, scope, "Succeeded")
			return fmt.Errorf("delete group %s: %w", scope, err)
		}
	}
	return s.Store.Update(ctx, func(tx store.Tx) error {
		objs, err := tx.List(ctx, store.Query{Prefix: scope.Key() + "/"})
		if err != nil {
			return err
		}
		for _, o := range objs {
			if err := tx.Delete(ctx, o.Kind, o.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		err = tx.Delete(ctx, KindGroup, scope.Key())
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
}

// setGroupState sets a group's provisioningState, best effort.
func (s *Service) setGroupState(ctx context.Context, id resource.ID, state string) {
	s.Store.Update(ctx, func(tx store.Tx) error {
		g, err := s.GetGroup(ctx, tx, id)
		if err != nil {
			return err
		}
		g.ProvisioningState = state
		o := store.Object{Kind: KindGroup, Key: id.GroupScope().Key(), Data: encode(g)}
		return tx.Put(ctx, &o, store.PutOptions{})
	})
}
