package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// AlertsVersion is the Microsoft.AlertsManagement api-version the client
// sends.
const AlertsVersion = "2019-05-05-preview"

// Alert is an Azure Monitor alert (Microsoft.AlertsManagement/alerts).
type Alert struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		Essentials AlertEssentials `json:"essentials"`
		Context    map[string]any  `json:"context"`
	} `json:"properties"`
}

// AlertEssentials are an alert's essentials.
type AlertEssentials struct {
	Severity                         string `json:"severity"`
	SignalType                       string `json:"signalType"`
	AlertState                       string `json:"alertState"`
	MonitorCondition                 string `json:"monitorCondition"`
	MonitorService                   string `json:"monitorService"`
	TargetResource                   string `json:"targetResource"`
	TargetResourceName               string `json:"targetResourceName"`
	TargetResourceGroup              string `json:"targetResourceGroup"`
	AlertRule                        string `json:"alertRule"`
	SourceCreatedID                  string `json:"sourceCreatedId"`
	StartDateTime                    string `json:"startDateTime"`
	LastModifiedDateTime             string `json:"lastModifiedDateTime"`
	LastModifiedUserName             string `json:"lastModifiedUserName"`
	MonitorConditionResolvedDateTime string `json:"monitorConditionResolvedDateTime"`
	Description                      string `json:"description"`
}

// AlertFilter selects alerts (Azure's query parameters); empty fields
// select all.
type AlertFilter struct {
	State, Condition, Severity, Rule string
}

func (f AlertFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"alertState": f.State, "monitorCondition": f.Condition, "severity": f.Severity, "alertRule": f.Rule} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// ListAlerts lists the alerts under scope (a subscription, resource group
// or vault ID; empty: the client's subscription).
func (c *Client) ListAlerts(ctx context.Context, scope string, f AlertFilter) ([]Alert, error) {
	if scope == "" {
		scope = "/subscriptions/" + c.Subscription
	}
	return listAs[Alert](ctx, c, strings.TrimSuffix(scope, "/")+"/providers/Microsoft.AlertsManagement/alerts", AlertsVersion, f.query())
}

// alertPath is the path of an alert given by its ID or, as a bare name,
// under the client's subscription.
func (c *Client) alertPath(id string) string {
	if strings.HasPrefix(id, "/") {
		return id
	}
	return "/subscriptions/" + c.Subscription + "/providers/Microsoft.AlertsManagement/alerts/" + id
}

// GetAlert reads one alert, by ID (or name under the client's
// subscription).
func (c *Client) GetAlert(ctx context.Context, id string) (Alert, error) {
	var a Alert
	_, err := c.Do(ctx, http.MethodGet, c.alertPath(id), AlertsVersion, nil, nil, &a)
	return a, err
}

// ChangeAlertState sets an alert's state: New, Acknowledged or Closed.
func (c *Client) ChangeAlertState(ctx context.Context, id, state, comment string) (Alert, error) {
	var a Alert
	var body any
	if comment != "" {
		body = map[string]string{"comment": comment}
	}
	_, err := c.Do(ctx, http.MethodPost, c.alertPath(id)+"/changestate", AlertsVersion, url.Values{"newState": {state}}, body, &a)
	return a, err
}

// NotificationTarget is a Coffer.Monitor notification target.
type NotificationTarget struct {
	ID         string                 `json:"id,omitempty"`
	Name       string                 `json:"name,omitempty"`
	Properties NotificationTargetSpec `json:"properties"`
}

// NotificationTargetSpec is a target's properties. Secret (a webhook's
// signing secret) and Password (SMTP) are sent, never read back, except a
// webhook secret the server generated, which the creating answer carries
// once.
type NotificationTargetSpec struct {
	Kind          string        `json:"kind"` // Webhook or Email
	URL           string        `json:"url,omitempty"`
	SMTPServer    string        `json:"smtpServer,omitempty"`
	From          string        `json:"from,omitempty"`
	To            []string      `json:"to,omitempty"`
	Username      string        `json:"username,omitempty"`
	CACertificate string        `json:"caCertificate,omitempty"`
	Secret        string        `json:"secret,omitempty"`
	Password      string        `json:"password,omitempty"`
	HasSecret     bool          `json:"hasSecret,omitempty"`
	CreatedAt     string        `json:"createdAt,omitempty"`
	CreatedBy     string        `json:"createdBy,omitempty"`
	LastDelivery  *DeliveryInfo `json:"lastDelivery,omitempty"`
}

// DeliveryInfo is the outcome of a target's latest delivery.
type DeliveryInfo struct {
	Time     string `json:"time"`
	AlertID  string `json:"alertId"`
	Event    string `json:"event"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error"`
}

const targetsPath = "/providers/Coffer.Monitor/notificationTargets"

// PutNotificationTarget creates or replaces a notification target.
func (c *Client) PutNotificationTarget(ctx context.Context, name string, spec NotificationTargetSpec) (NotificationTarget, error) {
	var t NotificationTarget
	_, err := c.Do(ctx, http.MethodPut, targetsPath+"/"+url.PathEscape(name), IdentityVersion, nil, NotificationTarget{Properties: spec}, &t)
	return t, err
}

// ListNotificationTargets lists the notification targets.
func (c *Client) ListNotificationTargets(ctx context.Context) ([]NotificationTarget, error) {
	return listAs[NotificationTarget](ctx, c, targetsPath, IdentityVersion, nil)
}

// GetNotificationTarget reads one notification target.
func (c *Client) GetNotificationTarget(ctx context.Context, name string) (NotificationTarget, error) {
	var t NotificationTarget
	_, err := c.Do(ctx, http.MethodGet, targetsPath+"/"+url.PathEscape(name), IdentityVersion, nil, nil, &t)
	return t, err
}

// DeleteNotificationTarget deletes a notification target; it reports
// whether it existed.
func (c *Client) DeleteNotificationTarget(ctx context.Context, name string) (bool, error) {
	resp, err := c.Do(ctx, http.MethodDelete, targetsPath+"/"+url.PathEscape(name), IdentityVersion, nil, nil, nil)
	if err != nil {
		return false, err
	}
	return resp.StatusCode != http.StatusNoContent, nil
}

// TestResult is the outcome of a target's test notification.
type TestResult struct {
	Status string `json:"status"` // Delivered or Failed
	Error  string `json:"error,omitempty"`
}

// TestNotificationTarget sends a test notification to a target now.
func (c *Client) TestNotificationTarget(ctx context.Context, name string) (TestResult, error) {
	var r TestResult
	_, err := c.Do(ctx, http.MethodPost, targetsPath+"/"+url.PathEscape(name)+"/test", IdentityVersion, nil, nil, &r)
	return r, err
}
