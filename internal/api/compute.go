package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"coffer/internal/compute"
	"coffer/internal/operation"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// ComputeVersions: Microsoft.Compute disks and snapshots (the versions the
// armcompute majors and the Azure CLI send).
var ComputeVersions = []string{
	"2016-04-30-preview", "2017-03-30", "2018-04-01", "2018-06-01", "2018-09-30", "2019-03-01", "2019-07-01",
	"2019-11-01", "2020-05-01", "2020-06-30", "2020-09-30", "2020-12-01", "2021-04-01", "2021-08-01", "2021-12-01",
	"2022-03-02", "2022-07-02", "2023-01-02", "2023-04-02", "2023-10-02", "2024-03-02", "2025-01-02", "2026-03-02",
}

func init() { AddOperationVersions(ComputeVersions) }

// Compute holds what the Microsoft.Compute routes need.
type Compute struct {
	Service *compute.Service
	// NBDAddress returns the host:port of the NBD server that serves the
	// disk or snapshot resourceID: a disk's home node's ("" when NBD is
	// off); NBDTLS says whether it offers TLS (nbds:// URLs).
	NBDAddress func(ctx context.Context, resourceID string) string
	NBDTLS     bool
}

// RegisterCompute adds the Microsoft.Compute routes: disks and snapshots
// (PUT, GET, PATCH, DELETE, list by group and subscription, beginGetAccess,
// endGetAccess). The data plane behind the SAS URLs is ComputeData.
func (s *Server) RegisterCompute(c Compute) {
	h := &computeHandlers{s: s, c: c}
	for _, typ := range []string{compute.TypeDisks, compute.TypeSnapshots} {
		s.Handle(h.routes(typ)...)
		s.HandleResult(accessKind(typ), h.accessResult)
	}
	// The copy of a disk and the taking of a snapshot run as durable
	// operations on the home node of the disk they read; FinishDisk and
	// FinishSnapshot are idempotent (see their docs).
	s.Operations.Register(opDiskCreate, finishing(compute.TypeDisks, func(ctx context.Context, id resource.ID) error {
		_, err := c.Service.FinishDisk(ctx, id)
		return err
	}))
	s.Operations.Register(opSnapshotCreate, finishing(compute.TypeSnapshots, func(ctx context.Context, id resource.ID) error {
		_, err := c.Service.FinishSnapshot(ctx, id)
		return err
	}))
	// An operation that fails for good (its task out of deliveries) fails
	// the resource with it, in the same transaction.
	s.Operations.OnFail(opDiskCreate, failCreation(c.Service, compute.TypeDisks))
	s.Operations.OnFail(opSnapshotCreate, failCreation(c.Service, compute.TypeSnapshots))
}

// failCreation is the Failer of an operation that creates a resource of
// type typ.
func failCreation(svc *compute.Service, typ string) operation.Failer {
	return func(ctx context.Context, tx store.Tx, rec operation.Record) error {
		id, err := compute.ParseID(typ, rec.ResourceID)
		if err != nil {
			return nil // not a resource this kind creates: nothing pending
		}
		e := rec.Error
		if e == nil {
			e = operation.Interrupted()
		}
		return svc.FailCreationTx(ctx, tx, typ, id, e)
	}
}

// finishing is the handler of an operation that finishes the creation of
// the resource of type typ it acts on.
func finishing(typ string, finish func(ctx context.Context, id resource.ID) error) operation.Handler {
	return func(ctx context.Context, rec operation.Record) (any, error) {
		id, err := compute.ParseID(typ, rec.ResourceID)
		if err != nil {
			return nil, err
		}
		return nil, finish(ctx, id)
	}
}

// The kinds of Compute's durable operations.
const (
	opDiskCreate     = "disks/create"
	opSnapshotCreate = "snapshots/create"
)

// accessKind is the operation kind of beginGetAccess on a resource type.
func accessKind(typ string) string { return typ + "/beginGetAccess" }

type computeHandlers struct {
	s *Server
	c Compute
}

