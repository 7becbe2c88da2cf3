package api

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/monitor"
	"coffer/internal/resource"
)

// AlertsVersions: Microsoft.AlertsManagement's alerts API, stable and
// preview, as the Azure SDKs and `az rest` send them.
var AlertsVersions = []string{"2018-05-05", "2019-03-01", "2019-05-05-preview", "2023-07-12-preview", "2024-01-01-preview", "2025-05-25-preview"}

// MonitorVersions: Coffer.Monitor (notification targets).
var MonitorVersions = IdentityVersions

func init() { AddOperationVersions(AlertsVersions) }

// RegisterMonitor adds the alerts of Microsoft.AlertsManagement (list, get
// and change the state of the alerts of the vaults under a scope, with the
// vaults' read and write actions) and Coffer.Monitor's notification
// targets (the tenant administrator's).
func (s *Server) RegisterMonitor(m *monitor.Service) {
	h := &monitorHandlers{s: s, m: m}
	const alerts = "{scope...}/providers/Microsoft.AlertsManagement/alerts"
	scope := func(r *Request) string { return r.Var("scope") }
	const targets = "/providers/Coffer.Monitor/notificationTargets"
	const tt = "Coffer.Monitor/notificationTargets"
	validTarget := func(r *Request) error { return monitor.CheckTargetName(r.Var("name")) }
	s.Handle(
		Route{Method: "GET", Pattern: alerts, Type: monitor.KindAlert, Versions: AlertsVersions,
			Action: dataprotection.ActionVaultRead, Scope: scope, Handle: h.listAlerts},
		Route{Method: "GET", Pattern: alerts + "/{alert}", Type: monitor.KindAlert, Versions: AlertsVersions,
			Action: dataprotection.ActionVaultRead, Scope: scope, Handle: h.getAlert},
		Route{Method: "POST", Pattern: alerts + "/{alert}/changestate", Type: monitor.KindAlert, Versions: AlertsVersions,
			Action: dataprotection.ActionVaultWrite, Scope: scope, Handle: h.changeState},

		Route{Method: "GET", Pattern: targets, Type: tt, Versions: MonitorVersions, TenantAction: "Coffer.Monitor/notificationTargets/read", Handle: h.listTargets},
		Route{Method: "PUT", Pattern: targets + "/{name}", Type: tt, Versions: MonitorVersions, Validate: validTarget, TenantAction: "Coffer.Monitor/notificationTargets/write", Handle: h.putTarget},
		Route{Method: "GET", Pattern: targets + "/{name}", Type: tt, Versions: MonitorVersions, Validate: validTarget, TenantAction: "Coffer.Monitor/notificationTargets/read", Handle: h.getTarget},
		Route{Method: "DELETE", Pattern: targets + "/{name}", Type: tt, Versions: MonitorVersions, Validate: validTarget, TenantAction: "Coffer.Monitor/notificationTargets/delete", Handle: h.deleteTarget},
		Route{Method: "POST", Pattern: targets + "/{name}/test", Type: tt, Versions: MonitorVersions, Validate: validTarget, TenantAction: "Coffer.Monitor/notificationTargets/test/action", Handle: h.testTarget},
	)
}

type monitorHandlers struct {
	s *Server
	m *monitor.Service
}

// --- alerts ---

// alertWire is Azure Monitor's alert.
type alertWire struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Name       string          `json:"name"`
	Properties alertProperties `json:"properties"`
}

type alertProperties struct {
	Essentials   alertEssentials `json:"essentials"`
	Context      map[string]any  `json:"context"`
	EgressConfig struct{}        `json:"egressConfig"`
}

