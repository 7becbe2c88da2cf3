package monitor

import (
	"context"
	"io"
	"sort"

	"coffer/internal/prom"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// ActionInstanceRead is what a scrape's principal needs on a backup
// instance to get its series.
const ActionInstanceRead = "Microsoft.DataProtection/backupVaults/backupInstances/read"

// WriteMetrics writes the monitor's aggregate metrics, which name no
// resource: jobs running and ended (by operation and status), their
// durations and bytes, backup instances by protection state and how many
// missed their recovery point objective, open alerts and notification
// deliveries.
func (s *Service) WriteMetrics(ctx context.Context, w io.Writer) {
	s.mu.Lock()
	running := map[string]int{}
	for _, j := range s.seen {
		if !j.status.IsTerminal() {
			running[j.op]++
		}
	}
	ended := make(map[[2]string]uint64, len(s.ended))
	for k, v := range s.ended {
		ended[k] = v
	}
	bytes := make(map[string]uint64, len(s.bytes))
	for k, v := range s.bytes {
		bytes[k] = v
	}
	durations := make(map[string]*prom.Hist, len(s.durations))
	for k, v := range s.durations {
		durations[k] = v
	}
	deliveries := make(map[[2]string]uint64, len(s.deliveries))
	for k, v := range s.deliveries {
		deliveries[k] = v
	}
	s.mu.Unlock()

	prom.Header(w, "coffer_jobs_running", prom.Gauge, "Backup jobs in progress, by operation.")
	for _, op := range sortedKeys(running) {
		prom.Sample(w, "coffer_jobs_running", float64(running[op]), "operation", op)
	}
	prom.Header(w, "coffer_jobs_ended_total", prom.Counter, "Backup jobs that ended since the server started, by operation and status.")
	keys := make([][2]string, 0, len(ended))
	for k := range ended {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+"\x00"+keys[i][1] < keys[j][0]+"\x00"+keys[j][1] })
	for _, k := range keys {
		prom.Sample(w, "coffer_jobs_ended_total", float64(ended[k]), "operation", k[0], "status", k[1])
	}
	prom.Header(w, "coffer_job_duration_seconds", prom.Histogram, "Duration of the jobs that ended, by operation.")
	for _, op := range sortedKeys(durations) {
		durations[op].Write(w, "coffer_job_duration_seconds", "operation", op)
	}
	prom.Header(w, "coffer_job_transferred_bytes_total", prom.Counter, "Bytes the jobs that ended transferred (a backup: the data its snapshot stored; a restore: the disk's size), by operation.")
	for _, op := range sortedKeys(bytes) {
		prom.Sample(w, "coffer_job_transferred_bytes_total", float64(bytes[op]), "operation", op)
	}

	prots, err := s.protection(ctx)
	if err == nil {
		now := s.Clock.Now().UTC()
		states := map[string]int{}
		miss := 0
		for _, p := range prots {
			states[p.State]++
			if s.Objective(p, now).Missed {
				miss++
			}
		}
		prom.Header(w, "coffer_backup_instances", prom.Gauge, "Backup instances by protection state.")
		for _, st := range sortedKeys(states) {
			prom.Sample(w, "coffer_backup_instances", float64(states[st]), "state", st)
		}
		prom.Family(w, "coffer_backup_instances_rpo_missed", prom.Gauge,
			"Backup instances whose recovery point objective is missed (no recovery point by the backup due after the latest, plus the grace period).", float64(miss))
	}

	var alerts []Alert
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		alerts, err = listAlerts(ctx, tx, "")
		return err
	}); err == nil {
		open := map[[2]string]int{}
		for _, a := range alerts {
			if a.active() {
				open[[2]string{string(a.Rule), string(a.State)}]++
			}
		}
		prom.Header(w, "coffer_alerts_open", prom.Gauge, "Alerts whose condition holds and that nobody closed, by rule and state.")
		for _, r := range []Rule{RuleBackupFailure, RuleRestoreFailure, RuleRPOMissed} {
			for _, st := range []State{StateNew, StateAcknowledged} {
				prom.Sample(w, "coffer_alerts_open", float64(open[[2]string{string(r), string(st)}]), "rule", string(r), "state", string(st))
			}
		}
	}
	prom.Header(w, "coffer_notifications_total", prom.Counter, "Notification delivery attempts, by target kind and outcome (Delivered, Retrying, Failed).")
	dkeys := make([][2]string, 0, len(deliveries))
	for k := range deliveries {
		dkeys = append(dkeys, k)
	}
	sort.Slice(dkeys, func(i, j int) bool { return dkeys[i][0]+dkeys[i][1] < dkeys[j][0]+dkeys[j][1] })
	for _, k := range dkeys {
		prom.Sample(w, "coffer_notifications_total", float64(deliveries[k]), "kind", k[0], "outcome", k[1])
	}
}