func (h *computeHandlers) routes(typ string) []Route {
	v := ComputeVersions
	rt := "Microsoft.Compute/" + typ
	item := "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/" + typ + "/{name}"
	validate := func(r *Request) error {
		if err := resource.GroupNameRule.Check("InvalidResourceGroup", r.Var("rg")); err != nil {
			return err
		}
		if n := r.Var("name"); n != "" {
			return resource.DiskNameRule.Check("InvalidResourceName", n)
		}
		return nil
	}
	grpScope := func(r *Request) string { return "/subscriptions/" + r.Var("sub") + "/resourceGroups/" + r.Var("rg") }
	subScope := func(r *Request) string { return "/subscriptions/" + r.Var("sub") }
	// An item's actions are decided at its resource ID (the path of
	// beginGetAccess and endGetAccess goes on past it).
	itemScope := func(r *Request) string { return h.id(r, typ).String() }
	isDisk := typ == compute.TypeDisks
	read, write, del, grant, revoke := compute.ActionDiskRead, compute.ActionDiskWrite, compute.ActionDiskDelete, compute.ActionDiskGrant, compute.ActionDiskRevoke
	if !isDisk {
		read, write, del, grant, revoke = compute.ActionSnapshotRead, compute.ActionSnapshotWrite, compute.ActionSnapshotDelete, compute.ActionSnapshotGrant, compute.ActionSnapshotRevoke
	}
	pick := func(disk, snap func(context.Context, *Request) (*Response, error)) func(context.Context, *Request) (*Response, error) {
		if isDisk {
			return disk
		}
		return snap
	}
	// What acts on a disk's volume is served by the node that holds it;
	// of a snapshot's routes, only a PUT from a disk reads a volume.
	volume, itemVolume := snapshotVolume, func(*Request) (Volume, bool) { return Volume{}, false }
	if isDisk {
		volume = diskVolume(func(r *Request) resource.ID { return h.id(r, typ) })
		itemVolume = volume
	}
	return []Route{
		{Method: "PUT", Pattern: item, Type: rt, Versions: v, Validate: validate, Action: write, Scope: itemScope,
			Volume: volume, Handle: pick(h.putDisk, h.putSnapshot)},
		{Method: "GET", Pattern: item, Type: rt, Versions: v, Validate: validate, Action: read, Scope: itemScope,
			Handle: pick(h.getDisk, h.getSnapshot)},
		{Method: "PATCH", Pattern: item, Type: rt, Versions: v, Validate: validate, Action: write, Scope: itemScope,
			Volume: itemVolume, Handle: pick(h.patchDisk, h.patchSnapshot)},
		{Method: "DELETE", Pattern: item, Type: rt, Versions: v, Validate: validate, Action: del, Scope: itemScope,
			Volume: itemVolume, Handle: pick(h.deleteDisk, h.deleteSnapshot)},
		{Method: "POST", Pattern: item + "/beginGetAccess", Type: rt, Versions: v, Validate: validate, Action: grant,
			Scope: itemScope, Volume: itemVolume, Handle: h.beginGetAccess},
		{Method: "POST", Pattern: item + "/endGetAccess", Type: rt, Versions: v, Validate: validate, Action: revoke,
			Scope: itemScope, Volume: itemVolume, Handle: h.endGetAccess},
		{Method: "GET", Pattern: "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/" + typ, Type: rt, Versions: v,
			Validate: validate, Action: read, Scope: grpScope, Handle: pick(h.listDisks, h.listSnapshots)},
		{Method: "GET", Pattern: "/subscriptions/{sub}/providers/Microsoft.Compute/" + typ, Type: rt, Versions: v,
			Action: read, Scope: subScope, Handle: pick(h.listDisks, h.listSnapshots)},
	}
}

func (h *computeHandlers) id(r *Request, typ string) resource.ID {
	if typ == compute.TypeDisks {
		return compute.DiskID(r.Var("sub"), r.Var("rg"), r.Var("name"))
	}
	return compute.SnapshotID(r.Var("sub"), r.Var("rg"), r.Var("name"))
}

func (h *computeHandlers) now() time.Time { return h.s.Clock.Now().UTC() }