type alertEssentials struct {
	Severity                         string `json:"severity"`
	SignalType                       string `json:"signalType"`
	AlertState                       string `json:"alertState"`
	MonitorCondition                 string `json:"monitorCondition"`
	MonitorService                   string `json:"monitorService"`
	TargetResource                   string `json:"targetResource"`
	TargetResourceName               string `json:"targetResourceName"`
	TargetResourceGroup              string `json:"targetResourceGroup"`
	TargetResourceType               string `json:"targetResourceType"`
	SourceCreatedID                  string `json:"sourceCreatedId"`
	AlertRule                        string `json:"alertRule"`
	StartDateTime                    string `json:"startDateTime"`
	LastModifiedDateTime             string `json:"lastModifiedDateTime"`
	LastModifiedUserName             string `json:"lastModifiedUserName"`
	MonitorConditionResolvedDateTime string `json:"monitorConditionResolvedDateTime,omitempty"`
	Description                      string `json:"description"`
	ActionStatus                     struct {
		IsSuppressed bool `json:"isSuppressed"`
	} `json:"actionStatus"`
}

func toAlertWire(a monitor.Alert) alertWire {
	w := alertWire{ID: a.ID, Type: monitor.KindAlert, Name: a.Rule.Title()}
	e := &w.Properties.Essentials
	e.Severity, e.SignalType, e.AlertState, e.MonitorCondition = a.Severity, "Log", string(a.State), string(a.Condition)
	e.MonitorService, e.TargetResource, e.AlertRule = monitor.MonitorService, a.VaultID, string(a.Rule)
	if id, err := resource.Parse(a.VaultID); err == nil {
		e.TargetResourceName, e.TargetResourceGroup = id.Name(), id.ResourceGroup
	}
	e.TargetResourceType = "backupVaults"
	e.SourceCreatedID = a.JobID
	if e.SourceCreatedID == "" {
		e.SourceCreatedID = a.Name
	}
	e.StartDateTime, e.LastModifiedDateTime = FormatTime(a.StartTime), FormatTime(a.LastModified)
	e.LastModifiedUserName, e.MonitorConditionResolvedDateTime = a.LastModifiedBy, FormatTime(a.ResolvedTime)
	e.Description = a.Description
	c := map[string]any{"alertId": a.Name, "occurrences": a.Occurrences}
	set := func(k, v string) {
		if v != "" {
			c[k] = v
		}
	}
	set("backupInstanceName", a.InstanceName)
	set("backupInstanceId", a.InstanceID)
	set("dataSourceId", a.DataSourceID)
	set("jobId", a.JobID)
	set("latestJobId", a.LastJobID)
	set("errorCode", a.ErrorCode)
	set("errorMessage", a.ErrorMessage)
	set("lastRecoveryPointTime", FormatTime(a.LastRecoveryPoint))
	set("backupDueTime", FormatTime(a.BackupDue))
	set("deadline", FormatTime(a.Deadline))
	set("comment", a.Comment)
	if len(a.RecommendedAction) > 0 {
		c["recommendedAction"] = a.RecommendedAction
	}
	if a.Interval > 0 {
		c["backupIntervalSeconds"] = int64(a.Interval / time.Second)
	}
	w.Properties.Context = c
	return w
}

// alertScope parses the scope of an alerts request ("/" is the tenant
// root).
func alertScope(r *Request) (resource.ID, error) {
	sc := r.Var("scope")
	if sc == "" || sc == "/" {
		return resource.ID{}, nil
	}
	id, err := resource.Parse(sc)
	if err != nil {
		return resource.ID{}, resource.Errorf(resource.KindBadRequest, "InvalidScope", "The scope '%s' is not valid.", resource.Printable(sc))
	}
	return id, nil
}

