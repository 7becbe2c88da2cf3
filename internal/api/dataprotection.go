package api

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/operation"
	"coffer/internal/resource"
)

// DataProtectionVersions: Microsoft.DataProtection. The stable versions of
// the service (2021-01-01 … 2026-03-01), including 2024-04-01, which the
// armdataprotection/v3 SDK sends, and 2023-05-01, which the Azure CLI's
// adhoc-backup command pins. Disk shapes are the same in all of them.
var DataProtectionVersions = []string{
	"2021-01-01", "2021-07-01", "2022-01-01", "2022-02-01-preview", "2022-03-01", "2022-03-31-preview", "2022-04-01",
	"2022-05-01", "2022-09-01-preview", "2022-10-01-preview", "2022-11-01-preview", "2022-12-01", "2023-01-01",
	"2023-04-01-preview", "2023-05-01", "2023-06-01-preview", "2023-08-01-preview", "2023-11-01", "2023-12-01",
	"2024-02-01-preview", "2024-03-01", "2024-04-01", "2025-01-01", "2025-02-01", "2025-07-01", "2025-09-01",
	"2026-03-01",
}

func init() { AddOperationVersions(DataProtectionVersions) }

const dpNS = "Microsoft.DataProtection"

// RegisterDataProtection adds the Microsoft.DataProtection routes: backup
// vaults, backup policies, backup instances and their actions (validate,
// backup, restore, stop, suspend, resume), recovery points and jobs.
func (s *Server) RegisterDataProtection(svc *dataprotection.Service) {
	h := &dpHandlers{s: s, svc: svc}
	s.Handle(h.routes()...)
	s.Operations.Register(opInstancePut, h.configureInstance)
	s.Operations.Register(opInstanceDelete, h.instanceDeleted)
}

// The kinds of Microsoft.DataProtection's durable operations.
const (
	opInstancePut    = "dataprotection/backupInstances/put"
	opInstanceDelete = "dataprotection/backupInstances/delete"
)

// configureInstance runs the operation of a backup instance PUT: it
// configures the instance (idempotent: ConfigureInstance ends as soon as the
// instance is configured, as it does after a restart).
func (h *dpHandlers) configureInstance(ctx context.Context, rec operation.Record) (any, error) {
	id, err := resource.Parse(rec.ResourceID)
	if err != nil {
		return nil, err
	}
	_, err = h.svc.ConfigureInstance(ctx, id)
	return nil, err
}

// deleteInput is the input of a backup instance deletion's operation.
type deleteInput struct {
	JobID string `json:"jobId"`
}

// jobPoll is how long the operation of an instance's deletion waits before
// it looks at its job again.
const jobPoll = time.Second

// instanceDeleted runs the operation of a backup instance DELETE: it ends
// with the job that deletes the instance (its own task), looking at the job
// without holding a worker meanwhile (job.Later). It only reads, so it may
// run any number of times.
func (h *dpHandlers) instanceDeleted(ctx context.Context, rec operation.Record) (any, error) {
	var in deleteInput
	if err := json.Unmarshal(rec.Input, &in); err != nil {
		return nil, fmt.Errorf("decode operation %s: %w", rec.ID, err)
	}
	ended, err := h.svc.JobOutcome(ctx, in.JobID)
	if err == nil && !ended {
		return nil, &job.Later{After: jobPoll}
	}
	return nil, err
}

type dpHandlers struct {
	s   *Server
	svc *dataprotection.Service
}

const (
	dpGroup = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataProtection"
	dpVault = dpGroup + "/backupVaults/{vault}"
	dpBI    = dpVault + "/backupInstances/{bi}"
)

