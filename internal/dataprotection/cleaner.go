package dataprotection

import (
	"context"
	"fmt"
	"strings"

	"coffer/internal/resource"
	"coffer/internal/store"
)

// Cleaner is the tenant.Cleaner of Microsoft.DataProtection: deleting a
// resource group deletes its backup vaults with their managed identities,
// policies and jobs — but, as in Azure, not while a vault still protects
// disks: then nothing is deleted and the group deletion fails with the
// vault's CodeVaultNotEmpty error. It checks every vault before deleting
// any, so a refusal leaves the group as it was.
func (s *Service) Cleaner(ctx context.Context, scope resource.ID) error {
	vaults, err := s.ListVaults(ctx, scope)
	if err != nil {
		if e := resource.AsError(err); e != nil && e.Kind == resource.KindNotFound {
			return nil
		}
		return fmt.Errorf("clean backup vaults in %s: %w", scope, err)
	}
	for _, v := range vaults {
		id, err := resource.Parse(v.ID)
		if err != nil {
			return fmt.Errorf("clean backup vaults in %s: %w", scope, err)
		}
		var n int
		if err := s.Store.View(ctx, func(tx store.Tx) error {
			bis, err := listJSON[instanceRecord](ctx, tx, kindInstance, id.Key()+"/backupinstances/")
			n = len(bis)
			return err
		}); err != nil {
			return fmt.Errorf("clean backup vaults in %s: %w", scope, err)
		}
		if n > 0 {
			return withUserFacing(resource.Errorf(resource.KindConflict, CodeVaultNotEmpty,
				"The resource group '%s' cannot be deleted because its backup vault '%s' still protects %d disk(s). Delete the backup instances first.",
				scope.ResourceGroup, id.Name(), n))
		}
	}
	for _, v := range vaults {
		id, _ := resource.Parse(v.ID)
		if _, err := s.DeleteVault(ctx, id); err != nil {
			return fmt.Errorf("delete backup vault %s: %w", strings.ToLower(v.ID), err)
		}
	}
	return nil
}
