package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"coffer/internal/authorization"
	"coffer/internal/capacity"
	"coffer/internal/identity"
	"coffer/internal/operation"
	"coffer/internal/resource"
	"coffer/internal/tenant"
)

// Core holds the services behind the core routes.
type Core struct {
	Tenant   *tenant.Service
	Authz    *authorization.Service
	Identity *identity.Service
	// Ready reports whether the server is ready (for /healthz).
	Ready func(ctx context.Context) error
	// Space measures the data filesystem (for /healthz and /metrics).
	Space *capacity.Monitor
	// StalledHydrations counts restored disks whose hydration waits for
	// space (for /healthz and /metrics).
	StalledHydrations func() int
}

// RegisterCore adds the routes every Coffer server has: health, metrics,
// identity endpoints, subscriptions, resource groups, authorization and
// operation polls.
func (s *Server) RegisterCore(c Core) {
	h := &coreHandlers{s: s, c: c}
	AddOperationVersions(ResourcesVersions, AuthorizationVersions, SubscriptionAliasVersions, IdentityVersions)
	s.AddMetrics(h.writeStorageMetrics)
	s.Handle(
		Route{Method: "GET", Pattern: "/healthz", Anonymous: true, Handle: h.health},
		Route{Method: "GET", Pattern: "/metrics", Anonymous: true, OptionalAuth: true, Handle: h.metrics},
	)
	s.Handle(h.identityRoutes()...)
	s.Handle(h.resourceRoutes()...)
	s.Handle(h.authorizationRoutes()...)
	s.Handle(s.operationRoutes(OperationVersions)...)
	s.Operations.Register(opGroupDelete, h.deleteGroupContents)
}

type coreHandlers struct {
	s *Server
	c Core
}

// healthWire is the body of GET /healthz.
type healthWire struct {
	// Status is "ok", "degraded" (serving, but the data filesystem is
	// below its free-space reserve or a hydration waits for space) or
	// "unavailable" (503: the metadata store cannot be read).
	Status  string         `json:"status"`
	Error   string         `json:"error,omitempty"`
	Reasons []string       `json:"reasons,omitempty"`
	Storage *storageHealth `json:"storage,omitempty"`
}

type storageHealth struct {
	FreeBytes         int64         `json:"freeBytes"`
	TotalBytes        int64         `json:"totalBytes"`
	ReserveBytes      int64         `json:"reserveBytes"`
	StalledHydrations int           `json:"stalledHydrations"`
	NoSpaceFailures   uint64        `json:"noSpaceFailures"`
	LastNoSpace       *noSpaceEvent `json:"lastNoSpaceError,omitempty"`
	// MeasureFailed says the free space could not be measured (the
	// error, which names the data dir, is logged).
	MeasureFailed bool `json:"measureFailed,omitempty"`
}

// noSpaceEvent says when the last write failed for lack of space. The
// error itself names paths on the node, so it goes to the log and not to
// this anonymous endpoint.
type noSpaceEvent struct {
	Time string `json:"time"`
}

// storageStatus measures the data filesystem and says why it degrades the
// server's health, if it does.
func (h *coreHandlers) storageStatus() (*storageHealth, []string) {
	if h.c.Space == nil {
		return nil, nil
	}
	st := h.c.Space.Status()
	out := &storageHealth{FreeBytes: st.FreeBytes, TotalBytes: st.TotalBytes, ReserveBytes: st.ReserveBytes,
		NoSpaceFailures: st.NoSpaceFailures}
	if st.Err != nil {
		out.MeasureFailed = true
	}
	if !st.LastNoSpace.IsZero() {
		out.LastNoSpace = &noSpaceEvent{Time: FormatTime(st.LastNoSpace)}
	}
	var reasons []string
	if st.Low {
		reasons = append(reasons, fmt.Sprintf("the data filesystem has %s free, below the reserve of %s: requests that store new data are refused (507 InsufficientStorage)",
			capacity.Bytes(st.FreeBytes), capacity.Bytes(st.ReserveBytes)))
	}
	if h.c.StalledHydrations != nil {
		out.StalledHydrations = h.c.StalledHydrations()
		if n := out.StalledHydrations; n > 0 {
			reasons = append(reasons, fmt.Sprintf("%d restored disk(s) cannot hydrate for lack of space; they resume by themselves when space is back", n))
		}
	}
	return out, reasons
}