func (h *dpHandlers) routes() []Route {
	v := DataProtectionVersions
	vaultScope := func(r *Request) string { return h.vaultID(r).String() }
	biScope := func(r *Request) string { return h.biID(r).String() }
	groupScope := func(r *Request) string { return resource.GroupID(r.Var("sub"), r.Var("rg")).String() }
	subScope := func(r *Request) string { return "/subscriptions/" + r.Var("sub") }
	validate := func(r *Request) error {
		if err := resource.GroupNameRule.Check("InvalidResourceGroup", r.Var("rg")); err != nil {
			return err
		}
		if n := r.Var("vault"); n != "" {
			return resource.VaultNameRule.Check("InvalidResourceName", n)
		}
		return nil
	}
	const (
		vaults   = "/subscriptions/{sub}/providers/Microsoft.DataProtection/backupVaults"
		policies = dpVault + "/backupPolicies"
		bis      = dpVault + "/backupInstances"
	)
	protection := func(c dataprotection.ProtectionChange) Route {
		return Route{Method: "POST", Pattern: dpBI + "/" + string(c), Action: c.Action(), Scope: biScope, Handle: h.protection(c)}
	}
	routes := []Route{
		{Method: "PUT", Pattern: dpVault, Action: dataprotection.ActionVaultWrite, Handle: h.putVault},
		{Method: "GET", Pattern: dpVault, Action: dataprotection.ActionVaultRead, Handle: h.getVault},
		{Method: "PATCH", Pattern: dpVault, Action: dataprotection.ActionVaultWrite, Handle: h.patchVault},
		{Method: "DELETE", Pattern: dpVault, Action: dataprotection.ActionVaultDelete, Handle: h.deleteVault},
		{Method: "GET", Pattern: dpGroup + "/backupVaults", Action: dataprotection.ActionVaultRead, Scope: groupScope, Handle: h.listVaults},
		{Method: "GET", Pattern: vaults, Action: dataprotection.ActionVaultRead, Scope: subScope, Handle: h.listVaults},
		{Method: "POST", Pattern: dpGroup + "/locations/{location}/checkNameAvailability", Action: dataprotection.ActionCheckName, Scope: groupScope, Handle: h.checkName},

		{Method: "PUT", Pattern: policies + "/{policy}", Action: dataprotection.ActionPolicyWrite, Handle: h.putPolicy},
		{Method: "GET", Pattern: policies + "/{policy}", Action: dataprotection.ActionPolicyRead, Handle: h.getPolicy},
		{Method: "DELETE", Pattern: policies + "/{policy}", Action: dataprotection.ActionPolicyDelete, Handle: h.deletePolicy},
		{Method: "GET", Pattern: policies, Action: dataprotection.ActionPolicyRead, Scope: vaultScope, Handle: h.listPolicies},

		{Method: "POST", Pattern: dpVault + "/validateForBackup", Action: dataprotection.ActionValidateForBackup, Scope: vaultScope, Handle: h.validateForBackup},
		{Method: "PUT", Pattern: dpBI, Action: dataprotection.ActionInstanceWrite, Handle: h.putInstance},
		{Method: "GET", Pattern: dpBI, Action: dataprotection.ActionInstanceRead, Handle: h.getInstance},
		{Method: "DELETE", Pattern: dpBI, Action: dataprotection.ActionInstanceDelete, Handle: h.deleteInstance},
		{Method: "GET", Pattern: bis, Action: dataprotection.ActionInstanceRead, Scope: vaultScope, Handle: h.listInstances},
		{Method: "POST", Pattern: dpBI + "/backup", Action: dataprotection.ActionInstanceBackup, Scope: biScope, Stores: true, Handle: h.adhocBackup},
		{Method: "POST", Pattern: dpBI + "/validateRestore", Action: dataprotection.ActionInstanceValidateRestore, Scope: biScope, Handle: h.validateRestore},
		{Method: "POST", Pattern: dpBI + "/restore", Action: dataprotection.ActionInstanceRestore, Scope: biScope, Stores: true, Handle: h.restore},
		protection(dataprotection.StopProtection),
		protection(dataprotection.SuspendBackups),
		protection(dataprotection.ResumeProtection),
		protection(dataprotection.ResumeBackups),
		{Method: "POST", Pattern: dpBI + "/sync", Action: dataprotection.ActionInstanceWrite, Scope: biScope, Handle: h.syncInstance},
		{Method: "GET", Pattern: dpBI + "/recoveryPoints", Action: dataprotection.ActionRecoveryPointRead, Scope: biScope, Filter: true, Handle: h.listRecoveryPoints},
		{Method: "GET", Pattern: dpBI + "/recoveryPoints/{rp}", Action: dataprotection.ActionRecoveryPointRead, Scope: biScope, Handle: h.getRecoveryPoint},
		{Method: "POST", Pattern: dpBI + "/recoveryPoints/{rp}/verify", Action: dataprotection.ActionRecoveryPointVerify, Scope: biScope, Handle: h.verifyRecoveryPoint},

		{Method: "GET", Pattern: dpVault + "/backupJobs", Action: dataprotection.ActionJobRead, Scope: vaultScope, Filter: true, Handle: h.listJobs},
		{Method: "GET", Pattern: dpVault + "/backupJobs/{job}", Action: dataprotection.ActionJobRead, Scope: vaultScope, Handle: h.getJob},
		{Method: "POST", Pattern: dpVault + "/backupJobs/{job}/cancel", Action: dataprotection.ActionJobRead, Scope: vaultScope, Handle: h.cancelJob},
	}
	for i := range routes {
		routes[i].Versions = v
		if strings.Contains(routes[i].Pattern, "{rg}") {
			routes[i].Validate = validate
		}
		routes[i].Type = dpType(routes[i].Pattern)
	}
	return routes
}

