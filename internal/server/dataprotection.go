package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"coffer/internal/blockdev"
	"coffer/internal/cluster"
	"coffer/internal/compute"
	"coffer/internal/dataprotection"
	"coffer/internal/identity"
	"coffer/internal/job"
	"coffer/internal/operation"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/tenant"
	"coffer/internal/worker"
)

// schedulerWatch is how often the scheduler looks for changes made
// through other nodes.
const schedulerWatch = 5 * time.Second

// dataProtection is Microsoft.DataProtection's runtime: the service, the
// job queue (which the long-running operations share), the worker pool
// that runs both, and the scheduler, which run in the background from Open
// until Close.
type dataProtection struct {
	svc   *dataprotection.Service
	queue *job.Queue
	pool  *worker.Pool
	sched *dataprotection.Scheduler

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// openDataProtection builds Microsoft.DataProtection on the Compute
// service, registers its routes, recovers the jobs and instances a stopped
// process left behind, queues what came due meanwhile and starts the
// workers and the scheduler.
func (s *Server) openDataProtection(ctx context.Context) error {
	clk := s.cfg.Clock
	q := s.Ops.Queue
	svc := &dataprotection.Service{Store: s.store, Clock: clk, Queue: q, Authz: s.Authz, Identities: s.IDs,
		Groups: s.Tenant, Disks: computeDisks{c: s.Compute}, Logger: s.log, TenantID: s.IDs.TenantID, Space: s.space}
	if s.member.shared {
		svc.Home = cluster.Home
		svc.Place = s.member.place
	}
	s.restores.Store(svc)
	pool := worker.NewPool(q, clk, s.log, 4)
	// Leases name this node and process. On a store several nodes share,
	// a start releases only this node's earlier tasks (others' come back
	// when their leases expire); on SQLite, every task is this node's,
	// whatever name an earlier version or run gave its leases.
	pool.Owner = s.member.owner()
	if s.member.shared {
		pool.Node = s.member.name
	}
	pool.Handle(dataprotection.TaskBackup, svc.ExecBackup)
	pool.Handle(dataprotection.TaskRestore, svc.ExecRestore)
	pool.Handle(dataprotection.TaskRetention, svc.ExecRetention)
	pool.Handle(dataprotection.TaskDeleteInstance, svc.ExecDeleteInstance)
	pool.Handle(operation.TaskType, s.Ops.Run)
	pool.Handle(compute.DeleteVolumeTask, func(ctx context.Context, t job.Task) error {
		return s.Compute.DeleteVolume(ctx, string(t.Payload))
	})
	// A volume's deletion waits for the node that holds it, however long
	// it is down; other work bound to a node fails after the grace.
	pool.WaitForNode = map[string]bool{compute.DeleteVolumeTask: true}
	pool.Dead = func(ctx context.Context, t job.Task, cause error) {
		if t.Type == operation.TaskType {
			s.Ops.FailTask(ctx, t, cause)
			return
		}
		svc.FailTask(ctx, t, cause)
	}
	if err := s.openMonitor(ctx, q, pool); err != nil {
		return err
	}
	sched := dataprotection.NewScheduler(svc, clk, s.log)
	s.API.RegisterDataProtection(svc)
	// Vaults are checked (and refuse) before Compute deletes any disk.
	s.Tenant.Cleaners = append([]tenant.Cleaner{svc.Cleaner}, s.Tenant.Cleaners...)
	if err := pool.Recover(ctx); err != nil {
		return err
	}
	if err := svc.Recover(ctx); err != nil {
		return err
	}
	// The scheduler runs on the node that holds the scheduler lease, its
	// writes fenced by that holding, and watches for changes made through
	// other nodes.
	sched.Watch = schedulerWatch
	elector := &cluster.Elector{Leases: s.member.leases, Name: SchedulerLease, Holder: s.member.name, Logger: s.log}
	// Queue what came due while the server was down (the latest missed
	// backup slots, retention of expired points) before it serves, so
	// that a client looking right after a start sees those jobs.
	if l, ok, err := elector.Step(ctx); err != nil {
		return fmt.Errorf("take the scheduler lease: %w", err)
	} else if ok {
		sched.Fence = fence(l)
		if _, _, err := sched.Tick(ctx); err != nil {
			return fmt.Errorf("plan the backups and retention due: %w", err)
		}
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	dp := &dataProtection{svc: svc, queue: q, pool: pool, sched: sched, cancel: cancel}
	// Every operation kind has its handler by now (Open registers the
	// routes that start them first): the workers may run.
	pool.Start(bg)
	dp.wg.Add(1)
	go func() {
		defer dp.wg.Done()
		elector.Run(bg, func(ctx context.Context, l cluster.Lease) {
			sched.Fence = fence(l)
			var wg sync.WaitGroup
			if s.member.shared {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.failStranded(ctx, pool, fence(l))
				}()
			}
			sched.Run(ctx)
			wg.Wait()
		})
	}()
	s.dp = dp
	return nil
}

// strandedEvery is how often the scheduler's node looks for work bound to
// a node that is gone (failStranded).
const strandedEvery = cluster.DefaultNodeTimeout

// failStranded fails, every strandedEvery until ctx ends, the queued work
// bound to a node that has been down longer than the node timeout plus
// Config.NodeGrace (worker.Pool.FailStranded), and then the creations of
// disks and snapshots that node left pending (compute.Service.
// FailStranded), its writes fenced by the scheduler lease this node holds:
// a backup of a disk on a dead node ends Failed with NodeUnavailable,
// naming the node and when it was last seen, instead of waiting in the
// queue for ever, and so does a disk it was making, or a snapshot it was
// taking, instead of staying Updating or Creating. Neither reads more than
// the node records while no node is gone, and while one is, the disk and
// snapshot records are read again only when they changed.
func (s *Server) failStranded(ctx context.Context, pool *worker.Pool, fence func(ctx context.Context, tx store.Tx) error) {
	reg := s.member.registry
	// A task waits the grace from when it was queued or this node began
	// to watch, whichever is later: after an outage of every node, the
	// first to start fails nothing of the others for their old
	// heartbeats before they have had the grace to come back.
	watching := reg.Clock.Now()
	anyGone := func(ctx context.Context) (bool, error) {
		return reg.AnyGone(ctx, reg.Clock.Now(), watching, s.cfg.NodeGrace)
	}
	gone := func(ctx context.Context, tx store.Tx, t job.Task) (error, error) {
		since := t.CreatedAt
		if watching.After(since) {
			since = watching
		}
		return reg.GoneTx(ctx, tx, t.Node, strandedWhat(t), reg.Clock.Now(), since, s.cfg.NodeGrace)
	}
	volumeGone := func(ctx context.Context, tx store.Tx, uniqueID, what string, since time.Time) (*resource.Error, error) {
		home, err := s.member.volumeHomeElsewhere(ctx, tx, uniqueID)
		if err != nil || home == "" {
			return nil, err
		}
		if watching.After(since) {
			since = watching
		}
		cause, err := reg.GoneTx(ctx, tx, home, what, reg.Clock.Now(), since, s.cfg.NodeGrace)
		if err != nil || cause == nil {
			return nil, err
		}
		if e := resource.AsError(cause); e != nil {
			return e, nil
		}
		return nil, fmt.Errorf("node %s is gone, with a cause that is not the API's error: %w", home, cause)
	}
	for {
		tm := s.cfg.Clock.NewTimer(strandedEvery)
		select {
		case <-ctx.Done():
			tm.Stop()
			return
		case <-tm.C():
		}
		some, err := anyGone(ctx)
		if err != nil || !some {
			if err != nil && ctx.Err() == nil {
				s.log.Warn("fail the work of nodes that are gone", "err", err)
			}
			continue
		}
		if _, err := pool.FailStranded(ctx, nil, gone, fence); err != nil && ctx.Err() == nil {
			s.log.Warn("fail the work of nodes that are gone", "err", err)
		}
		if _, err := s.Compute.FailStranded(ctx, volumeGone, fence); err != nil && ctx.Err() == nil {
			s.log.Warn("fail the creations of nodes that are gone", "err", err)
		}
	}
}

// strandedWhat names, for the error that fails it, what a task bound to a
// gone node needs there: the disk it works on (its Target) when it names
// one.
func strandedWhat(t job.Task) string {
	if id, err := resource.Parse(t.Target); err == nil && id.Name() != "" {
		return fmt.Sprintf("The disk '%s'", id.Name())
	}
	return "The disk it works on"
}

func (s *Server) closeDataProtection() {
	if s.dp == nil {
		return
	}
	s.dp.cancel()
	s.dp.pool.Wait()
	s.dp.wg.Wait()
}

// computeDisks adapts the Compute service to dataprotection.Disks. Reads
// get the one record they name (validation looks at the resources
// themselves). The writes run as the vault identity, whose own action the
// dataprotection worker decided once; Compute checks only the linked
// resource each reads from (and says which action a refusal lacks).
type computeDisks struct{ c *compute.Service }

// notFound makes Compute's 404 (a missing disk, snapshot or group)
// dataprotection's ErrNotFound, keeping it for the message.
func notFound(err error) error {
	if e := resource.AsError(err); e != nil && e.Kind == resource.KindNotFound {
		return errors.Join(dataprotection.ErrNotFound, err)
	}
	return err
}

// disk returns a disk that exists: one whose provisioning failed holds
// nothing and counts as missing.
func (d computeDisks) disk(ctx context.Context, id resource.ID) (compute.Disk, error) {
	x, err := d.c.GetDisk(ctx, id)
	if err != nil {
		return compute.Disk{}, notFound(err)
	}
	if x.ProvisioningState == compute.StateFailed {
		return compute.Disk{}, fmt.Errorf("disk %s failed to provision: %w", id, dataprotection.ErrNotFound)
	}
	return x, nil
}

// snapshot returns a snapshot and whether it is committed.
func (d computeDisks) snapshot(ctx context.Context, id resource.ID) (compute.Snapshot, bool, error) {
	x, err := d.c.GetSnapshot(ctx, id)
	if err != nil {
		return compute.Snapshot{}, false, notFound(err)
	}
	return x, x.ProvisioningState == compute.StateSucceeded, nil
}

func diskInfo(x compute.Disk) dataprotection.DiskInfo {
	return dataprotection.DiskInfo{ID: x.ID, Name: x.Name, Location: x.Location, SKU: x.SKU.Name, SizeBytes: x.DiskSizeBytes,
		Failed: x.ProvisioningState == compute.StateFailed, Provisioning: x.ProvisioningState == compute.StateUpdating}
}

func snapshotInfo(x compute.Snapshot) dataprotection.SnapshotInfo {
	return dataprotection.SnapshotInfo{ID: x.ID, Location: x.Location, SourceDisk: x.CreationData.SourceResourceID,
		SizeBytes: x.ChangedBytes, Incremental: x.Incremental, TimeCreated: x.TimeCreated}
}

func (d computeDisks) GetDisk(ctx context.Context, id resource.ID) (dataprotection.DiskInfo, error) {
	x, err := d.disk(ctx, id)
	if err != nil {
		return dataprotection.DiskInfo{}, err
	}
	return diskInfo(x), nil
}

func (d computeDisks) GetSnapshot(ctx context.Context, id resource.ID) (dataprotection.SnapshotInfo, error) {
	x, ok, err := d.snapshot(ctx, id)
	if err != nil {
		return dataprotection.SnapshotInfo{}, err
	}
	if !ok {
		return dataprotection.SnapshotInfo{}, dataprotection.ErrNotFound
	}
	return snapshotInfo(x), nil
}

func (d computeDisks) CreateSnapshot(ctx context.Context, as identity.Principal, snap, disk resource.ID) (dataprotection.SnapshotInfo, error) {
	// A snapshot left half-made by an interrupted backup is replaced.
	if _, ok, err := d.snapshot(ctx, snap); err == nil && !ok {
		if _, err := d.c.DeleteSnapshot(ctx, snap); err != nil {
			return dataprotection.SnapshotInfo{}, notFound(err)
		}
	}
	src, err := d.disk(ctx, disk)
	if err != nil {
		return dataprotection.SnapshotInfo{}, err
	}
	x, err := d.c.SnapshotDisk(ctx, as, snap, disk, src.Location, true, map[string]string{"CreatedBy": "AzureBackup"})
	if err != nil {
		// A snapshot that failed is not left listed as a Failed resource
		// for the backup's retries or its failure to explain.
		if _, ok, ferr := d.snapshot(ctx, snap); ferr == nil && !ok {
			if _, derr := d.c.DeleteSnapshot(context.WithoutCancel(ctx), snap); derr != nil {
				err = errors.Join(err, fmt.Errorf("delete the failed snapshot %s: %w", snap, derr))
			}
		}
		return dataprotection.SnapshotInfo{}, notFound(err)
	}
	info := snapshotInfo(x)
	info.DiskSKU = src.SKU.Name
	return info, nil
}

func (d computeDisks) SnapshotProgress(ctx context.Context, snap resource.ID) (dataprotection.SnapshotProgress, error) {
	p, err := d.c.SnapshotProgress(ctx, snap)
	if err != nil {
		return dataprotection.SnapshotProgress{}, notFound(err)
	}
	return dataprotection.SnapshotProgress{Running: p.Running, Done: p.BlocksRead, Total: p.BlocksTotal}, nil
}

func (d computeDisks) DeleteSnapshot(ctx context.Context, as identity.Principal, snap resource.ID) error {
	_, err := d.c.DeleteSnapshot(ctx, snap)
	return notFound(err)
}

func (d computeDisks) DeleteDisk(ctx context.Context, disk resource.ID) error {
	if _, err := d.c.DeleteDisk(ctx, disk); err != nil {
		return notFound(err)
	}
	return nil
}

func (d computeDisks) VerifySnapshot(ctx context.Context, snap resource.ID) (dataprotection.SnapshotCheck, error) {
	res, err := d.c.VerifySnapshot(ctx, snap)
	if err != nil && !errors.Is(err, blockdev.ErrCorrupt) {
		return dataprotection.SnapshotCheck{}, notFound(err)
	}
	check := dataprotection.SnapshotCheck{Chunks: res.Chunks}
	for _, p := range res.Problems {
		where := "index"
		if p.Block >= 0 {
			where = fmt.Sprintf("block %d", p.Block)
		}
		check.Problems = append(check.Problems, fmt.Sprintf("chunk %s (%s): %v", p.ID.Short(), where, p.Err))
	}
	return check, nil
}

func (d computeDisks) CreateDiskFromSnapshot(ctx context.Context, as identity.Principal, disk, snap resource.ID, location, sku string) (dataprotection.DiskInfo, error) {
	x, err := d.c.CreateDiskFromSnapshot(ctx, as, disk, snap, location, sku, 0, nil)
	if err != nil {
		return dataprotection.DiskInfo{}, notFound(err)
	}
	return diskInfo(x), nil
}
