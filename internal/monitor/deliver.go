package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"coffer/internal/job"
	"coffer/internal/store"
)

// TaskNotify is the job-queue task type of a notification delivery.
const TaskNotify = "monitor.notify"

// DefaultMaxDeliveries is how many times a notification is tried: with
// the queue's backoff (10 s, doubling) the last try comes about three
// hours after the first.
const DefaultMaxDeliveries = 12

// Notification is what a Sender delivers: an alert that fired or was
// resolved.
type Notification struct {
	// ID identifies the delivery (the same on every try of it): receivers
	// de-duplicate on it.
	ID    string
	Event Condition // Fired or Resolved
	Alert Alert
	// Time is when this try was made.
	Time time.Time
}

// Sender delivers notifications to one kind of target. secret is the
// target's opened secret (the webhook's signing secret, the SMTP
// password; empty when it has none). An error means "try again later".
type Sender interface {
	Send(ctx context.Context, t Target, secret string, n Notification) error
}

// delivery is a notification queued in a transaction.
type delivery struct {
	alert  Alert
	event  Condition
	target string
}

type notifyPayload struct {
	AlertID string    `json:"alertId"`
	Target  string    `json:"target"`
	Event   Condition `json:"event"`
}

// queueDeliveries queues, in tx, one delivery of the alert's event to each
// target. Without targets (or a queue) it queues nothing but still
// reports the event, for the log.
func (s *Service) queueDeliveries(ctx context.Context, tx store.Tx, a Alert, ev Condition, targets []Target) ([]delivery, error) {
	out := []delivery{{alert: a, event: ev}}
	if s.Queue == nil {
		return out, nil
	}
	max := s.MaxDeliveries
	if max <= 0 {
		max = DefaultMaxDeliveries
	}
	for _, t := range targets {
		p, _ := json.Marshal(notifyPayload{AlertID: a.ID, Target: t.Name, Event: ev})
		id := derivedGUID(a.ID, t.Name, string(ev))
		err := s.Queue.EnqueueTx(ctx, tx, job.Task{ID: id, Type: TaskNotify, Target: "notify/" + strings.ToLower(t.Name),
			Payload: p, MaxAttempts: max})
		if err != nil && !errors.Is(err, job.ErrDuplicate) {
			return nil, fmt.Errorf("queue the notification of %s to %s: %w", a.ID, t.Name, err)
		}
		out = append(out, delivery{alert: a, event: ev, target: t.Name})
	}
	return out, nil
}