func dpType(pattern string) string {
	switch {
	case strings.Contains(pattern, "/backupJobs"):
		return job.ResourceType
	case strings.Contains(pattern, "/recoveryPoints"):
		return dataprotection.RecoveryPointType
	case strings.Contains(pattern, "/backupInstances") || strings.HasSuffix(pattern, "/validateForBackup"):
		return dataprotection.InstanceType
	case strings.Contains(pattern, "/backupPolicies"):
		return dataprotection.PolicyResourceType
	case strings.Contains(pattern, "/locations/"):
		return "Microsoft.DataProtection/locations"
	}
	return dataprotection.VaultResourceType
}

func (h *dpHandlers) vaultID(r *Request) resource.ID {
	return dataprotection.VaultID(r.Var("sub"), r.Var("rg"), r.Var("vault"))
}

func (h *dpHandlers) biID(r *Request) resource.ID {
	return dataprotection.InstanceID(h.vaultID(r), r.Var("bi"))
}

func caller(r *Request) dataprotection.Caller {
	return dataprotection.Caller{Name: r.Principal.Name(), Type: r.Principal.TypeName()}
}

// vaultLocation returns the location of the vault, for the operation URLs.
func (h *dpHandlers) vaultLocation(ctx context.Context, r *Request) string {
	v, err := h.svc.GetVault(ctx, h.vaultID(r))
	if err != nil || v.Location == "" {
		return "local"
	}
	return v.Location
}

const dpReadAction = dataprotection.ActionOperationStatusRead

// completed records an operation that finished synchronously and answers
// 202 with its polling headers. info, when non-empty, is the job ID put in
// the status properties and at the Location URL.
func (h *dpHandlers) completed(ctx context.Context, r *Request, status int, body any, resourceID, kind, jobID string, result any, err error) (*Response, error) {
	rec := operation.Record{ResourceID: resourceID, Kind: "dataprotection/" + kind, Location: h.vaultLocation(ctx, r),
		CreatedBy: r.Principal.ID, ReadAction: dpReadAction}
	if jobID != "" {
		info, _ := json.Marshal(dataprotection.JobInfo{JobID: jobID, ObjectType: dataprotection.ObjectTypeJobInfo})
		rec.Properties = info
		if result == nil && err == nil {
			result = json.RawMessage(info)
		}
	}
	op, oerr := h.s.Operations.Complete(ctx, rec, result, err)
	if oerr != nil {
		return nil, oerr
	}
	return r.Async(status, body, dpNS, r.Var("sub"), rec.Location, op), nil
}

// started starts a durable operation of kind with input in.
func (h *dpHandlers) started(ctx context.Context, r *Request, status int, body any, resourceID, kind string, in any) (*Response, error) {
	rec := operation.Record{ResourceID: resourceID, Kind: kind, Location: h.vaultLocation(ctx, r),
		CreatedBy: r.Principal.ID, ReadAction: dpReadAction}
	op, err := h.s.Operations.Start(ctx, rec, in)
	if err != nil {
		return nil, err
	}
	return r.Async(status, body, dpNS, r.Var("sub"), rec.Location, op), nil
}

// --- vaults ---