func (h *coreHandlers) health(ctx context.Context, r *Request) (*Response, error) {
	if h.c.Ready != nil {
		if err := h.c.Ready(ctx); err != nil {
			return JSON(http.StatusServiceUnavailable, healthWire{Status: "unavailable", Error: err.Error()}), nil
		}
	}
	out := healthWire{Status: "ok"}
	out.Storage, out.Reasons = h.storageStatus()
	if len(out.Reasons) > 0 {
		out.Status = "degraded"
	}
	return JSON(http.StatusOK, out), nil
}

// writeStorageMetrics writes the data filesystem's gauges.
func (h *coreHandlers) writeStorageMetrics(w io.Writer) {
	st, reasons := h.storageStatus()
	if st == nil {
		return
	}
	degraded := 0
	if len(reasons) > 0 {
		degraded = 1
	}
	for _, m := range []struct {
		name, typ, help string
		v               any
	}{
		{"coffer_data_free_bytes", "gauge", "Free bytes on the data filesystem (the fullest one holding the data directory).", st.FreeBytes},
		{"coffer_data_size_bytes", "gauge", "Size in bytes of the data filesystem.", st.TotalBytes},
		{"coffer_data_reserve_bytes", "gauge", "Free space below which requests that store new data are refused.", st.ReserveBytes},
		{"coffer_storage_degraded", "gauge", "1 while free space is below the reserve or a hydration waits for space.", degraded},
		{"coffer_hydrations_stalled", "gauge", "Restored disks whose hydration waits for space.", st.StalledHydrations},
		{"coffer_nospace_failures_total", "counter", "Writes that failed or were refused for lack of space.", st.NoSpaceFailures},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", m.name, m.help, m.name, m.typ, m.name, m.v)
	}
}

func (h *coreHandlers) metrics(ctx context.Context, r *Request) (*Response, error) {
	var b strings.Builder
	h.s.WriteMetrics(&b)
	if r.Principal.ID != "" {
		h.s.writeScopedMetrics(ctx, &b, func(action, scope string) bool {
			d, err := h.s.Authorizer.Decide(ctx, r.Principal, action, scope)
			return err == nil && d.Allowed
		})
	}
	resp := &Response{Status: http.StatusOK, Body: []byte(b.String())}
	resp.SetHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	return resp, nil
}

// principalType is how systemData names the kind of a principal.
// --- subscriptions and groups ---

