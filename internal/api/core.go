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
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/tenant"
)

// Core holds the services behind the core routes.
type Core struct {
	Store    store.Store
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
		Route{Method: "GET", Pattern: "/metrics", Anonymous: true, Handle: h.metrics},
	)
	s.Handle(h.identityRoutes()...)
	s.Handle(h.resourceRoutes()...)
	s.Handle(h.authorizationRoutes()...)
	s.Handle(s.operationRoutes(OperationVersions)...)
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
	resp := &Response{Status: http.StatusOK, Body: []byte(b.String())}
	resp.SetHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	return resp, nil
}

// principalType is how systemData names the kind of a principal.
func principalType(p identity.Principal) string {
	switch p.Kind {
	case identity.User:
		return "User"
	case identity.ManagedIdentity:
		return "ManagedIdentity"
	}
	return "Application"
}

func principalName(p identity.Principal) string {
	if p.DisplayName != "" {
		return p.DisplayName
	}
	return p.ID
}

// --- subscriptions and groups ---

func (h *coreHandlers) resourceRoutes() []Route {
	v := ResourcesVersions
	subScope := func(r *Request) string { return "/subscriptions/" + r.Var("sub") }
	grpScope := func(r *Request) string { return "/subscriptions/" + r.Var("sub") + "/resourceGroups/" + r.Var("rg") }
	validGroup := func(r *Request) error { return resource.GroupNameRule.Check("InvalidResourceGroup", r.Var("rg")) }
	routes := []Route{
		{Method: "GET", Pattern: "/subscriptions", Type: "subscriptions", Versions: v, Handle: h.listSubscriptions},
		{Method: "GET", Pattern: "/subscriptions/{sub}", Type: "subscriptions", Versions: v,
			Action: "Microsoft.Resources/subscriptions/read", Scope: subScope, Handle: h.getSubscription},
		{Method: "GET", Pattern: "/subscriptions/{sub}/locations", Type: "locations", Versions: v,
			Action: "Microsoft.Resources/subscriptions/read", Scope: subScope, Handle: h.listLocations},
		{Method: "PUT", Pattern: "/providers/Microsoft.Subscription/aliases/{alias}", Type: "Microsoft.Subscription/aliases",
			Versions: SubscriptionAliasVersions, Handle: h.putAlias},
		{Method: "GET", Pattern: "/providers/Microsoft.Subscription/aliases/{alias}", Type: "Microsoft.Subscription/aliases",
			Versions: SubscriptionAliasVersions, Handle: h.getAlias},
		{Method: "GET", Pattern: "/subscriptions/{sub}/resourcegroups", Type: "resourceGroups", Versions: v,
			Action: "Microsoft.Resources/subscriptions/resourceGroups/read", Scope: subScope, Filter: true, Handle: h.listGroups},
		{Method: "GET", Pattern: "/subscriptions/{sub}/resourcegroups/{rg}", Type: "resourceGroups", Versions: v,
			Action: "Microsoft.Resources/subscriptions/resourceGroups/read", Scope: grpScope, Handle: h.getGroup},
		{Method: "HEAD", Pattern: "/subscriptions/{sub}/resourcegroups/{rg}", Type: "resourceGroups", Versions: v,
			Action: "Microsoft.Resources/subscriptions/resourceGroups/read", Scope: grpScope, Handle: h.headGroup},
		{Method: "PUT", Pattern: "/subscriptions/{sub}/resourcegroups/{rg}", Type: "resourceGroups", Versions: v,
			Action: "Microsoft.Resources/subscriptions/resourceGroups/write", Scope: grpScope, Handle: h.putGroup},
		{Method: "PATCH", Pattern: "/subscriptions/{sub}/resourcegroups/{rg}", Type: "resourceGroups", Versions: v,
			Action: "Microsoft.Resources/subscriptions/resourceGroups/write", Scope: grpScope, Handle: h.patchGroup},
		{Method: "DELETE", Pattern: "/subscriptions/{sub}/resourcegroups/{rg}", Type: "resourceGroups", Versions: v,
			Action: "Microsoft.Resources/subscriptions/resourceGroups/delete", Scope: grpScope, Handle: h.deleteGroup},
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
	var subs []tenant.Subscription
	if err := h.c.Store.View(ctx, func(tx store.Tx) error {
		var err error
		subs, err = h.c.Tenant.ListSubscriptions(ctx, tx)
		return err
	}); err != nil {
		return nil, err
	}
	pol, err := h.c.Authz.Policy(ctx)
	if err != nil {
		return nil, err
	}
	var items []any
	var keys []string
	for _, sub := range subs {
		scope := "/subscriptions/" + sub.ID
		if r.Principal.TenantAdmin || pol.Allowed(r.Principal.ID, "Microsoft.Resources/subscriptions/read", scope) {
			items = append(items, subscriptionJSON(sub))
			keys = append(keys, sub.ID)
		}
	}
	return h.s.Paginate(r, items, keys)
}

func (h *coreHandlers) getSubscription(ctx context.Context, r *Request) (*Response, error) {
	var sub tenant.Subscription
	err := h.c.Store.View(ctx, func(tx store.Tx) error {
		var err error
		sub, err = h.c.Tenant.GetSubscription(ctx, tx, r.Var("sub"))
		return err
	})
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, subscriptionJSON(sub)), nil
}