func (h *dpHandlers) putVault(ctx context.Context, r *Request) (*Response, error) {
	in, err := decodeVault(r.Body)
	if err != nil {
		return nil, err
	}
	v, created, err := h.svc.PutVault(ctx, caller(r), h.vaultID(r), in)
	if err != nil {
		return nil, err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return h.completed(ctx, r, status, v, v.ID, "vaults/put", "", nil, nil)
}

func (h *dpHandlers) getVault(ctx context.Context, r *Request) (*Response, error) {
	v, err := h.svc.GetVault(ctx, h.vaultID(r))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, v), nil
}

func (h *dpHandlers) patchVault(ctx context.Context, r *Request) (*Response, error) {
	in, err := decodeVaultPatch(r.Body)
	if err != nil {
		return nil, err
	}
	v, err := h.svc.PatchVault(ctx, caller(r), h.vaultID(r), in)
	if err != nil {
		return nil, err
	}
	return h.completed(ctx, r, http.StatusOK, v, v.ID, "vaults/patch", "", nil, nil)
}

func (h *dpHandlers) deleteVault(ctx context.Context, r *Request) (*Response, error) {
	loc := h.vaultLocation(ctx, r)
	existed, err := h.svc.DeleteVault(ctx, h.vaultID(r))
	if err != nil {
		return nil, err
	}
	if !existed {
		return &Response{Status: http.StatusNoContent}, nil
	}
	rec := operation.Record{ResourceID: h.vaultID(r).String(), Kind: "dataprotection/vaults/delete", Location: loc,
		CreatedBy: r.Principal.ID, ReadAction: dpReadAction}
	op, err := h.s.Operations.Complete(ctx, rec, nil, nil)
	if err != nil {
		return nil, err
	}
	return r.Async(http.StatusAccepted, nil, dpNS, r.Var("sub"), loc, op), nil
}

func (h *dpHandlers) listVaults(ctx context.Context, r *Request) (*Response, error) {
	scope := resource.SubscriptionID(r.Var("sub"))
	if r.Var("rg") != "" {
		scope = resource.GroupID(r.Var("sub"), r.Var("rg"))
	}
	vs, err := h.svc.ListVaults(ctx, scope)
	if err != nil {
		return nil, err
	}
	items := make([]any, 0, len(vs))
	keys := make([]string, 0, len(vs))
	for _, v := range vs {
		items = append(items, v)
		keys = append(keys, strings.ToLower(v.ID))
	}
	return h.s.Paginate(r, items, keys)
}

func (h *dpHandlers) checkName(ctx context.Context, r *Request) (*Response, error) {
	var in struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	a, err := h.svc.CheckVaultName(ctx, resource.GroupID(r.Var("sub"), r.Var("rg")), in.Name)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"nameAvailable": true}
	if !a.Available {
		out = map[string]any{"nameAvailable": false, "reason": a.Reason, "message": a.Message}
	}
	return JSON(http.StatusOK, out), nil
}

// --- policies ---

func (h *dpHandlers) policyID(r *Request) resource.ID {
	return h.vaultID(r).Child("backupPolicies", r.Var("policy"))
}

func (h *dpHandlers) putPolicy(ctx context.Context, r *Request) (*Response, error) {
	if err := dataprotection.CheckChildName(r.Var("policy")); err != nil {
		return nil, err
	}
	pol, err := decodePolicy(r.Body)
	if err != nil {
		return nil, err
	}
	p, _, err := h.svc.PutPolicy(ctx, h.policyID(r), pol)
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, p), nil
}

func (h *dpHandlers) getPolicy(ctx context.Context, r *Request) (*Response, error) {
	p, err := h.svc.GetPolicy(ctx, h.policyID(r))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, p), nil
}

func (h *dpHandlers) deletePolicy(ctx context.Context, r *Request) (*Response, error) {
	existed, err := h.svc.DeletePolicy(ctx, h.policyID(r))
	if err != nil {
		return nil, err
	}
	if !existed {
		return &Response{Status: http.StatusNoContent}, nil
	}
	return JSON(http.StatusOK, map[string]any{}), nil
}

