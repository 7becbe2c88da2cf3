// Package monitor watches Coffer for what an operator must know about:
// it derives job events (one log line when a job starts and one when it
// ends), job metrics, Azure Backup's job failure alerts and Coffer's
// missed-recovery-point-objective alerts from the metadata store, on the
// injected clock, without hooking into the code paths that run jobs. It
// owns the alerts (Microsoft.AlertsManagement/alerts: listed,
// acknowledged, closed, resolved when their condition clears), the
// notification targets an administrator configures (webhook and email,
// with sealed secrets), and the durable delivery of alerts to them as
// tasks of the job queue, retried with its backoff. How a notification
// travels (HTTP, SMTP) is a Sender's business (package notify).
//
// The evaluation follows the store's index: job records changed since the
// last evaluation are read (the index is kept in the store, so failures
// that happen while the monitor is not running raise their alerts when it
// runs again), and every backup instance's latest recovery point is
// compared with its policy's schedule plus a grace period.
package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"coffer/internal/clock"
	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/prom"
	"coffer/internal/store"
)

// Defaults.
const (
	// DefaultRPOGrace is how long after a backup was due its recovery
	// point may still come before the objective counts as missed.
	DefaultRPOGrace = time.Hour
	// DefaultInterval is how often Run evaluates.
	DefaultInterval = 5 * time.Second
	// AlertRetention is how long closed or resolved alerts are kept.
	AlertRetention = 31 * 24 * time.Hour
)

// Service is the monitor. Set the exported fields, then call Tick (tests)
// or Run.
type Service struct {
	Store  store.Store
	Clock  clock.Clock
	Logger *slog.Logger
	// Queue carries notification deliveries (TaskNotify); nil: alerts are
	// raised but not delivered.
	Queue *job.Queue
	// Sealer seals the secrets of notification targets.
	Sealer *Sealer
	// Senders deliver notifications, by target kind (KindWebhook,
	// KindEmail).
	Senders map[string]Sender
	// RPOGrace is DefaultRPOGrace when zero; negative turns the missed
	// recovery point objective alerts off.
	RPOGrace time.Duration
	// Interval is how often Run evaluates (DefaultInterval when zero).
	Interval time.Duration
	// MaxDeliveries is the delivery limit of a notification
	// (DefaultMaxDeliveries when zero).
	MaxDeliveries int

	evalMu sync.Mutex // one evaluation at a time

	mu          sync.Mutex
	loaded      bool
	jobIndex    uint64
	seen        map[string]seenJob
	ended       map[[2]string]uint64 // operation, status → jobs ended
	bytes       map[string]uint64    // operation → bytes transferred
	durations   map[string]*prom.Hist
	deliveries  map[[2]string]uint64 // target kind, outcome → count
	protCache   protectionCache
	lastCleanup time.Time
}

type seenJob struct {
	status job.Status
	op     string
}

func (s *Service) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Service) grace() time.Duration {
	if s.RPOGrace == 0 {
		return DefaultRPOGrace
	}
	return s.RPOGrace
}

// state is the monitor's record in the store.
type state struct {
	// JobIndex is the store index up to which job records were evaluated.
	JobIndex uint64 `json:"jobIndex"`
}

const (
	kindState = "coffer.monitor"
	stateKey  = "/monitor/state"
)

// Tick evaluates once: job records changed since the last evaluation (log
// lines, metrics, job failure alerts and their resolution) and every
// instance's recovery point objective.
func (s *Service) Tick(ctx context.Context) error {
	s.evalMu.Lock()
	defer s.evalMu.Unlock()
	jerr := s.evaluateJobs(ctx)
	rerr := s.evaluateRPO(ctx)
	s.cleanup(ctx)
	return errors.Join(jerr, rerr)
}

// Run evaluates every Interval until ctx ends.
func (s *Service) Run(ctx context.Context) {
	every := s.Interval
	if every <= 0 {
		every = DefaultInterval
	}
	for ctx.Err() == nil {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.logger().Error("monitor evaluation", "err", err)
		}
		t := s.Clock.NewTimer(every)
		select {
		case <-ctx.Done():
		case <-t.C():
		}
		t.Stop()
	}
}

