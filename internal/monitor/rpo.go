package monitor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/store"
)

// protectionCache keeps the instances' protection until one of the kinds
// it is read from changes.
type protectionCache struct {
	indexes []uint64
	list    []dataprotection.Protection
}

// protection returns every instance's protection, read again only when a
// vault, policy, instance or recovery point changed.
func (s *Service) protection(ctx context.Context) ([]dataprotection.Protection, error) {
	var out []dataprotection.Protection
	err := s.Store.View(ctx, func(tx store.Tx) error {
		idx := make([]uint64, len(dataprotection.MonitoredKinds))
		for i, k := range dataprotection.MonitoredKinds {
			var err error
			if idx[i], err = tx.KindIndex(ctx, k); err != nil {
				return err
			}
		}
		s.mu.Lock()
		c := s.protCache
		s.mu.Unlock()
		if c.indexes != nil && equal(c.indexes, idx) {
			out = c.list
			return nil
		}
		list, err := dataprotection.ListProtection(ctx, tx)
		if err != nil {
			return err
		}
		out = list
		s.mu.Lock()
		s.protCache = protectionCache{indexes: idx, list: list}
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read backup instances: %w", err)
	}
	return out, nil
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Objective is an instance's recovery point objective at an instant.
type Objective struct {
	// Applies is false for instances that take no scheduled backups
	// (stopped, suspended, being configured or deleted) or whose policy
	// cannot be read.
	Applies bool
	// Since is the latest recovery point, or when protection was
	// configured (or resumed) if that is later.
	Since time.Time
	// Due is the first scheduled backup after Since; Deadline is Due plus
	// the grace period.
	Due, Deadline time.Time
	Missed        bool
}

// Objective evaluates p's recovery point objective at now: it is missed
// when no recovery point came by the first backup due after the latest
// one (or after protection began), plus the grace period. That is never
// later than the policy's interval plus the grace period after the
// latest point.
func (s *Service) Objective(p dataprotection.Protection, now time.Time) Objective {
	if !p.Protecting || p.Schedule == nil {
		return Objective{}
	}
	since := p.LastRecoveryPoint
	if p.ConfiguredAt.After(since) {
		since = p.ConfiguredAt
	}
	if since.IsZero() {
		return Objective{}
	}
	due := p.Schedule.Next(since)
	o := Objective{Applies: true, Since: since, Due: due, Deadline: due.Add(max(s.grace(), 0))}
	o.Missed = now.After(o.Deadline)
	return o
}

// evaluateRPO raises an alert for each instance whose objective is missed
// (one per missed deadline) and resolves those whose condition cleared: a
// recovery point came, or the instance no longer takes scheduled backups.
func (s *Service) evaluateRPO(ctx context.Context) error {
	if s.RPOGrace < 0 {
		return nil
	}
	prots, err := s.protection(ctx)
	if err != nil {
		return err
	}
	now := s.Clock.Now().UTC()
	missed := map[string]dataprotection.Protection{}
	for _, p := range prots {
		if s.Objective(p, now).Missed {
			missed[strings.ToLower(p.InstanceID)] = p
		}
	}
	// Look before writing: most evaluations change nothing.
	var open []Alert
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		all, err := listAlerts(ctx, tx, "")
		open = open[:0]
		for _, a := range all {
			if a.Rule == RuleRPOMissed && a.Condition == Fired {
				open = append(open, a)
			}
		}
		return err
	}); err != nil {
		return err
	}
	work := false
	for _, a := range open {
		if _, still := missed[strings.ToLower(a.InstanceID)]; !still {
			work = true
		}
	}
	for k := range missed {
		found := false
		for _, a := range open {
			if strings.ToLower(a.InstanceID) == k {
				found = true
			}
		}
		if !found {
			work = true
		}
	}
	if !work {
		return nil
	}
	var ds []delivery
	err = s.Store.Update(ctx, func(tx store.Tx) error {
		ds = ds[:0]
		targets, err := listTargets(ctx, tx)
		if err != nil {
			return err
		}
		all, err := listAlerts(ctx, tx, "")
		if err != nil {
			return err
		}
		firing := map[string]bool{}
		for _, a := range all {
			if a.Rule != RuleRPOMissed || a.Condition != Fired {
				continue
			}
			k := strings.ToLower(a.InstanceID)
			if _, still := missed[k]; still {
				firing[k] = true
				continue
			}
			d, err := s.resolve(ctx, tx, a, targets)
			if err != nil {
				return err
			}
			ds = append(ds, d...)
		}
		for k, p := range missed {
			if firing[k] {
				continue
			}
			d, err := s.raiseRPO(ctx, tx, p, s.Objective(p, now), now, targets)
			if err != nil {
				return err
			}
			ds = append(ds, d...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("evaluate recovery point objectives: %w", err)
	}
	s.announce(ds)
	return nil
}

// raiseRPO raises the alert of p's missed deadline, unless it was raised
// before (and perhaps closed by a user: it is not raised again until the
// instance has a new recovery point and misses again).
func (s *Service) raiseRPO(ctx context.Context, tx store.Tx, p dataprotection.Protection, o Objective, now time.Time, targets []Target) ([]delivery, error) {
	name := derivedGUID(p.InstanceID, string(RuleRPOMissed), o.Deadline.UTC().Format(time.RFC3339Nano))
	last := "no recovery point yet"
	if !p.LastRecoveryPoint.IsZero() {
		last = "the latest recovery point is from " + p.LastRecoveryPoint.UTC().Format(time.RFC3339)
	}
	a := Alert{ID: AlertID(p.VaultID, name), Name: name, Rule: RuleRPOMissed, Severity: Sev1, State: StateNew, Condition: Fired,
		VaultID: p.VaultID, InstanceID: p.InstanceID, InstanceName: p.InstanceName, DataSourceID: p.DiskID, Occurrences: 1,
		LastRecoveryPoint: p.LastRecoveryPoint, BackupDue: o.Due, Deadline: o.Deadline, Interval: p.Interval,
		StartTime: now, LastModified: now, LastModifiedBy: "System"}
	a.Description = fmt.Sprintf("The backup instance %s missed its recovery point objective: a backup was due at %s and none succeeded by %s (%s).",
		p.InstanceName, o.Due.UTC().Format(time.RFC3339), o.Deadline.UTC().Format(time.RFC3339), last)
	err := putAlert(ctx, tx, &a, store.PutOptions{CreateOnly: true})
	if errors.Is(err, store.ErrConflict) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.queueDeliveries(ctx, tx, a, Fired, targets)
}
