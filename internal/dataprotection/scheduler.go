package dataprotection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	// Fence, when set, is called in every transaction in which Tick
	// writes (a due backup or a retention run queued), with that
	// transaction, and an error from it rolls the write back and ends the
	// Tick. On several nodes the scheduler runs only on the holder of the
	// scheduler lease, with Fence checking that holding
	// (cluster.Fence): a scheduler whose lease was taken over while it was
	// paused queues nothing. Set it before Tick or Run, not while they run.
	Fence func(ctx context.Context, tx store.Tx) error
	// FireBatch is how many due instances one write transaction of Tick
	// fires (zero: DefaultFireBatch).
	FireBatch int
	// Watch, when positive, makes Run look this often for changes made
	// through other nodes, whose Refresh does not reach this one: it ticks
	// when a backup instance, a policy or a recovery point was written
	// since its last look (their kinds' indexes moved).
	Watch time.Duration

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
	// Plan every instance in one read-only transaction, a page of
	// planPage instances and their recovery points at a time (two ranged
	// reads); only those with something to do now (a slot due, points
	// expired, or a plan that failed and is tried again to be logged) are
	// fired. At the top of the hour that is every instance of an hourly
	// policy; at any other wake it is a few, and the others cost no write.
	var insts []instanceRecord
	// Where each of insts is among all instances in key order, and the key
	// of the instance before it: a batch of instances next to one another
	// is read again with ranged reads (instanceSpan).
	var pos []int
	var prev []string
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		insts, pos, prev = insts[:0], pos[:0], prev[:0]
		pols := map[string]policyPlan{}
		n, last := 0, ""
		for after := ""; ; {
			objs, err := tx.List(ctx, store.Query{Kind: kindInstance, After: after, Limit: planPage})
			if err != nil {
				return fmt.Errorf("list %s: %w", kindInstance, err)
			}
			page := make([]instanceRecord, len(objs))
			ids := make([]string, len(objs))
			for i, o := range objs {
				if err := json.Unmarshal(o.Data, &page[i]); err != nil {
					return fmt.Errorf("decode %s %s: %w", kindInstance, o.Key, err)
				}
				ids[i] = page[i].Resource.ID
			}
			rps, err := listRPsOf(ctx, tx, ids)
			if err != nil {
				return err
			}
			for i, r := range page {
				before := last
				last = objs[i].Key
				n++
				d, err := s.dueFor(ctx, tx, r, rps[strings.ToLower(r.Resource.ID)], now, pols)
				if err == nil && !d.work() {
					wake(d.nextExpiry)
					wake(d.slot.Next)
					continue
				}
				insts, pos, prev = append(insts, r), append(pos, n), append(prev, before)
			}
			if len(objs) < planPage {
				return nil
			}
			after = objs[len(objs)-1].Key
		}
	}); err != nil {
		return next, fired, err
	}
	// One Update per batch of up to FireBatch instances, one batch after
	// the other: a transaction's commit (an fsync on SQLite, a round trip
	// and a serializable check on PostgreSQL) costs more than the
	// instance's reads and writes in it. Batches run side by side would
	// conflict on the kinds they all write (the instances, the job
	// records) and re-run, which measured slower (BenchmarkSchedulerTopOfHour).
	// A batch that fails is fired again one instance per Update, so that
	// one instance's error fails only that instance.
	for lo := 0; lo < len(insts); lo += sc.fireBatch() {
		hi := min(lo+sc.fireBatch(), len(insts))
		batch := insts[lo:hi]
		var span *instanceSpan
		if pos[hi-1]-pos[lo] == hi-1-lo { // next to one another
			span = &instanceSpan{after: prev[lo]}
		}
		dids, err := sc.fire(ctx, batch, span, now)
		if err != nil && len(batch) > 1 && !errors.As(err, new(fenceError)) {
			dids, err = sc.fireEach(ctx, batch, now)
		}
		if fe := (fenceError{}); errors.As(err, &fe) {
			return next, fired, fe.err
		}
		if err != nil { // one instance's: nothing of its run committed
			dids[0] = fireOutcome{due: dids[0].due, err: err}
		}
		for i, did := range dids {
			inst := batch[i]
			for _, t := range did.due {
				wake(t)
			}
			if did.err != nil {
				sc.Logger.Error("schedule instance", "instance", inst.Resource.ID, "err", did.err)
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
	}
	if len(fired.Backups)+len(fired.Retention) > 0 {
		s.Queue.Wake()
	}
	if sc.lastCleanup.IsZero() || now.Sub(sc.lastCleanup) >= 24*time.Hour {
		sc.lastCleanup = now
		if _, err := job.Cleanup(ctx, s.Store, now); err != nil {
			sc.Logger.Error("clean up jobs", "err", err)
		}
		if _, err := s.Queue.ForgetDone(ctx, now.Add(-job.DoneRetention)); err != nil {
			sc.Logger.Error("clean up task markers", "err", err)
		}
	}
	return next, fired, nil
}

// due is what an instance needs at an instant, as read in one transaction.
type due struct {
	expired    []rpRecord // recovery points past their expiry
	nextExpiry time.Time  // when the next one expires (zero: none)
	slot       Slot       // the schedule's (zero unless protecting)
	pol        BaseBackupPolicyResource
}

// work reports whether the instance has something to do now.
func (d due) work() bool { return len(d.expired) > 0 || !d.slot.Due.IsZero() }

// policyPlan is a policy and its parsed schedule, read once per Tick.
type policyPlan struct {
	pol   BaseBackupPolicyResource
	sched *schedule.Schedule
	err   error
}

// planPage is how many instances one read of a Tick's plan lists.
const planPage = 500

// dueFor reads, through tx, what instance r, whose recovery points (read
// in tx, oldest first) are rps, needs at now: its expired recovery points
// and the schedule slot due. pols caches the policies read (a Tick's plan
// reads each policy once).
func (s *Service) dueFor(ctx context.Context, tx store.Tx, r instanceRecord, rps []rpRecord, now time.Time, pols map[string]policyPlan) (due, error) {
	var d due
	d.expired = expiredPoints(r, rps, now)
	d.nextExpiry = nextExpiry(r, rps, now)
	if !r.protecting() {
		return d, nil
	}
	key := strings.ToLower(r.Resource.Properties.PolicyInfo.PolicyID)
	pp, ok := pols[key]
	if !ok {
		pp.pol, pp.err = s.getPolicy(ctx, tx, parseOrZero(r.Resource.Properties.PolicyInfo.PolicyID))
		if pp.err == nil {
			pp.sched, pp.err = pp.pol.Properties.Schedule()
		}
		pols[key] = pp
	}
	if pp.err != nil {
		return d, pp.err
	}
	last := r.LastScheduled
	if last.IsZero() || last.Before(r.ConfiguredAt) {
		last = r.ConfiguredAt
	}
	d.slot, d.pol = PlanBackup(pp.sched, last, now), pp.pol
	return d, nil
}

// DefaultFireBatch is how many due instances one write transaction of a
// Tick queues backups and retention for (Scheduler.FireBatch).
const DefaultFireBatch = 250

func (sc *Scheduler) fireBatch() int {
	if sc.FireBatch > 0 {
		return sc.FireBatch
	}
	return DefaultFireBatch
}

// fireOutcome is what one instance's part of an Update did. The Update
// may re-run its function (store contract), so each run starts it afresh
// and only the committed run's counts.
type fireOutcome struct {
	retention bool      // retention queued
	skipped   time.Time // the due slot skipped (a backup was running)
	backup    string    // the job ID of the backup queued
	due       []time.Time
	err       error
}

// fire queues what each of insts needs at now, all in one Update fenced
// once (Fence): retention of its expired points, and the backup of its due
// slot unless one of its disk is queued or running. Each instance is read
// afresh in the Update, so that a slot is queued once however often fire
// runs (the backup's job ID derives from the instance and the slot, and
// the instance records the slot fired). An error of any instance rolls
// back the whole Update and is returned; the outcomes are those of the
// run that committed, one per instance.
func (sc *Scheduler) fire(ctx context.Context, insts []instanceRecord, span *instanceSpan, now time.Time) ([]fireOutcome, error) {
	s := sc.Service
	dids := make([]fireOutcome, len(insts))
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		clear(dids)
		if sc.Fence != nil {
			if err := sc.Fence(ctx, tx); err != nil {
				return fenceError{err}
			}
		}
		// What the instances share is read once per run; instances next
		// to one another, and their points, with ranged reads.
		reads := fireReads{vaults: map[string]*VaultResource{}, pols: map[string]policyPlan{}}
		if span != nil {
			var err error
			if reads.insts, reads.rps, err = span.read(ctx, tx, insts); err != nil {
				return err
			}
		}
		for i, inst := range insts {
			if err := sc.fireTx(ctx, tx, inst, now, reads, &dids[i]); err != nil {
				return fmt.Errorf("instance %s: %w", inst.Resource.ID, err)
			}
		}
		return nil
	})
	return dids, err
}

