package compute

import (
	"context"
	"fmt"
	"strings"
	"time"

	"coffer/internal/resource"
	"coffer/internal/store"
)

// VolumeGone reports, reading in tx, whether the node that holds the volume
// uniqueID is gone for a creation that has been pending since since: a
// non-nil cause, the API's error naming the node and when it was last seen
// (what names what the node holds, such as "The disk 'd1'"), once that
// node has been down longer than the grace allowed to it; nil while no
// other node holds the volume, or that node runs or is within its grace.
type VolumeGone func(ctx context.Context, tx store.Tx, uniqueID, what string, since time.Time) (cause *resource.Error, err error)

// FailStranded ends the creations that a node gone for good left pending:
// each disk still Updating and each snapshot still Creating whose volume
// (a snapshot's: its disk's) is held by a node that gone reports gone
// becomes Failed with gone's cause, so that it does not stay pending until
// the node returns, which it may never do. Creations a durable operation
// finishes (Finishing) are left to it: its failure fails them
// (FailCreationTx). Each is failed in a transaction that calls fence (when
// set: the lease of the one node that sweeps), reads the record and the
// node afresh and writes only if the record is still pending with the same
// unique ID, so that a node that returns in time, or a second sweeper,
// cannot race it; and a node that returns too late and finishes the
// creation leaves it Failed (the finish writes only over a pending
// record). It reports how many it failed.
func (s *Service) FailStranded(ctx context.Context, gone VolumeGone, fence func(ctx context.Context, tx store.Tx) error) (int, error) {
	disks, snaps, err := s.readRecords(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("fail stranded creations: %w", err)
	}
	var pending []stranded
	for _, d := range disks {
		if d.ProvisioningState == StateUpdating {
			pending = append(pending, stranded{typ: TypeDisks, id: d.ID, uniqueID: d.UniqueID, volume: d.UniqueID,
				since: d.TimeCreated, what: fmt.Sprintf("The disk '%s'", d.Name)})
		}
	}
	for _, sn := range snaps {
		if sn.ProvisioningState == StateCreating {
			pending = append(pending, stranded{typ: TypeSnapshots, id: sn.ID, uniqueID: sn.UniqueID, volume: sn.CreationData.SourceUniqueID,
				since: sn.TimeCreated, what: fmt.Sprintf("The disk '%s' of the snapshot '%s'", resourceName(sn.CreationData.SourceResourceID), sn.Name)})
		}
	}
	if len(pending) == 0 {
		return 0, nil
	}
	finishing := map[string]bool{}
	if s.Finishing != nil {
		if finishing, err = s.Finishing(ctx); err != nil {
			return 0, fmt.Errorf("fail stranded creations: %w", err)
		}
	}
	failed := 0
	for _, p := range pending {
		if finishing[strings.ToLower(p.id)] || p.volume == "" {
			continue
		}
		ok, err := s.failStranded(ctx, p, gone, fence)
		if err != nil {
			return failed, err
		}
		if ok {
			failed++
		}
	}
	return failed, nil
}

// stranded is a creation FailStranded looks at: the disk or snapshot
// (typ) id whose unique ID was uniqueID, pending since since, made on the
// node that holds the volume volume.
type stranded struct {
	typ, id, uniqueID, volume, what string
	since                           time.Time
}

// failStranded fails p, in one fenced transaction, if it is still pending
// and its node is gone; it reports whether it did.
func (s *Service) failStranded(ctx context.Context, p stranded, gone VolumeGone, fence func(ctx context.Context, tx store.Tx) error) (bool, error) {
	id, err := resource.Parse(p.id)
	if err != nil {
		return false, nil // not a record this service wrote
	}
	var did bool
	var cause *resource.Error
	err = s.Store.Update(ctx, func(tx store.Tx) error {
		did, cause = false, nil // a re-run decides afresh
		if fence != nil {
			if err := fence(ctx, tx); err != nil {
				return err
			}
		}
		e, err := gone(ctx, tx, p.volume, p.what, p.since)
		if err != nil || e == nil {
			return err
		}
		cause = e
		switch p.typ {
		case TypeDisks:
			err = failPending(ctx, tx, KindDisk, id, func(x *Disk) bool {
				if x.ProvisioningState != StateUpdating || x.UniqueID != p.uniqueID {
					return false
				}
				x.ProvisioningState, x.FailedError, did = StateFailed, e, true
				return true
			})
		default:
			err = failPending(ctx, tx, KindSnapshot, id, func(x *Snapshot) bool {
				if x.ProvisioningState != StateCreating || x.UniqueID != p.uniqueID {
					return false
				}
				x.ProvisioningState, x.FailedError, did = StateFailed, e, true
				return true
			})
		}
		if resource.IsNotFound(err) {
			return nil // deleted meanwhile
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("fail the stranded creation of %s: %w", p.id, err)
	}
	if did {
		s.logger().Warn("creation failed: its node is gone", "resource", p.id, "err", cause.Message)
	}
	return did, nil
}

// resourceName is the last segment of a resource ID (the whole string if
// it does not parse).
func resourceName(raw string) string {
	if id, err := resource.Parse(raw); err == nil && id.Name() != "" {
		return id.Name()
	}
	return raw
}
