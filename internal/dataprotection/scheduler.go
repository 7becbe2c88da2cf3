package dataprotection

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"coffer/internal/clock"
	"coffer/internal/job"
	"coffer/internal/schedule"
	"coffer/internal/store"
)

// Slot is what the scheduler plans for one backup instance at an instant.
type Slot struct {
	// Due is the latest schedule slot in (last fired, now], zero if none:
	// when the scheduler was away, missed slots are not all run, only the
	// latest.
	Due time.Time
	// Next is the first slot after now.
	Next time.Time
}

// PlanBackup is the scheduler's pure next-due computation: given an
// instance's schedule, the last slot fired (or, if none, the instant
// protection was configured: no slot at or before it is due) and now, it
// returns the slot due now and the next one.
func PlanBackup(s *schedule.Schedule, last, now time.Time) Slot {
	t := s.Next(last)
	if t.After(now) {
		return Slot{Next: t}
	}
	for {
		n := s.Next(t)
		if n.After(now) {
			return Slot{Due: t, Next: n}
		}
		t = n
	}
}

// Scheduler fires each protected instance's policy on time and queues
// retention runs when recovery points expire. It is one loop over an
// injected clock: Tick plans and fires everything due now and returns the
// next instant anything is due; Run sleeps until then or until Refresh.
type Scheduler struct {
	Service *Service
	Clock   clock.Clock
	Logger  *slog.Logger
	// MaxSleep bounds a sleep (a safety net; Refresh wakes it on changes).
	MaxSleep time.Duration

	refresh     chan struct{}
	lastCleanup time.Time
}

// NewScheduler returns a scheduler for svc and sets svc.Refresh.
func NewScheduler(svc *Service, clk clock.Clock, logger *slog.Logger) *Scheduler {
	if logger == nil {
		logger = slog.Default()
	}
	sc := &Scheduler{Service: svc, Clock: clk, Logger: logger, MaxSleep: time.Hour, refresh: make(chan struct{}, 1)}
	svc.Refresh = sc.Refresh
	return sc
}

// Refresh makes the loop re-plan now.
func (sc *Scheduler) Refresh() {
	select {
	case sc.refresh <- struct{}{}:
	default:
	}
}

// Fired is what one Tick did.
type Fired struct {
	Backups   []string // job IDs of scheduled backups queued
	Skipped   []string // instance IDs whose due slot was skipped (a backup was running)
	Retention []string // instance IDs with a retention run queued
}