// fireEach fires each of insts in an Update of its own, so that the error
// of one (in its outcome) fails only that one. Only a refusal of the Fence
// is returned, and stops it.
func (sc *Scheduler) fireEach(ctx context.Context, insts []instanceRecord, now time.Time) ([]fireOutcome, error) {
	dids := make([]fireOutcome, len(insts))
	for i := range insts {
		did, err := sc.fire(ctx, insts[i:i+1], nil, now)
		if errors.As(err, new(fenceError)) {
			return dids, err
		}
		dids[i] = did[0]
		if err != nil { // nothing of its run committed
			dids[i] = fireOutcome{due: did[0].due, err: err}
		}
	}
	return dids, nil
}

// instanceSpan says that a batch of instances are next to one another
// among all instances in key order, after the key after ("": the first).
type instanceSpan struct{ after string }

// read reads insts, which the span holds, with one ranged read, and their
// recovery points with listRPsOf, all in tx, by lower-cased instance ID.
// An instance the ranged read missed (one was made among them since)
// is not in the first map.
func (sp *instanceSpan) read(ctx context.Context, tx store.Tx, insts []instanceRecord) (map[string]instanceRecord, map[string][]rpRecord, error) {
	objs, err := tx.List(ctx, store.Query{Kind: kindInstance, After: sp.after, Limit: len(insts)})
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", kindInstance, err)
	}
	byKey := make(map[string]instanceRecord, len(objs))
	for _, o := range objs {
		var r instanceRecord
		if err := json.Unmarshal(o.Data, &r); err != nil {
			return nil, nil, fmt.Errorf("decode %s %s: %w", kindInstance, o.Key, err)
		}
		byKey[o.Key] = r
	}
	ids := make([]string, len(insts))
	for i, r := range insts {
		ids[i] = r.Resource.ID
	}
	rps, err := listRPsOf(ctx, tx, ids)
	return byKey, rps, err
}