// alertFilter reads the list's query parameters (Azure's names); a value
// they cannot take is refused, never ignored.
func alertFilter(q url.Values) (monitor.AlertFilter, error) {
	var f monitor.AlertFilter
	bad := func(name, v, allowed string) error {
		return resource.Errorf(resource.KindBadRequest, "InvalidParameter", "The value '%s' of %s is invalid: use %s.", resource.Printable(v), name, allowed).WithTarget(name)
	}
	if v := q.Get("alertState"); v != "" {
		st, ok := monitor.ParseState(v)
		if !ok {
			return f, bad("alertState", v, "New, Acknowledged or Closed")
		}
		f.State = st
	}
	if v := q.Get("monitorCondition"); v != "" {
		switch {
		case strings.EqualFold(v, string(monitor.Fired)):
			f.Condition = monitor.Fired
		case strings.EqualFold(v, string(monitor.Resolved)):
			f.Condition = monitor.Resolved
		default:
			return f, bad("monitorCondition", v, "Fired or Resolved")
		}
	}
	if v := q.Get("severity"); v != "" {
		if len(v) != 4 || !strings.EqualFold(v[:3], "sev") || v[3] < '0' || v[3] > '4' {
			return f, bad("severity", v, "Sev0 to Sev4")
		}
		f.Severity = "Sev" + v[3:]
	}
	if v := q.Get("alertRule"); v != "" {
		ok := false
		for _, r := range []monitor.Rule{monitor.RuleBackupFailure, monitor.RuleRestoreFailure, monitor.RuleRPOMissed} {
			if strings.EqualFold(v, string(r)) {
				f.Rule, ok = r, true
			}
		}
		if !ok {
			return f, bad("alertRule", v, "BackupFailure, RestoreFailure or RecoveryPointObjectiveMissed")
		}
	}
	return f, nil
}

func (h *monitorHandlers) listAlerts(ctx context.Context, r *Request) (*Response, error) {
	scope, err := alertScope(r)
	if err != nil {
		return nil, err
	}
	f, err := alertFilter(r.HTTP.URL.Query())
	if err != nil {
		return nil, err
	}
	as, err := h.m.ListAlerts(ctx, scope, f)
	if err != nil {
		return nil, err
	}
	items := make([]any, 0, len(as))
	keys := make([]string, 0, len(as))
	for _, a := range as {
		items = append(items, toAlertWire(a))
		keys = append(keys, FormatTime(a.StartTime)+"_"+a.Name)
	}
	return h.s.Paginate(r, items, keys)
}

func (h *monitorHandlers) getAlert(ctx context.Context, r *Request) (*Response, error) {
	scope, err := alertScope(r)
	if err != nil {
		return nil, err
	}
	a, err := h.m.GetAlert(ctx, scope, r.Var("alert"))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, toAlertWire(a)), nil
}

func (h *monitorHandlers) changeState(ctx context.Context, r *Request) (*Response, error) {
	scope, err := alertScope(r)
	if err != nil {
		return nil, err
	}
	v := r.Query("newState")
	st, ok := monitor.ParseState(v)
	if !ok {
		return nil, resource.Errorf(resource.KindBadRequest, "InvalidParameter",
			"The query parameter newState '%s' is invalid: use New, Acknowledged or Closed.", resource.Printable(v)).WithTarget("newState")
	}
	var in struct {
		Comment  string `json:"comment"`
		Comments string `json:"comments"` // the older api-versions' name
	}
	if len(strings.TrimSpace(string(r.Body))) > 0 {
		if err := r.Decode(&in); err != nil {
			return nil, err
		}
	}
	comment := in.Comment
	if comment == "" {
		comment = in.Comments
	}
	a, err := h.m.ChangeState(ctx, scope, r.Var("alert"), st, comment, r.Principal.Name())
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, toAlertWire(a)), nil
}

// --- notification targets ---

type targetWire struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Properties targetPropsWire `json:"properties"`
}

type targetPropsWire struct {
	Kind          string   `json:"kind"`
	URL           string   `json:"url,omitempty"`
	SMTPServer    string   `json:"smtpServer,omitempty"`
	From          string   `json:"from,omitempty"`
	To            []string `json:"to,omitempty"`
	Username      string   `json:"username,omitempty"`
	CACertificate string   `json:"caCertificate,omitempty"`
	// Secret and Password are input only, except the webhook secret the
	// server generated, which the creating answer shows once.
	Secret       string        `json:"secret,omitempty"`
	Password     string        `json:"password,omitempty"`
	HasSecret    bool          `json:"hasSecret"`
	CreatedAt    string        `json:"createdAt,omitempty"`
	CreatedBy    string        `json:"createdBy,omitempty"`
	LastDelivery *deliveryWire `json:"lastDelivery,omitempty"`
}

