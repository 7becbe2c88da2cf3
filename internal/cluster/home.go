package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"coffer/internal/store"
)

// A disk's home is the node that holds its volume: the node that created
// it, which serves its data path and runs its snapshots. Homes are kept by
// the disk's resource ID (kind cluster.home), written in the transaction
// that records the disk.
const kindHome = "cluster.home"

func homeKey(diskID string) string { return "/cluster/homes" + strings.ToLower(diskID) }

// SetHome records in tx that the disk diskID lives on node.
func SetHome(ctx context.Context, tx store.Tx, diskID, node string) error {
	if err := tx.Put(ctx, &store.Object{Kind: kindHome, Key: homeKey(diskID), Data: []byte(node)}, store.PutOptions{}); err != nil {
		return fmt.Errorf("record the home of %s: %w", diskID, err)
	}
	return nil
}

// Home returns the node the disk diskID lives on, read in tx; "" when none
// is recorded (a disk made before nodes recorded homes: it lives on the
// one node there was).
func Home(ctx context.Context, tx store.Tx, diskID string) (string, error) {
	o, err := tx.Get(ctx, kindHome, homeKey(diskID))
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the home of %s: %w", diskID, err)
	}
	return string(o.Data), nil
}
