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
	pending, err := s.pendingCreations(ctx)
	if err != nil {
		return 0, fmt.Errorf("fail stranded creations: %w", err)
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

// pendingCreations returns the disks still Updating and the snapshots
// still Creating. The sweep runs every few seconds for as long as some node
// is gone, so it reads the disk and snapshot records only when one of the
// two kinds changed since its last read (their KindIndex, read in the same
// View: equal indexes mean the same objects), and otherwise returns that
// read's list again.
func (s *Service) pendingCreations(ctx context.Context) ([]stranded, error) {
	var (
		disks   []Disk
		snaps   []Snapshot
		at      [2]uint64
		unmoved bool
	)
	err := s.Store.View(ctx, func(tx store.Tx) error {
		for i, kind := range []string{KindDisk, KindSnapshot} {
			var err error
			if at[i], err = tx.KindIndex(ctx, kind); err != nil {
				return err
			}
		}
		s.mu.Lock()
		unmoved = s.pending.read && s.pending.at == at
		s.mu.Unlock()
		if unmoved {
			return nil
		}
		var err error
		if snaps, err = s.listSnapshots(ctx, tx, ""); err != nil {
			return err
		}
		disks, err = listRecords[Disk](ctx, tx, KindDisk, "")
		return err
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if unmoved {
		return s.pending.list, nil
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
	s.pending = pendingRead{read: true, at: at, list: pending}
	return pending, nil
}

// pendingRead is pendingCreations' last read: the pending creations among
// the disk and snapshot records at the kind indexes at.
type pendingRead struct {
	read bool
	at   [2]uint64 // KindIndex of KindDisk and of KindSnapshot
	list []stranded
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