func (h *coreHandlers) listLocations(ctx context.Context, r *Request) (*Response, error) {
	if _, err := h.getSubscription(ctx, r); err != nil {
		return nil, err
	}
	var items []any
	for _, reg := range h.c.Tenant.Regions {
		items = append(items, map[string]any{"id": "/subscriptions/" + r.Var("sub") + "/locations/" + reg,
			"name": reg, "displayName": reg, "regionalDisplayName": reg, "type": "Region"})
	}
	return JSON(http.StatusOK, map[string]any{"value": items}), nil
}

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

// putAlias creates a subscription (Microsoft.Subscription aliases). Only a
// tenant administrator may; the creator becomes Owner of the new
// subscription, as in Azure.
func (h *coreHandlers) putAlias(ctx context.Context, r *Request) (*Response, error) {
	if !r.Principal.TenantAdmin {
		return nil, AuthorizationFailed(r.Principal, "Microsoft.Subscription/aliases/write", "/")
	}
	alias := r.Var("alias")
	if err := resource.ChildNameRule.Check("InvalidAliasName", alias); err != nil {
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
	if err := resource.CheckLine("properties.displayName", in.Properties.DisplayName); err != nil {
		return nil, err
	}
	if in.Properties.Workload != "" && !strings.EqualFold(in.Properties.Workload, "Production") && !strings.EqualFold(in.Properties.Workload, "DevTest") {
		return nil, resource.Errorf(resource.KindBadRequest, "InvalidWorkload", "The workload '%s' is invalid. Allowed values are 'Production' and 'DevTest'.", in.Properties.Workload)
	}
	var out aliasBody
	status := http.StatusOK
	err := h.c.Store.Update(ctx, func(tx store.Tx) error {
		status = http.StatusOK // a re-run (store contract) decides afresh
		akey := "/providers/microsoft.subscription/aliases/" + strings.ToLower(alias)
		if o, err := tx.Get(ctx, tenant.KindAlias, akey); err == nil {
			return decodeStored(o.Data, &out)
		}
		subID := in.Properties.SubscriptionID
		if subID == "" {
			subID = identity.NewGUID()
		} else if !identity.IsGUID(subID) {
			return resource.Errorf(resource.KindBadRequest, "InvalidSubscriptionId", "The subscription ID '%s' must be a GUID.", subID)
		}
		name := in.Properties.DisplayName
		if name == "" {
			name = alias
		}
		if _, err := h.c.Tenant.CreateSubscription(ctx, tx, subID, name, r.Principal.ID); err != nil {
			return err
		}
		if _, err := h.c.Authz.Assign(ctx, tx, r.Principal.ID, r.Principal.Kind.PrincipalType(), rbac.RoleOwner, "/subscriptions/"+strings.ToLower(subID), r.Principal.ID); err != nil {
			return err
		}
		out = aliasBody{ID: "/providers/Microsoft.Subscription/aliases/" + alias, Name: alias, Type: "Microsoft.Subscription/aliases"}
		out.Properties.SubscriptionID = strings.ToLower(subID)
		out.Properties.DisplayName = name
		out.Properties.Workload = in.Properties.Workload
		out.Properties.BillingScope = in.Properties.BillingScope
		out.Properties.ProvisioningState = "Succeeded"
		status = http.StatusCreated
		return putStored(ctx, tx, tenant.KindAlias, akey, out)
	})
	if err != nil {
		return nil, err
	}
	return JSON(status, out), nil
}

func (h *coreHandlers) getAlias(ctx context.Context, r *Request) (*Response, error) {
	var out aliasBody
	err := h.c.Store.View(ctx, func(tx store.Tx) error {
		o, err := tx.Get(ctx, tenant.KindAlias, "/providers/microsoft.subscription/aliases/"+strings.ToLower(r.Var("alias")))
		if err != nil {
			return resource.Errorf(resource.KindNotFound, "ResourceNotFound", "The subscription alias '%s' was not found.", r.Var("alias"))
		}
		return decodeStored(o.Data, &out)
	})
	if err != nil {
		return nil, err
	}
	if !r.Principal.TenantAdmin {
		if err := h.s.Authorize(ctx, r, "Microsoft.Resources/subscriptions/read", "/subscriptions/"+out.Properties.SubscriptionID); err != nil {
			return nil, err
		}
	}
	return JSON(http.StatusOK, out), nil
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

func (h *coreHandlers) getGroup(ctx context.Context, r *Request) (*Response, error) {
	var g tenant.Group
	err := h.c.Store.View(ctx, func(tx store.Tx) error {
		var err error
		g, err = h.c.Tenant.GetGroup(ctx, tx, h.groupID(r))
		return err
	})
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

func (h *coreHandlers) putGroup(ctx context.Context, r *Request) (*Response, error) {
	var in tenant.PutGroupInput
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	var g tenant.Group
	var created bool
	err := h.c.Store.Update(ctx, func(tx store.Tx) error {
		old, gerr := h.c.Tenant.GetGroup(ctx, tx, h.groupID(r))
		if err := CheckPreconditions(r, gerr == nil, old.ETag); err != nil {
			return err
		}
		if gerr == nil && old.ProvisioningState == "Deleting" {
			return resource.Errorf(resource.KindConflict, "ResourceGroupBeingDeleted",
				"The resource group '%s' is in deprovisioning state and cannot perform this operation.", r.Var("rg"))
		}
		var err error
		g, created, err = h.c.Tenant.PutGroup(ctx, tx, h.groupID(r), in, principalName(r.Principal), principalType(r.Principal))
		return err
	})
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
	var g tenant.Group
	err := h.c.Store.Update(ctx, func(tx store.Tx) error {
		old, gerr := h.c.Tenant.GetGroup(ctx, tx, h.groupID(r))
		if gerr != nil {
			return gerr
		}
		if err := CheckPreconditions(r, true, old.ETag); err != nil {
			return err
		}
		var err error
		g, err = h.c.Tenant.PatchGroup(ctx, tx, h.groupID(r), in.Tags, principalName(r.Principal), principalType(r.Principal))
		return err
	})
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
	var gs []tenant.Group
	err = h.c.Store.View(ctx, func(tx store.Tx) error {
		var err error
		gs, err = h.c.Tenant.ListGroups(ctx, tx, r.Var("sub"), "", 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	items := make([]any, 0, len(gs))
	keys := make([]string, 0, len(gs))
	for _, g := range gs {
		if !f.Match(g) {
			continue
		}
		items = append(items, groupJSON(g))
		keys = append(keys, strings.ToLower(g.Name))
	}
	return h.s.Paginate(r, items, keys)
}

// deleteGroup deletes a group and everything in it as a long-running
// operation: 202 with a Location to poll, as ARM does.
func (h *coreHandlers) deleteGroup(ctx context.Context, r *Request) (*Response, error) {
	id := h.groupID(r)
	var g tenant.Group
	err := h.c.Store.Update(ctx, func(tx store.Tx) error {
		old, err := h.c.Tenant.GetGroup(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := CheckPreconditions(r, true, old.ETag); err != nil {
			return err
		}
		g, err = h.c.Tenant.MarkGroupDeleting(ctx, tx, id)
		return err
	})
	if err != nil {
		if e := resource.AsError(err); e != nil && e.Code == "ResourceGroupNotFound" {
			return &Response{Status: http.StatusNoContent}, nil // ARM: deleting a missing group is 204
		}
		return nil, err
	}
	op, err := h.s.Operations.Start(ctx, operation.Record{ResourceID: g.ID, Kind: "resourceGroups/delete",
		CreatedBy: r.Principal.ID, ReadAction: "Microsoft.Resources/subscriptions/resourceGroups/read"},
		func(ctx context.Context) (any, error) { return nil, h.c.Tenant.DeleteGroupContents(ctx, id) })
	if err != nil {
		return nil, err
	}
	q := url.Values{"api-version": {r.APIVersion}}
	resp := &Response{Status: http.StatusAccepted}
	resp.SetHeader("Location", r.URL(fmt.Sprintf("/subscriptions/%s/operationresults/%s", r.Var("sub"), op.ID), q))
	resp.SetHeader("Retry-After", fmt.Sprint(RetryAfter))
	return resp, nil
}
