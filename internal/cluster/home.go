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
// the disk's resource ID and by its volume's unique ID (kind cluster.home;
// the data plane's SAS URLs name the volume), written in the transaction
// that records the disk.
const kindHome = "cluster.home"

func homeKey(diskID string) string { return "/cluster/homes" + strings.ToLower(diskID) }

func volumeHomeKey(uniqueID string) string {
	return "/cluster/volumes/" + strings.ToLower(uniqueID)
}

// SetHome records in tx that the disk diskID, whose volume is uniqueID,
// lives on node.
func SetHome(ctx context.Context, tx store.Tx, diskID, uniqueID, node string) error {
	for _, key := range []string{homeKey(diskID), volumeHomeKey(uniqueID)} {
		if err := tx.Put(ctx, &store.Object{Kind: kindHome, Key: key, Data: []byte(node)}, store.PutOptions{}); err != nil {
			return fmt.Errorf("record the home of %s: %w", diskID, err)
		}
	}
	return nil
}

// DeleteHome deletes in tx what SetHome recorded for the disk diskID and
// its volume uniqueID, in the transaction that deletes the disk's record,
// so that no home outlives its disk; a home not recorded is no error.
func DeleteHome(ctx context.Context, tx store.Tx, diskID, uniqueID string) error {
	for _, key := range []string{homeKey(diskID), volumeHomeKey(uniqueID)} {
		if err := tx.Delete(ctx, kindHome, key); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete the home of %s: %w", diskID, err)
		}
	}
	return nil
}

// Home returns the node the disk diskID lives on, read in tx; "" when none
// is recorded (a disk made before nodes recorded homes: it lives on the
// one node there was).
func Home(ctx context.Context, tx store.Tx, diskID string) (string, error) {
	return readHome(ctx, tx, homeKey(diskID))
}

// VolumeHome returns the node the volume uniqueID lives on, read in tx; ""
// when none is recorded.
func VolumeHome(ctx context.Context, tx store.Tx, uniqueID string) (string, error) {
	return readHome(ctx, tx, volumeHomeKey(uniqueID))
}

func readHome(ctx context.Context, tx store.Tx, key string) (string, error) {
	o, err := tx.Get(ctx, kindHome, key)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the home %s: %w", key, err)
	}
	return string(o.Data), nil
}