// fireReads is what a fire's Update read for all its instances: the
// vaults (nil: not found) and policies read so far, and, for a span of
// instances, the instances and their points (nil maps: none).
type fireReads struct {
	vaults map[string]*VaultResource
	pols   map[string]policyPlan
	insts  map[string]instanceRecord
	rps    map[string][]rpRecord
}

// fireTx is fire's work for one instance in tx.
func (sc *Scheduler) fireTx(ctx context.Context, tx store.Tx, inst instanceRecord, now time.Time, reads fireReads, did *fireOutcome) error {
	s := sc.Service
	soonest := func(t time.Time) { did.due = append(did.due, t) }
	key := strings.ToLower(inst.Resource.ID)
	r, ok := reads.insts[key]
	if !ok {
		if err := getJSON(ctx, tx, kindInstance, key, &r); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
	}
	vaults := reads.vaults
	vkey := strings.ToLower(r.VaultID)
	vp, seen := vaults[vkey]
	if !seen {
		var v VaultResource
		err := getJSON(ctx, tx, kindVault, vkey, &v)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err == nil {
			vp = &v
		}
		vaults[vkey] = vp
	}
	if vp == nil {
		return nil
	}
	v := *vp
	rps, ok := reads.rps[key]
	if !ok {
		var err error
		if rps, err = listRPs(ctx, tx, r.Resource.ID); err != nil {
			return err
		}
	}
	d, err := s.dueFor(ctx, tx, r, rps, now, reads.pols)
	if err != nil {
		return err
	}
	if len(d.expired) > 0 {
		retry, err := s.enqueueRetention(ctx, tx, v, r, d.expired, now)
		if err != nil {
			return err
		}
		soonest(retry)
		did.retention = true
	}
	soonest(d.nextExpiry)
	slot, pol := d.slot, d.pol
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
}

// fenceError carries the error of the scheduler's Fence out of an Update.
type fenceError struct{ err error }

func (e fenceError) Error() string { return e.err.Error() }
func (e fenceError) Unwrap() error { return e.err }

// Run ticks until ctx is cancelled.
func (sc *Scheduler) Run(ctx context.Context) {
	seen, _ := sc.changes(ctx)
	for ctx.Err() == nil {
		next, _, err := sc.Tick(ctx)
		if err != nil && ctx.Err() == nil {
			sc.Logger.Error("scheduler", "err", err)
		}
		for ctx.Err() == nil {
			wait := sc.MaxSleep
			if !next.IsZero() {
				wait = min(wait, next.Sub(sc.Clock.Now()))
			}
			watching := sc.Watch > 0 && sc.Watch < wait
			if watching {
				wait = sc.Watch
			}
			tm := sc.Clock.NewTimer(max(wait, time.Millisecond))
			woke := false
			select {
			case <-ctx.Done():
			case <-sc.refresh:
				woke = true
			case <-tm.C():
				woke = !watching
			}
			tm.Stop()
			if watching && !woke && ctx.Err() == nil {
				now, err := sc.changes(ctx)
				woke = err != nil || now != seen
				seen = now
			}
			if woke {
				break
			}
		}
	}
}

// changes sums the indexes of the kinds whose writes change what Tick
// plans (see Watch).
func (sc *Scheduler) changes(ctx context.Context) (uint64, error) {
	var sum uint64
	err := sc.Service.Store.View(ctx, func(tx store.Tx) error {
		sum = 0
		for _, k := range []string{kindInstance, kindPolicy, kindRecoveryPoint} {
			i, err := tx.KindIndex(ctx, k)
			if err != nil {
				return err
			}
			sum += i
		}
		return nil
	})
	return sum, err
}
