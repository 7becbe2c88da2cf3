package dataprotection

import (
	"context"
	"errors"
	"strings"

	"coffer/internal/resource"
	"coffer/internal/store"
)

// MaxPoliciesPerVault and MaxInstancesPerVault are Azure's vault limits.
const (
	MaxPoliciesPerVault  = 5000
	MaxInstancesPerVault = 5000
)

func (s *Service) getPolicy(ctx context.Context, tx store.Tx, id resource.ID) (BaseBackupPolicyResource, error) {
	var p BaseBackupPolicyResource
	err := getJSON(ctx, tx, kindPolicy, id.Key(), &p)
	if errors.Is(err, store.ErrNotFound) {
		if _, verr := s.vaultOf(ctx, tx, id); verr != nil {
			return p, verr
		}
		return p, resource.NotFound(id)
	}
	return p, err
}

// PutPolicy creates or replaces a backup policy (synchronously, as Azure
// does). It validates the policy with ValidatePolicy.
func (s *Service) PutPolicy(ctx context.Context, id resource.ID, body []byte) (BaseBackupPolicyResource, bool, error) {
	if err := resource.ChildNameRule.Check("InvalidResourceName", id.Name()); err != nil {
		return BaseBackupPolicyResource{}, false, err
	}
	in, err := DecodePolicyResource(body)
	if err != nil {
		return in, false, err
	}
	if err := ValidatePolicy(in.Properties); err != nil {
		return in, false, err
	}
	in.Properties.Normalize()
	out := BaseBackupPolicyResource{ID: id.String(), Name: id.Name(), Type: PolicyResourceType, Properties: in.Properties}
	created := false
	err = s.Store.Update(ctx, func(tx store.Tx) error {
		created = false // a re-run (store contract) decides afresh
		if _, err := s.vaultOf(ctx, tx, id); err != nil {
			return err
		}
		_, err := s.getPolicy(ctx, tx, id)
		switch {
		case err == nil:
		case resource.IsCode(err, "ResourceNotFound"):
			created = true
			n, err := tx.List(ctx, store.Query{Kind: kindPolicy, Prefix: id.Parent().Key() + "/backuppolicies/"})
			if err != nil {
				return err
			}
			if len(n) >= MaxPoliciesPerVault {
				return userError(CodeVaultLimit, "The backup vault already has the maximum of %d backup policies.", MaxPoliciesPerVault)
			}
		default:
			return err
		}
		return putJSON(ctx, tx, kindPolicy, id.Key(), out)
	})
	return out, created, err
}

// GetPolicy returns a policy.
func (s *Service) GetPolicy(ctx context.Context, id resource.ID) (BaseBackupPolicyResource, error) {
	var p BaseBackupPolicyResource
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		p, err = s.getPolicy(ctx, tx, id)
		return err
	})
	return p, err
}

// ListPolicies lists a vault's policies.
func (s *Service) ListPolicies(ctx context.Context, vaultID resource.ID) ([]BaseBackupPolicyResource, error) {
	var out []BaseBackupPolicyResource
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := s.getVault(ctx, tx, vaultID); err != nil {
			return err
		}
		var err error
		out, err = listJSON[BaseBackupPolicyResource](ctx, tx, kindPolicy, vaultID.Key()+"/backuppolicies/")
		return err
	})
	return out, err
}

// DeletePolicy deletes a policy; it is refused while a backup instance
// uses it. It reports whether the policy existed.
func (s *Service) DeletePolicy(ctx context.Context, id resource.ID) (bool, error) {
	existed := false
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		existed = false // a re-run (store contract) decides afresh
		_, err := s.getPolicy(ctx, tx, id)
		if resource.IsCode(err, "ResourceNotFound") {
			return nil
		}
		if err != nil {
			return err
		}
		existed = true
		bis, err := listJSON[instanceRecord](ctx, tx, kindInstance, id.Parent().Key()+"/backupinstances/")
		if err != nil {
			return err
		}
		var users []string
		for _, b := range bis {
			if strings.EqualFold(b.Resource.Properties.PolicyInfo.PolicyID, id.String()) {
				users = append(users, b.Resource.Name)
			}
		}
		if len(users) > 0 {
			return withUserFacing(resource.Errorf(resource.KindConflict, CodePolicyInUse,
				"The backup policy '%s' cannot be deleted because backup instances use it: %s. Assign them another policy or delete them first.",
				id.Name(), strings.Join(users, ", ")))
		}
		return tx.Delete(ctx, kindPolicy, id.Key())
	})
	return existed, err
}