// --- disks ---

func (h *computeHandlers) putDisk(ctx context.Context, r *Request) (*Response, error) {
	var in diskWire
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	din, err := in.input()
	if err != nil {
		return nil, err
	}
	id := h.id(r, compute.TypeDisks)
	if cur, gerr := h.c.Service.GetDisk(ctx, id); gerr == nil {
		if err := CheckPreconditions(r, true, cur.ETag); err != nil {
			return nil, err
		}
	} else if err := CheckPreconditions(r, false, 0); err != nil {
		return nil, err
	}
	d, _, finish, err := h.c.Service.StartDisk(ctx, r.Principal, id, din)
	if err != nil {
		return nil, err
	}
	if finish == nil {
		return JSON(http.StatusOK, diskJSON(d, h.now())).SetHeader("ETag", ETag(d.ETag)), nil
	}
	op, err := h.s.Operations.Start(ctx, operation.Record{ResourceID: d.ID, Kind: opDiskCreate, Location: d.Location,
		CreatedBy: r.Principal.ID, ReadAction: compute.ActionDiskRead, Disk: d.ID}, nil)
	if err != nil {
		return nil, err
	}
	return r.Async(http.StatusAccepted, diskJSON(d, h.now()), compute.Provider, r.Var("sub"), d.Location, op), nil
}

func (h *computeHandlers) getDisk(ctx context.Context, r *Request) (*Response, error) {
	d, err := h.c.Service.GetDisk(ctx, h.id(r, compute.TypeDisks))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, diskJSON(d, h.now())).SetHeader("ETag", ETag(d.ETag)), nil
}

func (h *computeHandlers) patchDisk(ctx context.Context, r *Request) (*Response, error) {
	var in diskWire
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	upd := compute.DiskUpdate{Tags: in.Tags}
	if in.SKU != nil {
		upd.SKU = in.SKU.Name
	}
	if p := in.Properties; p != nil {
		if p.DiskSizeGB != nil {
			upd.DiskSizeGB = *p.DiskSizeGB
			if err := compute.CheckDiskSizeGB(upd.DiskSizeGB); err != nil {
				return nil, err
			}
		}
		o := p.options()
		upd.Options = &o
	}
	id := h.id(r, compute.TypeDisks)
	if cur, err := h.c.Service.GetDisk(ctx, id); err == nil {
		if err := CheckPreconditions(r, true, cur.ETag); err != nil {
			return nil, err
		}
	}
	d, err := h.c.Service.UpdateDisk(ctx, r.Principal, id, upd)
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, diskJSON(d, h.now())).SetHeader("ETag", ETag(d.ETag)), nil
}

func (h *computeHandlers) deleteDisk(ctx context.Context, r *Request) (*Response, error) {
	existed, err := h.c.Service.DeleteDisk(ctx, h.id(r, compute.TypeDisks))
	if err != nil {
		return nil, err
	}
	if !existed {
		return &Response{Status: http.StatusNoContent}, nil
	}
	return &Response{Status: http.StatusOK}, nil
}

func (h *computeHandlers) listDisks(ctx context.Context, r *Request) (*Response, error) {
	scope := resource.GroupID(r.Var("sub"), r.Var("rg"))
	if r.Var("rg") == "" {
		scope = resource.SubscriptionID(r.Var("sub"))
	}
	ds, err := h.c.Service.ListDisks(ctx, scope)
	if err != nil {
		return nil, err
	}
	now := h.now()
	items := make([]any, 0, len(ds))
	keys := make([]string, 0, len(ds))
	for _, d := range ds {
		items = append(items, diskJSON(d, now))
		keys = append(keys, strings.ToLower(d.ID))
	}
	return h.s.Paginate(r, items, keys)
}

// --- snapshots ---

