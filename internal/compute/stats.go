package compute

import (
	"context"
	"encoding/json"
	"fmt"

	"coffer/internal/store"
)

// SnapshotTotals counts every snapshot of every subscription and the bytes
// their snapshots stored as changed blocks (before deduplication and
// compression), for the repository's deduplication ratio.
func (s *Service) SnapshotTotals(ctx context.Context) (count, changedBytes int64, err error) {
	err = s.Store.View(ctx, func(tx store.Tx) error {
		count, changedBytes = 0, 0
		objs, err := tx.List(ctx, store.Query{Kind: KindSnapshot})
		if err != nil {
			return err
		}
		for _, o := range objs {
			var sn struct {
				ChangedBytes      int64  `json:"changedBytes"`
				ProvisioningState string `json:"provisioningState"`
			}
			if err := json.Unmarshal(o.Data, &sn); err != nil {
				return fmt.Errorf("decode snapshot %s: %w", o.Key, err)
			}
			if sn.ProvisioningState == StateSucceeded {
				count++
				changedBytes += sn.ChangedBytes
			}
		}
		return nil
	})
	return count, changedBytes, err
}