// ExecNotify is the worker's handler of TaskNotify: it delivers one
// notification and records the outcome on the target. An error makes the
// queue try again after its backoff, up to the delivery limit
// (DeliveryFailed then). A delivery whose alert or target is gone is
// dropped.
func (s *Service) ExecNotify(ctx context.Context, t job.Task) error {
	var p notifyPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		s.logger().Error("notification task with a bad payload", "task", t.ID, "err", err)
		return nil
	}
	var a Alert
	var tg Target
	gone := false
	err := s.Store.View(ctx, func(tx store.Tx) error {
		gone = false
		o, err := tx.Get(ctx, KindAlert, alertKey(p.AlertID))
		if errors.Is(err, store.ErrNotFound) {
			gone = true
			return nil
		}
		if err != nil {
			return err
		}
		if a, err = decodeAlert(o); err != nil {
			return err
		}
		tg, err = getTarget(ctx, tx, p.Target)
		if errors.Is(err, ErrTargetNotFound) {
			gone = true
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if gone {
		s.logger().Info("notification dropped: its alert or target is gone", "alert", p.AlertID, "target", p.Target)
		return nil
	}
	serr := s.send(ctx, tg, Notification{ID: t.ID, Event: p.Event, Alert: a, Time: s.Clock.Now().UTC()})
	st := DeliveryStatus{Time: s.Clock.Now().UTC(), AlertID: a.ID, Event: p.Event, Status: Delivered, Attempts: t.Attempts}
	if serr != nil {
		st.Status, st.Error = Retrying, serr.Error()
		if t.Attempts >= t.MaxAttempts {
			st.Status = Failed
		}
	}
	s.recordDelivery(ctx, tg.Name, st)
	s.countDelivery(tg.Kind, st.Status)
	if serr == nil {
		s.logger().Info("notification delivered", "alert", a.ID, "event", p.Event, "target", tg.Name, "kind", tg.Kind, "attempt", t.Attempts)
	}
	return serr
}

// send opens the target's secret and hands the notification to the sender
// of its kind.
func (s *Service) send(ctx context.Context, tg Target, n Notification) error {
	sender := s.Senders[tg.Kind]
	if sender == nil {
		return fmt.Errorf("no sender for %s targets", tg.Kind)
	}
	secret := ""
	if tg.SealedSecret != "" {
		if s.Sealer == nil {
			return errors.New("no sealing key to open the target's secret")
		}
		var err error
		if secret, err = s.Sealer.Open(tg.Name, tg.SealedSecret); err != nil {
			return fmt.Errorf("target %s: %w", tg.Name, err)
		}
	}
	return sender.Send(ctx, tg, secret, n)
}

// DeliveryFailed is the worker pool's dead-letter hook for TaskNotify: the
// notification was tried as many times as allowed.
func (s *Service) DeliveryFailed(ctx context.Context, t job.Task, cause error) {
	var p notifyPayload
	_ = json.Unmarshal(t.Payload, &p)
	s.logger().Error("notification not delivered: giving up", "alert", p.AlertID, "event", p.Event, "target", p.Target,
		"attempts", t.Attempts, "err", cause)
	st := DeliveryStatus{Time: s.Clock.Now().UTC(), AlertID: p.AlertID, Event: p.Event, Status: Failed, Attempts: t.Attempts}
	if cause != nil {
		st.Error = cause.Error()
	}
	s.recordDelivery(ctx, p.Target, st)
}

// recordDelivery keeps the latest delivery's outcome on the target.
func (s *Service) recordDelivery(ctx context.Context, target string, st DeliveryStatus) {
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		tg, err := getTarget(ctx, tx, target)
		if errors.Is(err, ErrTargetNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		tg.LastDelivery = &st
		return putTarget(ctx, tx, tg, store.PutOptions{})
	})
	if err != nil {
		s.logger().Warn("record a delivery's outcome", "target", target, "err", err)
	}
}

func (s *Service) countDelivery(kind, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deliveries == nil {
		s.deliveries = map[[2]string]uint64{}
	}
	s.deliveries[[2]string{kind, status}]++
}

// TestTarget sends a test notification to a target now, once, and returns
// the error if it could not be delivered.
func (s *Service) TestTarget(ctx context.Context, name, by string) error {
	tg, err := s.GetTarget(ctx, name)
	if err != nil {
		return err
	}
	now := s.Clock.Now().UTC()
	a := Alert{ID: "/providers/Coffer.Monitor/notificationTargets/" + tg.Name + "/test", Name: derivedGUID(tg.Name, now.String()),
		Rule: RuleTest, Severity: Sev4, State: StateNew, Condition: Fired, StartTime: now, LastModified: now, LastModifiedBy: by,
		Description: "A test notification sent by " + by + " to check the notification target " + tg.Name + "."}
	serr := s.send(ctx, tg, Notification{ID: a.Name, Event: Fired, Alert: a, Time: now})
	st := DeliveryStatus{Time: now, AlertID: a.ID, Event: Fired, Status: Delivered, Attempts: 1}
	if serr != nil {
		st.Status, st.Error = Failed, serr.Error()
	}
	s.recordDelivery(ctx, tg.Name, st)
	s.countDelivery(tg.Kind, st.Status)
	s.logger().Info("notification target tested", "target", tg.Name, "kind", tg.Kind, "status", st.Status, "principal", by)
	return serr
}