func (h *computeHandlers) putSnapshot(ctx context.Context, r *Request) (*Response, error) {
	var in snapshotWire
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	sin, err := in.input()
	if err != nil {
		return nil, err
	}
	id := h.id(r, compute.TypeSnapshots)
	if cur, gerr := h.c.Service.GetSnapshot(ctx, id); gerr == nil {
		if err := CheckPreconditions(r, true, cur.ETag); err != nil {
			return nil, err
		}
	} else if err := CheckPreconditions(r, false, 0); err != nil {
		return nil, err
	}
	sn, _, finish, err := h.c.Service.StartSnapshot(ctx, r.Principal, id, sin)
	if err != nil {
		return nil, err
	}
	if finish == nil {
		return JSON(http.StatusOK, snapshotJSON(sn, h.now())).SetHeader("ETag", ETag(sn.ETag)), nil
	}
	op, err := h.s.Operations.Start(ctx, operation.Record{ResourceID: sn.ID, Kind: opSnapshotCreate, Location: sn.Location,
		CreatedBy: r.Principal.ID, ReadAction: compute.ActionSnapshotRead, Disk: sn.CreationData.SourceResourceID}, nil)
	if err != nil {
		return nil, err
	}
	return r.Async(http.StatusAccepted, snapshotJSON(sn, h.now()), compute.Provider, r.Var("sub"), sn.Location, op), nil
}

func (h *computeHandlers) getSnapshot(ctx context.Context, r *Request) (*Response, error) {
	sn, err := h.c.Service.GetSnapshot(ctx, h.id(r, compute.TypeSnapshots))
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, snapshotJSON(sn, h.now())).SetHeader("ETag", ETag(sn.ETag)), nil
}

func (h *computeHandlers) patchSnapshot(ctx context.Context, r *Request) (*Response, error) {
	var in snapshotWire
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	sn, err := h.c.Service.UpdateSnapshot(ctx, r.Principal, h.id(r, compute.TypeSnapshots), in.Tags)
	if err != nil {
		return nil, err
	}
	return JSON(http.StatusOK, snapshotJSON(sn, h.now())).SetHeader("ETag", ETag(sn.ETag)), nil
}

func (h *computeHandlers) deleteSnapshot(ctx context.Context, r *Request) (*Response, error) {
	existed, err := h.c.Service.DeleteSnapshot(ctx, h.id(r, compute.TypeSnapshots))
	if err != nil {
		return nil, err
	}
	if !existed {
		return &Response{Status: http.StatusNoContent}, nil
	}
	return &Response{Status: http.StatusOK}, nil
}

func (h *computeHandlers) listSnapshots(ctx context.Context, r *Request) (*Response, error) {
	scope := resource.GroupID(r.Var("sub"), r.Var("rg"))
	if r.Var("rg") == "" {
		scope = resource.SubscriptionID(r.Var("sub"))
	}
	ss, err := h.c.Service.ListSnapshots(ctx, scope)
	if err != nil {
		return nil, err
	}
	now := h.now()
	items := make([]any, 0, len(ss))
	keys := make([]string, 0, len(ss))
	for _, sn := range ss {
		items = append(items, snapshotJSON(sn, now))
		keys = append(keys, strings.ToLower(sn.ID))
	}
	return h.s.Paginate(r, items, keys)
}

// --- access ---

// grantAccessData is Azure's GrantAccessData.
type grantAccessData struct {
	Access                   string `json:"access"`
	DurationInSeconds        *int64 `json:"durationInSeconds"`
	FileFormat               string `json:"fileFormat,omitempty"`
	GetSecureVMGuestStateSAS bool   `json:"getSecureVMGuestStateSAS,omitempty"`
	// OutlivesCreator is a Coffer extension: the grant stays usable when
	// its creator loses its roles or is deleted.
	OutlivesCreator bool `json:"outlivesCreator,omitempty"`
}

// AccessURI is Azure's AccessUri, plus Coffer's NBD URL for the same grant.
type AccessURI struct {
	AccessSAS string `json:"accessSAS"`
	// NBDURL is a Coffer extension: the grant as an NBD URL
	// (nbd://host:port/<token>, nbds:// with TLS).
	NBDURL string `json:"nbdUrl,omitempty"`
	// Expires is a Coffer extension: when the grant ends.
	Expires string `json:"expiresOn,omitempty"`
	// GrantID is a Coffer extension: the grant's ID, which endGetAccess
	// takes to end this grant alone.
	GrantID string `json:"grantId,omitempty"`
}