func (h *coreHandlers) resourceRoutes() []Route {
	v := ResourcesVersions
	subScope := func(r *Request) string { return "/subscriptions/" + r.Var("sub") }
	grpScope := func(r *Request) string { return "/subscriptions/" + r.Var("sub") + "/resourceGroups/" + r.Var("rg") }
	validGroup := func(r *Request) error { return resource.GroupNameRule.Check("InvalidResourceGroup", r.Var("rg")) }
	routes := []Route{
		{Method: "GET", Pattern: "/subscriptions", Type: "subscriptions", Versions: v,
			Checks: "any principal: the subscriptions it may see (" + tenant.ActionSubscriptionRead + ", or any role assignment inside; all for a tenant administrator)",
			Handle: h.listSubscriptions},
		{Method: "GET", Pattern: "/subscriptions/{sub}", Type: "subscriptions", Versions: v,
			Checks: seesSubscription, Handle: h.getSubscription},
		{Method: "GET", Pattern: "/subscriptions/{sub}/locations", Type: "locations", Versions: v,
			Checks: seesSubscription, Handle: h.listLocations},
		{Method: "PUT", Pattern: "/providers/Microsoft.Subscription/aliases/{alias}", Type: "Microsoft.Subscription/aliases",
			Versions: SubscriptionAliasVersions, TenantAction: tenant.ActionAliasWrite, Handle: h.putAlias},
		{Method: "GET", Pattern: "/providers/Microsoft.Subscription/aliases/{alias}", Type: "Microsoft.Subscription/aliases",
			Versions: SubscriptionAliasVersions,
			Checks:   "a principal that sees the alias's subscription (" + seesSubscription + ")", Handle: h.getAlias},
		{Method: "GET", Pattern: "/subscriptions/{sub}/resourcegroups", Type: "resourceGroups", Versions: v,
			Action: tenant.ActionGroupRead, Scope: subScope, Filter: true, Handle: h.listGroups},
		{Method: "GET", Pattern: "/subscriptions/{sub}/resourcegroups/{rg}", Type: "resourceGroups", Versions: v,
			Action: tenant.ActionGroupRead, Scope: grpScope, Handle: h.getGroup},
		{Method: "HEAD", Pattern: "/subscriptions/{sub}/resourcegroups/{rg}", Type: "resourceGroups", Versions: v,
			Action: tenant.ActionGroupRead, Scope: grpScope, Handle: h.headGroup},
		{Method: "PUT", Pattern: "/subscriptions/{sub}/resourcegroups/{rg}", Type: "resourceGroups", Versions: v,
			Action: tenant.ActionGroupWrite, Scope: grpScope, Handle: h.putGroup},
		{Method: "PATCH", Pattern: "/subscriptions/{sub}/resourcegroups/{rg}", Type: "resourceGroups", Versions: v,
			Action: tenant.ActionGroupWrite, Scope: grpScope, Handle: h.patchGroup},
		{Method: "DELETE", Pattern: "/subscriptions/{sub}/resourcegroups/{rg}", Type: "resourceGroups", Versions: v,
			Action: tenant.ActionGroupDelete, Scope: grpScope, Handle: h.deleteGroup},
	}
	for i := range routes {
		if strings.Contains(routes[i].Pattern, "{rg}") {
			routes[i].Validate = validGroup
		}
	}
	return routes
}

type subscriptionBody struct {
	ID                   string            `json:"id"`
	SubscriptionID       string            `json:"subscriptionId"`
	TenantID             string            `json:"tenantId"`
	DisplayName          string            `json:"displayName"`
	State                string            `json:"state"`
	SubscriptionPolicies map[string]string `json:"subscriptionPolicies"`
	AuthorizationSource  string            `json:"authorizationSource"`
	ManagedByTenants     []any             `json:"managedByTenants"`
}

func subscriptionJSON(sub tenant.Subscription) subscriptionBody {
	return subscriptionBody{ID: "/subscriptions/" + sub.ID, SubscriptionID: sub.ID, TenantID: sub.TenantID,
		DisplayName: sub.DisplayName, State: sub.State,
		SubscriptionPolicies: map[string]string{"locationPlacementId": "Coffer", "quotaId": "Coffer", "spendingLimit": "Off"},
		AuthorizationSource:  "RoleBased", ManagedByTenants: []any{}}
}

func (h *coreHandlers) listSubscriptions(ctx context.Context, r *Request) (*Response, error) {
	subs, err := h.c.Tenant.VisibleSubscriptions(ctx, r.Principal)
	if err != nil {
		return nil, err
	}
	var items []any
	var keys []string
	for _, sub := range subs {
		items = append(items, subscriptionJSON(sub))
		keys = append(keys, sub.ID)
	}
	return h.s.Paginate(r, items, keys)
}

// seesSubscription is the rule of the routes that read a subscription:
// tenant.VisibleSubscription's, the same as the list's.
const seesSubscription = "any principal that sees the subscription: " + tenant.ActionSubscriptionRead +
	" on it, or any role assignment inside; a tenant administrator sees all"

func (h *coreHandlers) getSubscription(ctx context.Context, r *Request) (*Response, error) {
	sub, err := h.c.Tenant.VisibleSubscription(ctx, r.Principal, r.Var("sub"))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, subscriptionJSON(sub)), nil
}