// WriteInstanceMetrics writes one series per backup instance that allowed
// lets through (the scrape's principal may read it): the age of its latest
// recovery point (since protection began when it has none), its time, the
// policy's interval, whether the objective is missed, and its recovery
// points. Labels: subscription, resource_group, vault, backup_instance
// (not "instance": Prometheus gives that label to every scraped target).
func (s *Service) WriteInstanceMetrics(ctx context.Context, w io.Writer, allowed func(action, scope string) bool) {
	prots, err := s.protection(ctx)
	if err != nil {
		s.logger().Warn("instance metrics", "err", err)
		return
	}
	now := s.Clock.Now().UTC()
	type row struct {
		labels []string
		age    float64
		last   float64
		every  float64
		missed float64
		points float64
		prot   float64
		has    bool
		obj    bool
	}
	var rows []row
	for _, p := range prots {
		if !allowed(ActionInstanceRead, p.InstanceID) {
			continue
		}
		id, err := resource.Parse(p.InstanceID)
		if err != nil || len(id.Names) < 2 {
			continue
		}
		r := row{labels: []string{"subscription", id.Subscription, "resource_group", id.ResourceGroup, "vault", id.Names[0], "backup_instance", id.Names[1]},
			every: p.Interval.Seconds(), points: float64(p.RecoveryPoints)}
		if p.Protecting {
			r.prot = 1
		}
		o := s.Objective(p, now)
		if o.Applies {
			r.obj, r.age = true, now.Sub(o.Since).Seconds()
			if o.Missed {
				r.missed = 1
			}
		}
		if !p.LastRecoveryPoint.IsZero() {
			r.has, r.last = true, float64(p.LastRecoveryPoint.Unix())
			if !o.Applies {
				r.age = now.Sub(p.LastRecoveryPoint).Seconds()
			}
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return
	}
	prom.Header(w, "coffer_backup_instance_last_recovery_point_age_seconds", prom.Gauge,
		"Seconds since the instance's latest recovery point (since protection began or resumed, when that is later).")
	for _, r := range rows {
		if r.obj || r.has {
			prom.Sample(w, "coffer_backup_instance_last_recovery_point_age_seconds", r.age, r.labels...)
		}
	}
	prom.Header(w, "coffer_backup_instance_last_recovery_point_timestamp_seconds", prom.Gauge, "Unix time of the instance's latest recovery point.")
	for _, r := range rows {
		if r.has {
			prom.Sample(w, "coffer_backup_instance_last_recovery_point_timestamp_seconds", r.last, r.labels...)
		}
	}
	prom.Header(w, "coffer_backup_instance_backup_interval_seconds", prom.Gauge, "The interval of the instance's backup policy.")
	for _, r := range rows {
		if r.every > 0 {
			prom.Sample(w, "coffer_backup_instance_backup_interval_seconds", r.every, r.labels...)
		}
	}
	prom.Header(w, "coffer_backup_instance_rpo_missed", prom.Gauge, "1 while the instance's recovery point objective is missed.")
	for _, r := range rows {
		prom.Sample(w, "coffer_backup_instance_rpo_missed", r.missed, r.labels...)
	}
	prom.Header(w, "coffer_backup_instance_protected", prom.Gauge, "1 while the instance takes scheduled backups.")
	for _, r := range rows {
		prom.Sample(w, "coffer_backup_instance_protected", r.prot, r.labels...)
	}
	prom.Header(w, "coffer_backup_instance_recovery_points", prom.Gauge, "Recovery points the instance has.")
	for _, r := range rows {
		prom.Sample(w, "coffer_backup_instance_recovery_points", r.points, r.labels...)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
