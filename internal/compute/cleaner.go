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
	interrupted := resource.Errorf(resource.KindInternal, "OperationInterrupted",
		"The operation was interrupted because the server restarted. Delete the resource and create it again.")
	for _, sn := range snaps {
		if sn.ProvisioningState == StateDeleting {
			if err := s.destroySnapshot(ctx, sn); err != nil {
				return fmt.Errorf("recover snapshot %s: %w", sn.ID, err)
			}
			continue
		}
		if sn.ProvisioningState != StateCreating || finishing[strings.ToLower(sn.ID)] {
			continue
		}
		id, err := resource.Parse(sn.ID)
		if err != nil {
			continue
		}
		si, serr := s.Engine.StatSnapshot(ctx, sn.UniqueID)
		_, err = markRecord(ctx, s, KindSnapshot, id, func(cur *Snapshot) {
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
		if d.ProvisioningState == StateUpdating && finishing[strings.ToLower(d.ID)] {
			continue // its operation's FinishDisk ends it, and watches it
		}
		if d.ProvisioningState == StateUpdating {
			if _, err := s.Engine.OpenVolume(ctx, d.UniqueID); err == nil {
				_, err = s.markDisk(ctx, id, func(x *Disk) { x.ProvisioningState = StateSucceeded })
				if err != nil {
					return fmt.Errorf("recover disk %s: %w", d.ID, err)
				}
			} else {
				if _, err := s.markDisk(ctx, id, func(x *Disk) { x.ProvisioningState, x.FailedError = StateFailed, interrupted }); err != nil {
					return fmt.Errorf("recover disk %s: %w", d.ID, err)
				}
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