func (h *coreHandlers) listLocations(ctx context.Context, r *Request) (*Response, error) {
	if _, err := h.c.Tenant.VisibleSubscription(ctx, r.Principal, r.Var("sub")); err != nil {
		return nil, err
	}
	var items []any
	for _, reg := range h.c.Tenant.Regions {
		items = append(items, map[string]any{"id": "/subscriptions/" + r.Var("sub") + "/locations/" + reg,
			"name": reg, "displayName": reg, "regionalDisplayName": reg, "type": "Region"})
	}
	return JSON(http.StatusOK, map[string]any{"value": items}), nil
}

// aliasBody is the ARM shape of a Microsoft.Subscription alias, in a PUT
// body and an answer.
type aliasBody struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties struct {
		SubscriptionID    string `json:"subscriptionId"`
		DisplayName       string `json:"displayName,omitempty"`
		Workload          string `json:"workload,omitempty"`
		BillingScope      string `json:"billingScope,omitempty"`
		ProvisioningState string `json:"provisioningState"`
	} `json:"properties"`
}

func aliasJSON(a tenant.Alias) aliasBody {
	out := aliasBody{ID: "/providers/Microsoft.Subscription/aliases/" + a.Name, Name: a.Name, Type: tenant.KindAlias}
	out.Properties.SubscriptionID = a.SubscriptionID
	out.Properties.DisplayName = a.DisplayName
	out.Properties.Workload = a.Workload
	out.Properties.BillingScope = a.BillingScope
	out.Properties.ProvisioningState = a.ProvisioningState
	return out
}

// putAlias creates a subscription (Microsoft.Subscription aliases); the
// route lets tenant administrators only.
func (h *coreHandlers) putAlias(ctx context.Context, r *Request) (*Response, error) {
	alias := r.Var("alias")
	if err := tenant.CheckAliasName(alias); err != nil {
		return nil, err
	}
	var in struct {
		Properties *struct {
			DisplayName    string `json:"displayName"`
			Workload       string `json:"workload"`
			BillingScope   string `json:"billingScope"`
			SubscriptionID string `json:"subscriptionId"`
		} `json:"properties"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.Properties == nil {
		return nil, resource.Errorf(resource.KindBadRequest, "InvalidRequestContent", "The request content must contain 'properties'.")
	}
	p := in.Properties
	a, created, err := h.c.Tenant.PutAlias(ctx, r.Principal, alias, tenant.AliasInput{DisplayName: p.DisplayName, Workload: p.Workload,
		BillingScope: p.BillingScope, SubscriptionID: p.SubscriptionID})
	if err != nil {
		return nil, err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return JSON(status, aliasJSON(a)), nil
}

func (h *coreHandlers) getAlias(ctx context.Context, r *Request) (*Response, error) {
	a, err := h.c.Tenant.GetAlias(ctx, r.Principal, r.Var("alias"))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, aliasJSON(a)), nil
}

type groupBody struct {
	ID         string             `json:"id"`
	Name       string             `json:"name"`
	Type       string             `json:"type"`
	Location   string             `json:"location"`
	ManagedBy  string             `json:"managedBy,omitempty"`
	Tags       map[string]string  `json:"tags,omitempty"`
	Properties map[string]string  `json:"properties"`
	SystemData *tenant.SystemData `json:"systemData,omitempty"`
}

func groupJSON(g tenant.Group) groupBody {
	sd := g.SystemData
	return groupBody{ID: g.ID, Name: g.Name, Type: "Microsoft.Resources/resourceGroups", Location: g.Location,
		ManagedBy: g.ManagedBy, Tags: g.Tags, Properties: map[string]string{"provisioningState": g.ProvisioningState}, SystemData: &sd}
}

func (h *coreHandlers) groupID(r *Request) resource.ID {
	return resource.GroupID(r.Var("sub"), r.Var("rg"))
}

// preconditions is the request's If-Match and If-None-Match as a check of
// the domain's writes.
func preconditions(r *Request) tenant.Precondition {
	return func(exists bool, etag uint64) error { return CheckPreconditions(r, exists, etag) }
}

func (h *coreHandlers) getGroup(ctx context.Context, r *Request) (*Response, error) {
	g, err := h.c.Tenant.Group(ctx, h.groupID(r))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, groupJSON(g)).SetHeader("ETag", ETag(g.ETag)), nil
}

func (h *coreHandlers) headGroup(ctx context.Context, r *Request) (*Response, error) {
	if _, err := h.getGroup(ctx, r); err != nil {
		if e := resource.AsError(err); e != nil && e.Kind == resource.KindNotFound {
			return &Response{Status: http.StatusNotFound}, nil
		}
		return nil, err
	}
	return &Response{Status: http.StatusNoContent}, nil
}

// groupWire is the body of a group PUT.
type groupWire struct {
	Location  string            `json:"location"`
	Tags      map[string]string `json:"tags"`
	ManagedBy string            `json:"managedBy"`
}

func (h *coreHandlers) putGroup(ctx context.Context, r *Request) (*Response, error) {
	var in groupWire
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	g, created, err := h.c.Tenant.CreateOrUpdateGroup(ctx, h.groupID(r), tenant.PutGroupInput{Location: in.Location, Tags: in.Tags, ManagedBy: in.ManagedBy},
		r.Principal.Name(), r.Principal.TypeName(), preconditions(r))
	if err != nil {
		return nil, err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return JSON(status, groupJSON(g)).SetHeader("ETag", ETag(g.ETag)), nil
}

func (h *coreHandlers) patchGroup(ctx context.Context, r *Request) (*Response, error) {
	var in struct {
		Tags map[string]string `json:"tags"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	g, err := h.c.Tenant.UpdateGroupTags(ctx, h.groupID(r), in.Tags, r.Principal.Name(), r.Principal.TypeName(), preconditions(r))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, groupJSON(g)).SetHeader("ETag", ETag(g.ETag)), nil
}