// endAccessData is the optional body of endGetAccess, a Coffer extension:
// {"grantId": ID} ends that grant alone.
type endAccessData struct {
	GrantID *string `json:"grantId"`
}

func typeOf(r *Request) string {
	if strings.Contains(strings.ToLower(r.Path), "/providers/microsoft.compute/snapshots/") {
		return compute.TypeSnapshots
	}
	return compute.TypeDisks
}

func (h *computeHandlers) beginGetAccess(ctx context.Context, r *Request) (*Response, error) {
	typ := typeOf(r)
	id := h.id(r, typ)
	var in grantAccessData
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	acc, err := compute.ParseAccess(in.Access)
	if err != nil {
		return nil, err
	}
	if in.DurationInSeconds == nil {
		return nil, resource.Errorf(resource.KindBadRequest, "InvalidParameter", "Required parameter 'durationInSeconds' is missing (null).").WithTarget("durationInSeconds")
	}
	if in.FileFormat != "" && !strings.EqualFold(in.FileFormat, "VHD") && !strings.EqualFold(in.FileFormat, "VHDX") {
		return nil, resource.Errorf(resource.KindBadRequest, "InvalidParameter", "The value '%s' of parameter 'fileFormat' is not valid. Allowed values are 'VHD' and 'VHDX'.", in.FileFormat).WithTarget("fileFormat")
	}
	g, err := h.c.Service.GrantAccess(ctx, r.Principal, id, compute.GrantInput{Access: acc,
		Duration: time.Duration(*in.DurationInSeconds) * time.Second, OutlivesCreator: in.OutlivesCreator})
	if err != nil {
		return nil, err
	}
	// The result keeps the grant's reference, not its token: the access
	// URLs are derived again when the result is read (accessResult).
	op, err := h.s.Operations.Complete(ctx, operation.Record{ResourceID: id.String(), Kind: accessKind(typ), Location: g.Location,
		CreatedBy: r.Principal.ID, ReadAction: "Microsoft.Compute/" + typ + "/beginGetAccess/action"}, g.Ref(), nil)
	if err != nil {
		return nil, err
	}
	resp := &Response{Status: http.StatusAccepted}
	_, res := r.OperationURLs(compute.Provider, r.Var("sub"), g.Location, op.ID)
	resp.SetHeader("Location", res)
	resp.SetHeader("Retry-After", "0")
	return resp, nil
}

// accessResult answers the result of a beginGetAccess: the access URLs,
// with the grant's token derived again from the stored reference. Besides
// its creator, only a principal that could create the same grant (for a
// Write grant, one that may write the disk) may read it.
func (h *computeHandlers) accessResult(ctx context.Context, r *Request, rec operation.Record) (*Response, error) {
	var ref compute.GrantRef
	if err := json.Unmarshal(rec.Result, &ref); err != nil || ref.ID == "" {
		return nil, fmt.Errorf("operation %s: the stored access grant is unreadable: %v", rec.ID, err)
	}
	if rec.CreatedBy != r.Principal.ID {
		if err := h.c.Service.AuthorizeGrant(ctx, r.Principal, ref); err != nil {
			return nil, err
		}
	}
	tok, err := h.c.Service.Token(ref)
	if err != nil {
		return nil, fmt.Errorf("operation %s: %w", rec.ID, err)
	}
	return JSON(http.StatusOK, AccessURI{AccessSAS: h.sasURL(r, ref, tok), NBDURL: h.nbdURL(ctx, r, ref.ResourceID, tok), Expires: FormatTime(ref.Expires),
		GrantID: ref.ID}), nil
}

func (h *computeHandlers) endGetAccess(ctx context.Context, r *Request) (*Response, error) {
	typ := typeOf(r)
	id := h.id(r, typ)
	var in endAccessData
	if len(bytes.TrimSpace(r.Body)) > 0 {
		if err := r.Decode(&in); err != nil {
			return nil, err
		}
	}
	var err error
	if in.GrantID != nil {
		err = h.c.Service.RevokeGrant(ctx, id, *in.GrantID)
	} else {
		err = h.c.Service.RevokeAccess(ctx, id)
	}
	if err != nil {
		return nil, err
	}
	return &Response{Status: http.StatusOK}, nil
}

