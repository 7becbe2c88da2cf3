package tenant

import (
	"context"
	"errors"

	"coffer/internal/resource"
	"coffer/internal/store"
)

// Precondition checks a write's condition (an If-Match, say) against the
// current state of what it writes: whether it exists and its ETag (store
// index). It runs inside the write's transaction; nil accepts anything.
type Precondition func(exists bool, etag uint64) error

func (p Precondition) check(exists bool, etag uint64) error {
	if p == nil {
		return nil
	}
	return p(exists, etag)
}

// errGroupNotFound is wrapped by GroupNotFound, for errors.Is.
var errGroupNotFound = errors.New("resource group not found")

// IsGroupNotFound reports whether err is a missing resource group's 404.
func IsGroupNotFound(err error) bool { return errors.Is(err, errGroupNotFound) }

// CheckScopeExists checks that the subscription and, if scope names one,
// the resource group of scope exist (for role assignments at scope).
func (s *Service) CheckScopeExists(ctx context.Context, tx store.Tx, scope resource.ID) error {
	if scope.Subscription != "" {
		if _, err := s.GetSubscription(ctx, tx, scope.Subscription); err != nil {
			return err
		}
	}
	if scope.ResourceGroup != "" {
		if _, err := s.GetGroup(ctx, tx, scope); err != nil {
			return err
		}
	}
	return nil
}

// Group returns a resource group (or its 404).
func (s *Service) Group(ctx context.Context, id resource.ID) (Group, error) {
	var g Group
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		g, err = s.GetGroup(ctx, tx, id)
		return err
	})
	return g, err
}

// Groups lists the groups of a subscription that pass f, in name order.
func (s *Service) Groups(ctx context.Context, sub string, f GroupFilter) ([]Group, error) {
	var gs []Group
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		gs, err = s.ListGroups(ctx, tx, sub, "", 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := gs[:0]
	for _, g := range gs {
		if f.Match(g) {
			out = append(out, g)
		}
	}
	return out, nil
}

func groupBeingDeleted(name string) error {
	return resource.Errorf(resource.KindConflict, "ResourceGroupBeingDeleted",
		"The resource group '%s' is in deprovisioning state and cannot perform this operation.", name)
}

// CreateOrUpdateGroup is a group PUT: pre is checked against the group as
// it is, a group being deleted is refused, then PutGroup. by and byType
// name the caller for systemData. It reports whether it created the group.
func (s *Service) CreateOrUpdateGroup(ctx context.Context, id resource.ID, in PutGroupInput, by, byType string, pre Precondition) (Group, bool, error) {
	var g Group
	var created bool
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		old, gerr := s.GetGroup(ctx, tx, id)
		if err := pre.check(gerr == nil, old.ETag); err != nil {
			return err
		}
		if gerr == nil && old.ProvisioningState == "Deleting" {
			return groupBeingDeleted(id.ResourceGroup)
		}
		var err error
		g, created, err = s.PutGroup(ctx, tx, id, in, by, byType)
		return err
	})
	return g, created, err
}

// UpdateGroupTags is a group PATCH: pre is checked against the group, then
// PatchGroup.
func (s *Service) UpdateGroupTags(ctx context.Context, id resource.ID, tags map[string]string, by, byType string, pre Precondition) (Group, error) {
	var g Group
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		old, err := s.GetGroup(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := pre.check(true, old.ETag); err != nil {
			return err
		}
		g, err = s.PatchGroup(ctx, tx, id, tags, by, byType)
		return err
	})
	return g, err
}

// StartDeleteGroup marks a group Deleting (after pre), the first step of
// deleting it; DeleteGroupContents is the second, run as a long-running
// operation. existed is false (and err nil) when there is no such group.
func (s *Service) StartDeleteGroup(ctx context.Context, id resource.ID, pre Precondition) (g Group, existed bool, err error) {
	err = s.Store.Update(ctx, func(tx store.Tx) error {
		old, err := s.GetGroup(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := pre.check(true, old.ETag); err != nil {
			return err
		}
		g, err = s.MarkGroupDeleting(ctx, tx, id)
		return err
	})
	if IsGroupNotFound(err) {
		return g, false, nil
	}
	return g, err == nil, err
}
