package server

import (
	"context"
	"io"
	"path/filepath"
	"sync"

	"coffer/internal/job"
	"coffer/internal/monitor"
	"coffer/internal/notify"
	"coffer/internal/worker"
)

// monitorRuntime is the monitor and its evaluation loop.
type monitorRuntime struct {
	svc    *monitor.Service
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// openMonitor builds the monitor on the job queue and worker pool of
// Microsoft.DataProtection (notifications are tasks of that queue), before
// the pool starts: it registers the delivery handler, registers the alert
// and notification target routes and the metrics, and starts the
// evaluation loop. The secrets of notification targets are sealed with
// DATA/notify.key (owner-only, made on first start), kept out of the
// metadata store so that a copy of the database does not reveal them;
// nodes sharing a store need the same file.
func (s *Server) openMonitor(ctx context.Context, q *job.Queue, pool *worker.Pool) error {
	cfg := s.cfg
	key, err := loadOrCreateKey(filepath.Join(cfg.DataDir, "notify.key"))
	if err != nil {
		return err
	}
	sealer, err := monitor.NewSealer(key)
	if err != nil {
		return err
	}
	mon := &monitor.Service{Store: s.store, Clock: cfg.Clock, Logger: s.log, Queue: q, Sealer: sealer,
		Senders:  map[string]monitor.Sender{monitor.KindWebhook: &notify.Webhook{Clock: cfg.Clock}, monitor.KindEmail: &notify.Mailer{}},
		RPOGrace: cfg.RPOGrace, Interval: cfg.MonitorInterval}
	pool.Handle(monitor.TaskNotify, mon.ExecNotify)
	dead := pool.Dead
	pool.Dead = func(ctx context.Context, t job.Task, cause error) {
		if t.Type == monitor.TaskNotify {
			mon.DeliveryFailed(ctx, t, cause)
			return
		}
		if dead != nil {
			dead(ctx, t, cause)
		}
	}
	s.API.RegisterMonitor(mon)
	s.API.AddMetrics(func(w io.Writer) { mon.WriteMetrics(context.Background(), w) })
	s.API.AddScopedMetrics(mon.WriteInstanceMetrics)
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rt := &monitorRuntime{svc: mon, cancel: cancel}
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		mon.Run(bg)
	}()
	s.mon = rt
	return nil
}

// closeMonitor stops the evaluation loop.
func (s *Server) closeMonitor() {
	if s.mon == nil {
		return
	}
	s.mon.cancel()
	s.mon.wg.Wait()
}

// Monitor returns the monitor (tests evaluate it on a fake clock).
func (s *Server) Monitor() *monitor.Service {
	if s.mon == nil {
		return nil
	}
	return s.mon.svc
}
