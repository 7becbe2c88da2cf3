package compute

import (
	"context"
	"fmt"
	"strings"

	"coffer/internal/resource"
	"coffer/internal/store"
)

// Cleaner deletes every disk and snapshot under scope with their data and
// grants; it is registered as a tenant.Cleaner so that deleting a resource
// group deletes what it holds. It is safe to run again after a crash.
func (s *Service) Cleaner(ctx context.Context, scope resource.ID) error {
	disks, snaps, err := s.readRecords(ctx, scope.Key()+"/")
	if err != nil {
		return fmt.Errorf("delete compute resources in %s: %w", scope, err)
	}
	for _, sn := range snaps {
		if err := s.destroySnapshot(ctx, sn); err != nil {
			return err
		}
	}
	for _, d := range disks {
		if err := s.destroyDisk(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// Recover is called once at start: creations a stopped server left behind
// are completed or failed (except those a durable operation finishes:
// Finishing), deletions it left Deleting are finished, and
// disks made from a snapshot or a disk are watched again, so that
// hydration resumes, a stall for lack of space shows, and the temporary
// snapshots of copies go once they finish.
func (s *Service) Recover(ctx context.Context) error {
	disks, snaps, err := s.readRecords(ctx, "")
	if err != nil {
		return fmt.Errorf("recover compute resources: %w", err)
	}
	finishing := map[string]bool{}
	if s.Finishing != nil {
		if finishing, err = s.Finishing(ctx); err != nil {
			return fmt.Errorf("recover compute resources: %w", err)
		}
	}
	elsewhere, err := s.volumesElsewhere(ctx, disks, snaps)
	if err != nil {
		return fmt.Errorf("recover compute resources: %w", err)
	}
	interrupted := resource.Errorf(resource.KindInternal, "OperationInterrupted",
		"The operation was interrupted because the server restarted. Delete the resource and create it again.")
	for _, sn := range snaps {
		if sn.ProvisioningState == StateDeleting {
			if err := s.destroySnapshot(ctx, sn); err != nil {
				return fmt.Errorf("recover snapshot %s: %w", sn.ID, err)
			}
			continue
		}
		if sn.ProvisioningState != StateCreating || finishing[strings.ToLower(sn.ID)] || elsewhere[sn.CreationData.SourceUniqueID] {
			continue
		}
		id, err := resource.Parse(sn.ID)
		if err != nil {
			continue
		}
		si, serr := s.Engine.StatSnapshot(ctx, sn.UniqueID)
		_, err = markRecord(ctx, s, KindSnapshot, id, func(cur *Snapshot) {
			if cur.ProvisioningState != StateCreating || cur.UniqueID != sn.UniqueID {
				return // ended since it was read
			}
			if serr == nil {
				cur.ProvisioningState, cur.DiskSizeBytes, cur.DiskSizeGB = StateSucceeded, si.Size, sizeGB(si.Size)
			} else {
				cur.ProvisioningState, cur.FailedError = StateFailed, interrupted
			}
		})
		if err != nil && !resource.IsNotFound(err) {
			return fmt.Errorf("recover snapshot %s: %w", sn.ID, err)
		}
	}
	for _, d := range disks {
		id, err := resource.Parse(d.ID)
		if err != nil {
			continue
		}
		if d.ProvisioningState == StateDeleting {
			if err := s.destroyDisk(ctx, d); err != nil {
				return fmt.Errorf("recover disk %s: %w", d.ID, err)
			}
			continue
		}
		if elsewhere[d.UniqueID] {
			continue // its node recovers it, and watches it
		}
		if d.ProvisioningState == StateUpdating && finishing[strings.ToLower(d.ID)] {
			continue // its operation's FinishDisk ends it, and watches it
		}
		if d.ProvisioningState == StateUpdating {
			_, verr := s.Engine.OpenVolume(ctx, d.UniqueID)
			cur, err := s.markDisk(ctx, id, func(x *Disk) {
				switch {
				case x.ProvisioningState != StateUpdating || x.UniqueID != d.UniqueID:
					// Ended (or made anew) since it was read.
				case verr == nil:
					x.ProvisioningState = StateSucceeded
				default:
					x.ProvisioningState, x.FailedError = StateFailed, interrupted
				}
			})
			if err != nil && !resource.IsNotFound(err) {
				return fmt.Errorf("recover disk %s: %w", d.ID, err)
			}
			if err != nil || cur.UniqueID != d.UniqueID || cur.ProvisioningState != StateSucceeded {
				continue
			}
		}
		if d.TempSnapshot != "" || d.HydrationError != nil || d.CreationData.SourceResourceID != "" {
			// Made from a snapshot or a disk: follow (and so resume) its
			// hydration, if it has not ended.
			s.watchHydration(d.ID, d.UniqueID, d.TempSnapshot, d.HydrationError)
		}
	}
	return nil
}

// volumesElsewhere returns the volumes, among those of disks and of the
// disks snaps were taken of, that another node holds (VolumeElsewhere).
func (s *Service) volumesElsewhere(ctx context.Context, disks []Disk, snaps []Snapshot) (map[string]bool, error) {
	away := map[string]bool{}
	if s.VolumeElsewhere == nil {
		return away, nil
	}
	err := s.Store.View(ctx, func(tx store.Tx) error {
		ask := func(uniqueID string) error {
			if _, seen := away[uniqueID]; seen || uniqueID == "" {
				return nil
			}
			var err error
			away[uniqueID], err = s.VolumeElsewhere(ctx, tx, uniqueID)
			return err
		}
		for _, d := range disks {
			if d.ProvisioningState == StateUpdating || d.TempSnapshot != "" || d.HydrationError != nil || d.CreationData.SourceResourceID != "" {
				if err := ask(d.UniqueID); err != nil {
					return err
				}
			}
		}
		for _, sn := range snaps {
			if sn.ProvisioningState == StateCreating {
				if err := ask(sn.CreationData.SourceUniqueID); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return away, err
}

// readRecords reads, in one view, every disk and snapshot whose key starts
// with prefix.
func (s *Service) readRecords(ctx context.Context, prefix string) (disks []Disk, snaps []Snapshot, err error) {
	err = s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		if snaps, err = s.listSnapshots(ctx, tx, prefix); err != nil {
			return err
		}
		disks, err = listRecords[Disk](ctx, tx, KindDisk, prefix)
		return err
	})
	return disks, snaps, err
}

// Close stops the background watchers of disk copies.
func (s *Service) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		if s.stop != nil {
			close(s.stop)
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}