// Tick fires every scheduled backup due at now (one job per instance and
// slot; the job ID is derived from both, so firing twice is harmless) and
// queues retention for instances with expired points. A slot is skipped
// when a backup of the disk is queued or running: two backups of one disk
// never overlap. It returns the next instant anything is due (zero: none).
func (sc *Scheduler) Tick(ctx context.Context) (time.Time, Fired, error) {
	s := sc.Service
	now := sc.Clock.Now().UTC()
	var fired Fired
	var next time.Time
	wake := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	var insts []instanceRecord
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		insts, err = listJSON[instanceRecord](ctx, tx, kindInstance, "")
		return err
	}); err != nil {
		return next, fired, err
	}
	for _, inst := range insts {
		// What this instance's Update did: the Update may re-run its
		// function (store contract), so each run starts these afresh and
		// only the committed run's are added to fired and next.
		var did struct {
			retention bool      // retention queued
			skipped   time.Time // the due slot skipped (a backup was running)
			backup    string    // the job ID of the backup queued
			due       []time.Time
		}
		soonest := func(t time.Time) { did.due = append(did.due, t) }
		err := s.Store.Update(ctx, func(tx store.Tx) error {
			did.retention, did.skipped, did.backup, did.due = false, time.Time{}, "", nil
			var r instanceRecord
			if err := getJSON(ctx, tx, kindInstance, strings.ToLower(inst.Resource.ID), &r); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return nil
				}
				return err
			}
			var v VaultResource
			if err := getJSON(ctx, tx, kindVault, strings.ToLower(r.VaultID), &v); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return nil
				}
				return err
			}
			rps, err := listRPs(ctx, tx, r.Resource.ID)
			if err != nil {
				return err
			}
			if expired := expiredPoints(r, rps, now); len(expired) > 0 {
				retry, err := s.enqueueRetention(ctx, tx, v, r, expired, now)
				if err != nil {
					return err
				}
				soonest(retry)
				did.retention = true
			}
			soonest(nextExpiry(r, rps, now))
			if !r.protecting() {
				return nil
			}
			pol, err := s.getPolicy(ctx, tx, parseOrZero(r.Resource.Properties.PolicyInfo.PolicyID))
			if err != nil {
				return err
			}
			sched, err := pol.Properties.Schedule()
			if err != nil {
				return err
			}
			last := r.LastScheduled
			if last.IsZero() || last.Before(r.ConfiguredAt) {
				last = r.ConfiguredAt
			}
			slot := PlanBackup(sched, last, now)
			soonest(slot.Next)
			if slot.Due.IsZero() {
				return nil
			}
			r.LastScheduled = slot.Due
			if err := s.putInstance(ctx, tx, r); err != nil {
				return err
			}
			busy, err := s.Queue.ActiveTx(ctx, tx, strings.ToLower(r.DiskID), TaskBackup)
			if err != nil {
				return err
			}
			if busy {
				did.skipped = slot.Due
				return nil
			}
			br, _ := pol.Properties.BackupRule()
			id := derivedGUID(strings.ToLower(r.Resource.ID), slot.Due.UTC().Format(time.RFC3339))
			if _, err := job.Get(ctx, tx, v.ID, id); err == nil {
				return nil // fired before
			}
			rec, err := s.enqueueBackup(ctx, tx, v, r, id, false, br.Name, "", slot.Due)
			if errors.Is(err, job.ErrDuplicate) {
				return nil
			}
			if err != nil {
				return err
			}
			did.backup = rec.ID
			return nil
		})
		for _, t := range did.due {
			wake(t)
		}
		if err != nil {
			sc.Logger.Error("schedule instance", "instance", inst.Resource.ID, "err", err)
			continue
		}
		if did.retention {
			fired.Retention = append(fired.Retention, inst.Resource.ID)
		}
		if !did.skipped.IsZero() {
			fired.Skipped = append(fired.Skipped, inst.Resource.ID)
			sc.Logger.Info("scheduled backup skipped: a backup of the disk is running", "instance", inst.Resource.ID, "due", did.skipped)
		}
		if did.backup != "" {
			fired.Backups = append(fired.Backups, did.backup)
		}
	}
	if len(fired.Backups)+len(fired.Retention) > 0 {
		s.Queue.Wake()
	}
	if sc.lastCleanup.IsZero() || now.Sub(sc.lastCleanup) >= 24*time.Hour {
		sc.lastCleanup = now
		if _, err := job.Cleanup(ctx, s.Store, now); err != nil {
			sc.Logger.Error("clean up jobs", "err", err)
		}
		if err := s.Queue.ForgetDone(ctx, now.Add(-job.RetentionPeriod)); err != nil {
			sc.Logger.Error("clean up task markers", "err", err)
		}
	}
	return next, fired, nil
}

// Run ticks until ctx is cancelled.
func (sc *Scheduler) Run(ctx context.Context) {
	for ctx.Err() == nil {
		next, _, err := sc.Tick(ctx)
		if err != nil && ctx.Err() == nil {
			sc.Logger.Error("scheduler", "err", err)
		}
		wait := sc.MaxSleep
		if !next.IsZero() {
			if d := next.Sub(sc.Clock.Now()); d < wait {
				wait = d
			}
		}
		if wait <= 0 {
			wait = time.Millisecond
		}
		tm := sc.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-sc.refresh:
		case <-tm.C():
		}
		tm.Stop()
	}
}