func (h *dpHandlers) listPolicies(ctx context.Context, r *Request) (*Response, error) {
	ps, err := h.svc.ListPolicies(ctx, h.vaultID(r))
	if err != nil {
		return nil, err
	}
	items := make([]any, 0, len(ps))
	keys := make([]string, 0, len(ps))
	for _, p := range ps {
		items = append(items, p)
		keys = append(keys, strings.ToLower(p.Name))
	}
	return h.s.Paginate(r, items, keys)
}

// --- backup instances ---

func (h *dpHandlers) validateForBackup(ctx context.Context, r *Request) (*Response, error) {
	in, err := decodeValidateForBackup(r.Body)
	if err != nil {
		return nil, err
	}
	jobID, verr := h.svc.ValidateForBackup(ctx, h.vaultID(r), in)
	if verr != nil && !dataprotection.IsPermissionError(verr) {
		return nil, verr
	}
	return h.completed(ctx, r, http.StatusAccepted, nil, h.vaultID(r).String(), "validateForBackup", jobID, nil, verr)
}

func (h *dpHandlers) putInstance(ctx context.Context, r *Request) (*Response, error) {
	id := h.biID(r)
	if err := dataprotection.CheckChildName(id.Name()); err != nil {
		return nil, err
	}
	in, err := decodeInstance(r.Body)
	if err != nil {
		return nil, err
	}
	bi, created, err := h.svc.PutInstance(ctx, caller(r), id, in)
	if err != nil {
		return nil, err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return h.started(ctx, r, status, bi, id.String(), opInstancePut, nil)
}

func (h *dpHandlers) getInstance(ctx context.Context, r *Request) (*Response, error) {
	bi, err := h.svc.GetInstance(ctx, h.biID(r))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, bi), nil
}

func (h *dpHandlers) listInstances(ctx context.Context, r *Request) (*Response, error) {
	bis, err := h.svc.ListInstances(ctx, h.vaultID(r))
	if err != nil {
		return nil, err
	}
	items := make([]any, 0, len(bis))
	keys := make([]string, 0, len(bis))
	for _, b := range bis {
		items = append(items, b)
		keys = append(keys, strings.ToLower(b.Name))
	}
	return h.s.Paginate(r, items, keys)
}

func (h *dpHandlers) deleteInstance(ctx context.Context, r *Request) (*Response, error) {
	id := h.biID(r)
	jobID, err := h.svc.StartDeleteInstance(ctx, id, dataprotection.ChangeNote{By: caller(r).Name})
	if err != nil {
		return nil, err
	}
	if jobID == "" {
		return &Response{Status: http.StatusNoContent}, nil
	}
	return h.started(ctx, r, http.StatusAccepted, nil, id.String(), opInstanceDelete, deleteInput{JobID: jobID})
}

func (h *dpHandlers) adhocBackup(ctx context.Context, r *Request) (*Response, error) {
	id := h.biID(r)
	in, err := decodeBackupRequest(r.Body)
	if err != nil {
		return nil, err
	}
	jobID, err := h.svc.AdhocBackup(ctx, id, in)
	if err != nil {
		return nil, err
	}
	return h.completed(ctx, r, http.StatusAccepted, nil, id.String(), "backup", jobID, nil, nil)
}

// asyncUserError reports whether err should fail the operation rather than
// the request: a refused validation (400) is reported through the
// operation status, as Azure does for restores.
func asyncUserError(err error) bool {
	e := resource.AsError(err)
	return e != nil && e.Kind == resource.KindBadRequest && e.Code != "InvalidRequestContent"
}

func (h *dpHandlers) validateRestore(ctx context.Context, r *Request) (*Response, error) {
	id := h.biID(r)
	in, verr := decodeValidateRestore(r.Body)
	jobID := ""
	if verr == nil {
		jobID, verr = h.svc.ValidateRestore(ctx, id, in)
	}
	if verr != nil && !asyncUserError(verr) {
		return nil, verr
	}
	return h.completed(ctx, r, http.StatusAccepted, nil, id.String(), "validateRestore", jobID, nil, verr)
}

func (h *dpHandlers) restore(ctx context.Context, r *Request) (*Response, error) {
	id := h.biID(r)
	in, err := decodeRestore(r.Body)
	if err != nil {
		return nil, err
	}
	jobID, err := h.svc.Restore(ctx, id, in)
	if err != nil && !asyncUserError(err) {
		return nil, err
	}
	return h.completed(ctx, r, http.StatusAccepted, nil, id.String(), "restore", jobID, nil, err)
}