type deliveryWire struct {
	Time     string `json:"time"`
	AlertID  string `json:"alertId,omitempty"`
	Event    string `json:"event,omitempty"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error,omitempty"`
}

func toTargetWire(t monitor.Target) targetWire {
	w := targetWire{ID: "/providers/Coffer.Monitor/notificationTargets/" + t.Name, Name: t.Name, Type: "Coffer.Monitor/notificationTargets",
		Properties: targetPropsWire{Kind: t.Kind, URL: t.URL, SMTPServer: t.SMTPServer, From: t.From, To: t.To, Username: t.Username,
			CACertificate: t.CACertificate, HasSecret: t.HasSecret(), CreatedAt: FormatTime(t.CreatedAt), CreatedBy: t.CreatedBy}}
	if d := t.LastDelivery; d != nil {
		w.Properties.LastDelivery = &deliveryWire{Time: FormatTime(d.Time), AlertID: d.AlertID, Event: string(d.Event),
			Status: d.Status, Attempts: d.Attempts, Error: d.Error}
	}
	return w
}

func (h *monitorHandlers) putTarget(ctx context.Context, r *Request) (*Response, error) {
	var in struct {
		Properties *targetPropsWire `json:"properties"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.Properties == nil {
		return nil, errInvalidContent("properties is required").WithTarget("properties")
	}
	p := in.Properties
	if p.Secret != "" && p.Password != "" {
		return nil, resource.Errorf(resource.KindBadRequest, "InvalidParameter", "Give secret (a webhook) or password (email), not both.").WithTarget("properties.secret")
	}
	secret := p.Secret
	if p.Password != "" {
		secret = p.Password
	}
	t, generated, created, err := h.m.PutTarget(ctx, monitor.TargetInput{Name: r.Var("name"), Kind: p.Kind, URL: p.URL,
		SMTPServer: p.SMTPServer, From: p.From, To: p.To, Username: p.Username, CACertificate: p.CACertificate,
		Secret: secret}, r.Principal.Name())
	if err != nil {
		return nil, err
	}
	out := toTargetWire(t)
	out.Properties.Secret = generated
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return JSON(status, out), nil
}

func (h *monitorHandlers) getTarget(ctx context.Context, r *Request) (*Response, error) {
	t, err := h.m.GetTarget(ctx, r.Var("name"))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, toTargetWire(t)), nil
}

func (h *monitorHandlers) listTargets(ctx context.Context, r *Request) (*Response, error) {
	ts, err := h.m.ListTargets(ctx)
	if err != nil {
		return nil, err
	}
	items := make([]any, 0, len(ts))
	keys := make([]string, 0, len(ts))
	for _, t := range ts {
		items = append(items, toTargetWire(t))
		keys = append(keys, strings.ToLower(t.Name))
	}
	return h.s.Paginate(r, items, keys)
}

func (h *monitorHandlers) deleteTarget(ctx context.Context, r *Request) (*Response, error) {
	existed, err := h.m.DeleteTarget(ctx, r.Var("name"), r.Principal.Name())
	if err != nil {
		return nil, err
	}
	if !existed {
		return &Response{Status: http.StatusNoContent}, nil
	}
	return &Response{Status: http.StatusOK}, nil
}

func (h *monitorHandlers) testTarget(ctx context.Context, r *Request) (*Response, error) {
	err := h.m.TestTarget(ctx, r.Var("name"), r.Principal.Name())
	if resource.AsError(err) != nil {
		return nil, err // the target does not exist
	}
	out := map[string]string{"status": monitor.Delivered}
	if err != nil {
		out = map[string]string{"status": monitor.Failed, "error": err.Error()}
	}
	return JSON(http.StatusOK, out), nil
}