// sasURL is the data-plane URL of a grant, shaped like a blob SAS URL.
func (h *computeHandlers) sasURL(r *Request, g compute.GrantRef, token string) string {
	return SASURL(r.BaseURL, g, token)
}

// SASURL is the data-plane URL of a grant at the endpoint base, shaped like
// a blob SAS URL (the API's accessSAS; the portal shows the same).
func SASURL(base string, g compute.GrantRef, token string) string {
	sp := "r"
	if g.Access == compute.AccessWrite {
		sp = "rw"
	}
	q := url.Values{}
	q.Set("sv", dataVersion)
	q.Set("sr", "b")
	q.Set("sp", sp)
	q.Set("st", g.Created.UTC().Format(time.RFC3339))
	q.Set("se", g.Expires.UTC().Format(time.RFC3339))
	q.Set("sig", token)
	return base + DataPrefix + g.Type + "/" + g.UniqueID + "?" + q.Encode()
}

// ScrubAccessResults rewrites the beginGetAccess results that earlier
// releases stored with their access URLs (and so the grant's token) into
// grant references, so that no live token stays in the metadata store. A
// result it cannot read is dropped (the grant itself is unaffected).
func ScrubAccessResults(ctx context.Context, ops *operation.Manager, svc *compute.Service) error {
	return ops.Rewrite(ctx, func(rec *operation.Record) bool {
		if rec.Kind != accessKind(compute.TypeDisks) && rec.Kind != accessKind(compute.TypeSnapshots) || len(rec.Result) == 0 {
			return false
		}
		var old AccessURI
		if err := json.Unmarshal(rec.Result, &old); err != nil || old.AccessSAS == "" {
			return false // already a reference
		}
		rec.Result = nil
		if ref, ok := parseAccessSAS(svc, rec.ResourceID, old.AccessSAS); ok {
			rec.Result, _ = json.Marshal(ref)
		}
		return true
	})
}

// parseAccessSAS recovers the reference of the grant behind an access URL
// that sasURL made.
func parseAccessSAS(svc *compute.Service, resourceID, sas string) (compute.GrantRef, bool) {
	u, err := url.Parse(sas)
	if err != nil {
		return compute.GrantRef{}, false
	}
	typ, uid, ok := strings.Cut(strings.TrimPrefix(u.Path, DataPrefix), "/")
	q := u.Query()
	id, exp, err := svc.ParseToken(q.Get("sig"))
	created, cerr := time.Parse(time.RFC3339, q.Get("st"))
	if !ok || err != nil || cerr != nil {
		return compute.GrantRef{}, false
	}
	access := compute.AccessRead
	if q.Get("sp") == "rw" {
		access = compute.AccessWrite
	}
	return compute.GrantRef{ID: id, ResourceID: resourceID, Type: typ, UniqueID: uid, Access: access, Created: created.UTC(), Expires: exp}, true
}

// nbdURL is the grant of resourceID as an NBD URL on the NBD server that
// serves it, or "" when NBD is off.
func (h *computeHandlers) nbdURL(ctx context.Context, r *Request, resourceID, token string) string {
	if h.c.NBDAddress == nil {
		return ""
	}
	return NBDURL(r.BaseURL, h.c.NBDAddress(ctx, resourceID), h.c.NBDTLS, token)
}

// NBDURL is a grant's token as an NBD URL (nbd://host:port/<token>,
// nbds:// with TLS) for the NBD listener at addr, or "" when NBD is off
// (addr ""). A listener on every address is named by the host of the
// public endpoint base.
func NBDURL(base, addr string, tls bool, token string) string {
	if addr == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		u, err := url.Parse(base)
		if err != nil || u.Hostname() == "" {
			return ""
		}
		host = u.Hostname()
	}
	scheme := "nbd"
	if tls {
		scheme = "nbds"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/" + token
}