func (h *dpHandlers) protection(c dataprotection.ProtectionChange) func(ctx context.Context, r *Request) (*Response, error) {
	return func(ctx context.Context, r *Request) (*Response, error) {
		id := h.biID(r)
		if _, err := h.svc.SetProtection(ctx, id, c, dataprotection.ChangeNote{By: caller(r).Name}); err != nil {
			return nil, err
		}
		return h.completed(ctx, r, http.StatusAccepted, nil, id.String(), string(c), "", nil, nil)
	}
}

func (h *dpHandlers) syncInstance(ctx context.Context, r *Request) (*Response, error) {
	id := h.biID(r)
	if _, err := h.svc.GetInstance(ctx, id); err != nil {
		return nil, err
	}
	return h.completed(ctx, r, http.StatusAccepted, nil, id.String(), "sync", "", nil, nil)
}

// --- recovery points ---

func (h *dpHandlers) listRecoveryPoints(ctx context.Context, r *Request) (*Response, error) {
	f, err := dataprotection.ParseRPFilter(r.Query("$filter"))
	if err != nil {
		return nil, err
	}
	rps, err := h.svc.ListRecoveryPoints(ctx, h.biID(r), f)
	if err != nil {
		return nil, err
	}
	items := make([]any, 0, len(rps))
	keys := make([]string, 0, len(rps))
	for _, rp := range rps {
		items = append(items, rp)
		keys = append(keys, rp.Properties.RecoveryPointTime+"_"+rp.Name)
	}
	return h.s.Paginate(r, items, keys)
}

func (h *dpHandlers) getRecoveryPoint(ctx context.Context, r *Request) (*Response, error) {
	rp, err := h.svc.GetRecoveryPoint(ctx, h.biID(r), r.Var("rp"))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, rp), nil
}

// --- jobs ---

func (h *dpHandlers) listJobs(ctx context.Context, r *Request) (*Response, error) {
	f, err := job.ParseFilter(r.Query("$filter"))
	if err != nil {
		return nil, err
	}
	js, err := h.svc.ListJobs(ctx, h.vaultID(r), f)
	if err != nil {
		return nil, err
	}
	items := make([]any, 0, len(js))
	keys := make([]string, 0, len(js))
	for _, j := range js {
		items = append(items, j)
		st, _ := time.Parse(time.RFC3339Nano, j.Properties.StartTime)
		keys = append(keys, fmt.Sprintf("%020d_%s", math.MaxInt64-st.UnixNano(), j.Name))
	}
	return h.s.Paginate(r, items, keys)
}

// verifyRecoveryPoint is Coffer's extension POST BI/recoveryPoints/{rp}/verify:
// it reads back every chunk of the point and answers 200 with the point,
// its properties.cofferVerification saying the outcome.
func (h *dpHandlers) verifyRecoveryPoint(ctx context.Context, r *Request) (*Response, error) {
	rp, err := h.svc.VerifyRecoveryPoint(ctx, h.biID(r), r.Var("rp"))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, rp), nil
}

// cancelJob is Coffer's extension POST V/backupJobs/{job}/cancel (Azure's
// jobs API has none): past the route's read of the vault, the caller needs
// what starting the job needs on its backup instance (CancelAction at
// CancelScope). It answers 200 with the job: Cancelled at once when it
// waited for a worker, still InProgress with its CancelReason while its
// worker stops.
func (h *dpHandlers) cancelJob(ctx context.Context, r *Request) (*Response, error) {
	vid := h.vaultID(r)
	j, err := h.svc.GetJob(ctx, vid, r.Var("job"))
	if err != nil {
		return nil, err
	}
	if err := h.s.Authorize(ctx, r, dataprotection.CancelAction(j.Properties.Operation), dataprotection.CancelScope(vid.String(), j)); err != nil {
		return nil, err
	}
	out, err := h.svc.CancelJob(ctx, vid, j.Name, caller(r))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, out), nil
}

func (h *dpHandlers) getJob(ctx context.Context, r *Request) (*Response, error) {
	j, err := h.svc.GetJob(ctx, h.vaultID(r), r.Var("job"))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, j), nil
}