func (h *coreHandlers) listGroups(ctx context.Context, r *Request) (*Response, error) {
	f, err := tenant.ParseGroupFilter(r.Query("$filter"))
	if err != nil {
		return nil, err
	}
	gs, err := h.c.Tenant.Groups(ctx, r.Var("sub"), f)
	if err != nil {
		return nil, err
	}
	items := make([]any, 0, len(gs))
	keys := make([]string, 0, len(gs))
	for _, g := range gs {
		items = append(items, groupJSON(g))
		keys = append(keys, strings.ToLower(g.Name))
	}
	return h.s.Paginate(r, items, keys)
}

// opGroupDelete is the kind of a resource group's deletion.
const opGroupDelete = "resourceGroups/delete"

// deleteGroupContents runs the operation of a resource group's deletion:
// DeleteGroupContents deletes what is left, so it may run again.
func (h *coreHandlers) deleteGroupContents(ctx context.Context, rec operation.Record) (any, error) {
	id, err := resource.Parse(rec.ResourceID)
	if err != nil {
		return nil, err
	}
	return nil, h.c.Tenant.DeleteGroupContents(ctx, id)
}

// deleteGroup deletes a group and everything in it as a long-running
// operation: 202 with a Location to poll, as ARM does.
func (h *coreHandlers) deleteGroup(ctx context.Context, r *Request) (*Response, error) {
	id := h.groupID(r)
	g, existed, err := h.c.Tenant.StartDeleteGroup(ctx, id, preconditions(r))
	if err != nil {
		return nil, err
	}
	if !existed {
		return &Response{Status: http.StatusNoContent}, nil // ARM: deleting a missing group is 204
	}
	op, err := h.s.Operations.Start(ctx, operation.Record{ResourceID: g.ID, Kind: opGroupDelete,
		CreatedBy: r.Principal.ID, ReadAction: tenant.ActionGroupRead}, nil)
	if err != nil {
		return nil, err
	}
	q := url.Values{"api-version": {r.APIVersion}}
	resp := &Response{Status: http.StatusAccepted}
	resp.SetHeader("Location", r.URL(fmt.Sprintf("/subscriptions/%s/operationresults/%s", r.Var("sub"), op.ID), q))
	resp.SetHeader("Retry-After", fmt.Sprint(RetryAfter))
	return resp, nil
}