// jobEvent is what one evaluation saw happen to a job.
type jobEvent struct {
	rec            job.Record
	started, ended bool
}

// evaluateJobs reads the job records changed since the last evaluation.
func (s *Service) evaluateJobs(ctx context.Context) error {
	s.mu.Lock()
	loaded, last := s.loaded, s.jobIndex
	seen := s.seen
	s.mu.Unlock()
	fresh := false
	if !loaded {
		st, ok, err := s.loadState(ctx)
		if err != nil {
			return err
		}
		last, fresh, seen = st.JobIndex, !ok, map[string]seenJob{}
	}
	var events []jobEvent
	var index uint64
	next := map[string]seenJob{}
	changed := true
	err := s.Store.View(ctx, func(tx store.Tx) error {
		events, next, changed = events[:0], map[string]seenJob{}, true
		index = tx.Index()
		if loaded {
			ki, err := tx.KindIndex(ctx, job.Kind)
			if err != nil {
				return err
			}
			if ki <= last {
				changed = false
				return nil
			}
		}
		objs, err := tx.List(ctx, store.Query{Kind: job.Kind})
		if err != nil {
			return fmt.Errorf("list jobs: %w", err)
		}
		for _, o := range objs {
			prev, known := seen[o.Key]
			if o.ModifyIndex <= last && (known || !loaded) {
				if !known {
					var r job.Record
					if err := json.Unmarshal(o.Data, &r); err != nil {
						return fmt.Errorf("decode job %s: %w", o.Key, err)
					}
					prev = seenJob{status: r.Status, op: r.Operation}
				}
				next[o.Key] = prev
				continue
			}
			var r job.Record
			if err := json.Unmarshal(o.Data, &r); err != nil {
				return fmt.Errorf("decode job %s: %w", o.Key, err)
			}
			next[o.Key] = seenJob{status: r.Status, op: r.Operation}
			if fresh {
				continue // a first start: history raises nothing
			}
			created := o.CreateIndex > last
			ev := jobEvent{rec: r, started: created && !known}
			if r.Status.IsTerminal() {
				ev.ended = created || !known || !prev.status.IsTerminal()
			}
			if ev.started || ev.ended {
				events = append(events, ev)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !changed {
		return nil
	}
	if err := s.applyJobEvents(ctx, events, index); err != nil {
		return err
	}
	s.mu.Lock()
	s.loaded, s.jobIndex, s.seen = true, index, next
	s.mu.Unlock()
	for _, ev := range events {
		s.logJob(ev)
		if ev.ended {
			s.countJob(ev.rec)
		}
	}
	return nil
}

func (s *Service) loadState(ctx context.Context) (state, bool, error) {
	var st state
	found := false
	err := s.Store.View(ctx, func(tx store.Tx) error {
		o, err := tx.Get(ctx, kindState, stateKey)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return json.Unmarshal(o.Data, &st)
	})
	if err != nil {
		return st, false, fmt.Errorf("read the monitor's state: %w", err)
	}
	return st, found, nil
}

// applyJobEvents raises the alerts of failed jobs, resolves the failure
// alerts of instances whose backup succeeded, queues their notifications
// and records the index evaluated, in one transaction.
func (s *Service) applyJobEvents(ctx context.Context, events []jobEvent, index uint64) error {
	var raised []delivery
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		raised = raised[:0]
		targets, err := listTargets(ctx, tx)
		if err != nil {
			return err
		}
		for _, ev := range events {
			if !ev.ended {
				continue
			}
			r := ev.rec
			rule := failureRule(r.Operation)
			if rule == "" {
				continue
			}
			switch r.Status {
			case job.Failed:
				d, err := s.raiseFailure(ctx, tx, r, rule, targets)
				if err != nil {
					return err
				}
				raised = append(raised, d...)
			case job.Completed, job.CompletedWithWarnings:
				if rule == RuleBackupFailure && r.BackupInstanceID != "" {
					d, err := s.resolveFailures(ctx, tx, r, targets)
					if err != nil {
						return err
					}
					raised = append(raised, d...)
				}
			}
		}
		b, _ := json.Marshal(state{JobIndex: index})
		return tx.Put(ctx, &store.Object{Kind: kindState, Key: stateKey, Data: b}, store.PutOptions{})
	})
	if err != nil {
		return fmt.Errorf("evaluate jobs: %w", err)
	}
	s.announce(raised)
	return nil
}

// failureRule is the alert rule of a failed job of op ("" for none: Azure
// Backup's job failure alerts cover backups and restores).
func failureRule(op string) Rule {
	switch op {
	case job.OpBackup:
		return RuleBackupFailure
	case job.OpRestore:
		return RuleRestoreFailure
	}
	return ""
}

// raiseFailure raises the alert of a failed job, or counts the failure in
// the open alert of the same instance, rule and error code.
func (s *Service) raiseFailure(ctx context.Context, tx store.Tx, r job.Record, rule Rule, targets []Target) ([]delivery, error) {
	on, err := dataprotection.JobFailureAlerts(ctx, tx, r.VaultID)
	if err != nil || !on {
		return nil, err
	}
	var code, msg string
	var action []string
	if len(r.ErrorDetails) > 0 {
		e := r.ErrorDetails[0]
		code, msg, action = e.Code, e.Message, e.RecommendedAction
	}
	instance := r.BackupInstanceID
	if instance == "" {
		instance = r.DataSourceID
	}
	all, err := listAlerts(ctx, tx, strings.ToLower(r.VaultID)+"/")
	if err != nil {
		return nil, err
	}
	now := s.Clock.Now().UTC()
	jobID := r.ResourceID()
	if a, ok := activeAlert(all, rule, instance, code); ok {
		for _, j := range a.Jobs {
			if strings.EqualFold(j, jobID) {
				return nil, nil // counted already
			}
		}
		a.Occurrences++
		a.LastJobID, a.ErrorMessage, a.LastModified, a.LastModifiedBy = jobID, msg, now, "System"
		a.Jobs = addJob(a.Jobs, jobID)
		return nil, putAlert(ctx, tx, &a, store.PutOptions{MatchIndex: a.ETag})
	}
	name := derivedGUID(jobID, string(rule))
	a := Alert{ID: AlertID(r.VaultID, name), Name: name, Rule: rule, Severity: Sev1, State: StateNew, Condition: Fired,
		VaultID: r.VaultID, InstanceID: r.BackupInstanceID, InstanceName: r.BackupInstanceFriendlyName, DataSourceID: r.DataSourceID,
		JobID: jobID, LastJobID: jobID, ErrorCode: code, ErrorMessage: msg, RecommendedAction: action, Occurrences: 1,
		Jobs: []string{jobID}, StartTime: now, LastModified: now, LastModifiedBy: "System"}
	what := strings.ToLower(r.Operation)
	a.Description = fmt.Sprintf("The %s job of %s failed with %s: %s", what, orName(r.BackupInstanceFriendlyName, r.DataSourceName), orName(code, "an error"), msg)
	err = putAlert(ctx, tx, &a, store.PutOptions{CreateOnly: true})
	if errors.Is(err, store.ErrConflict) {
		return nil, nil // raised by an earlier evaluation
	}
	if err != nil {
		return nil, err
	}
	return s.queueDeliveries(ctx, tx, a, Fired, targets)
}

func orName(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// resolveFailures resolves the open backup failure alerts of the instance
// a successful backup job r protects.
func (s *Service) resolveFailures(ctx context.Context, tx store.Tx, r job.Record, targets []Target) ([]delivery, error) {
	all, err := listAlerts(ctx, tx, strings.ToLower(r.VaultID)+"/")
	if err != nil {
		return nil, err
	}
	var out []delivery
	for _, a := range all {
		if a.Rule != RuleBackupFailure || a.Condition != Fired || !strings.EqualFold(a.InstanceID, r.BackupInstanceID) {
			continue
		}
		d, err := s.resolve(ctx, tx, a, targets)
		if err != nil {
			return nil, err
		}
		out = append(out, d...)
	}
	return out, nil
}

// resolve marks an alert's condition Resolved and queues the news.
func (s *Service) resolve(ctx context.Context, tx store.Tx, a Alert, targets []Target) ([]delivery, error) {
	now := s.Clock.Now().UTC()
	a.Condition, a.ResolvedTime, a.LastModified, a.LastModifiedBy = Resolved, now, now, "System"
	if err := putAlert(ctx, tx, &a, store.PutOptions{MatchIndex: a.ETag}); err != nil {
		return nil, err
	}
	return s.queueDeliveries(ctx, tx, a, Resolved, targets)
}

// announce logs raised and resolved alerts after their transaction
// committed, and wakes the workers for their deliveries.
func (s *Service) announce(ds []delivery) {
	logged := map[string]bool{}
	for _, d := range ds {
		if logged[d.alert.ID+string(d.event)] {
			continue
		}
		logged[d.alert.ID+string(d.event)] = true
		if d.event == Fired {
			s.logger().Warn("alert fired", "alert", d.alert.ID, "rule", d.alert.Rule, "severity", d.alert.Severity,
				"vault", d.alert.VaultID, "instance", d.alert.InstanceID, "description", d.alert.Description)
		} else {
			s.logger().Info("alert resolved", "alert", d.alert.ID, "rule", d.alert.Rule, "vault", d.alert.VaultID, "instance", d.alert.InstanceID)
		}
	}
	if len(ds) > 0 && s.Queue != nil {
		s.Queue.Wake()
	}
}

// logJob writes a job's start or end line.
func (s *Service) logJob(ev jobEvent) {
	r := ev.rec
	principal, trigger := r.InitiatedBy, "user"
	if !r.IsUserTriggered {
		trigger = "scheduled"
	}
	attrs := []any{"job", r.ResourceID(), "operation", r.Operation, "vault", r.VaultID, "instance", r.BackupInstanceID,
		"datasource", r.DataSourceID, "principal", principal, "trigger", trigger}
	if ev.started {
		s.logger().Info("job started", append(attrs, "start", r.StartTime)...)
	}
	if ev.ended {
		attrs = append(attrs, "outcome", string(r.Status), "duration", jobDuration(r), "bytes", r.BytesTransferred)
		if len(r.ErrorDetails) > 0 {
			attrs = append(attrs, "error", r.ErrorDetails[0].Code)
		}
		level := slog.LevelInfo
		if r.Status == job.Failed {
			level = slog.LevelWarn
		}
		s.logger().Log(context.Background(), level, "job ended", attrs...)
	}
}

func jobDuration(r job.Record) time.Duration {
	if r.EndTime.IsZero() || r.EndTime.Before(r.StartTime) {
		return 0
	}
	return r.EndTime.Sub(r.StartTime)
}

// countJob adds an ended job to the metrics.
func (s *Service) countJob(r job.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended == nil {
		s.ended, s.bytes, s.durations = map[[2]string]uint64{}, map[string]uint64{}, map[string]*prom.Hist{}
	}
	s.ended[[2]string{r.Operation, string(r.Status)}]++
	if r.BytesTransferred > 0 {
		s.bytes[r.Operation] += uint64(r.BytesTransferred)
	}
	h := s.durations[r.Operation]
	if h == nil {
		h = prom.NewHist(prom.JobBuckets)
		s.durations[r.Operation] = h
	}
	h.ObserveDuration(jobDuration(r))
}

// cleanup deletes closed or resolved alerts older than AlertRetention, once
// a day.
func (s *Service) cleanup(ctx context.Context) {
	now := s.Clock.Now().UTC()
	s.mu.Lock()
	due := s.lastCleanup.IsZero() || now.Sub(s.lastCleanup) >= 24*time.Hour
	if due {
		s.lastCleanup = now
	}
	s.mu.Unlock()
	if !due {
		return
	}
	cutoff := now.Add(-AlertRetention)
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		all, err := listAlerts(ctx, tx, "")
		if err != nil {
			return err
		}
		for _, a := range all {
			if (a.State == StateClosed || a.Condition == Resolved) && a.LastModified.Before(cutoff) {
				if err := tx.Delete(ctx, KindAlert, alertKey(a.ID)); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		s.logger().Error("clean up alerts", "err", err)
	}
}
