package api

import (
	"bytes"
	"coffer/internal/audit"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"coffer/internal/blockdev"
	"coffer/internal/clock"
	"coffer/internal/compute"
	"coffer/internal/identity"
	"coffer/internal/resource"
)

// DataPrefix is the path under which the SAS URLs of access grants live:
// DataPrefix + "disks/<uniqueId>" or "snapshots/<uniqueId>", with the
// grant's token in the sig query parameter.
const DataPrefix = "/_data/"

// dataVersion is the storage service version Coffer's data plane answers as.
const dataVersion = "2021-12-02"

// Page-blob limits.
const (
	pageSize    = 512
	maxPutPage  = 4 << 20
	readBufSize = 1 << 20
)

// ComputeData is the data plane behind the SAS URLs of disk and snapshot
// access grants: a subset of the Azure Blob service's page-blob API.
//
//   - GET (Range or x-ms-range) and HEAD read the bytes and properties;
//   - PUT ?comp=page with x-ms-page-write: update|clear writes 512-aligned
//     pages, at most 4 MiB per update (write grants only);
//   - GET ?comp=pagelist lists allocated page ranges, or with
//     x-ms-previous-snapshot-url the ranges changed since that snapshot.
//
// Errors are Azure Storage XML error bodies. Every request checks the
// grant again (signature, expiry, revocation).
type ComputeData struct {
	Service *compute.Service
	Clock   clock.Clock
	Logger  *slog.Logger
	// Forwarder, when set, serves a disk's data on the node that holds
	// its volume, once its SAS token has shown a valid signature here.
	Forwarder Forwarder
}

type storageError struct {
	status int
	code   string
	msg    string
	detail string
}

func (e *storageError) Error() string { return e.code + ": " + e.msg }

func serr(status int, code, format string, args ...any) *storageError {
	return &storageError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

type xmlError struct {
	XMLName                   xml.Name `xml:"Error"`
	Code                      string   `xml:"Code"`
	Message                   string   `xml:"Message"`
	AuthenticationErrorDetail string   `xml:"AuthenticationErrorDetail,omitempty"`
}

func (d *ComputeData) logger() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.Default()
}

// ServeHTTP serves one data-plane request.
func (d *ComputeData) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := identity.NewGUID()
	h := w.Header()
	h.Set("x-ms-request-id", reqID)
	h.Set("x-ms-version", dataVersion)
	if cid := r.Header.Get("x-ms-client-request-id"); cid != "" {
		h.Set("x-ms-client-request-id", cid)
	}
	h.Set("Date", d.Clock.Now().UTC().Format(http.TimeFormat))
	var a *compute.DataAccess
	err := d.serve(r.Context(), w, r, &a)
	d.logger().Debug("data request", "id", reqID, "method", r.Method, "path", r.URL.Path, "principal", a.Creator(),
		"grant", a.GrantID(), "remote", r.RemoteAddr, "err", err)
	if err != nil {
		d.auditRefusal(r, reqID, a, err)
		d.writeError(w, r, reqID, err)
	}
}

// auditRefusal logs a request refused for its grant (401 or 403
// AuthenticationFailed, 403 AuthorizationPermissionMismatch).
func (d *ComputeData) auditRefusal(r *http.Request, reqID string, a *compute.DataAccess, err error) {
	var se *storageError
	if !errors.As(err, &se) || (se.status != http.StatusUnauthorized && se.status != http.StatusForbidden) {
		return
	}
	ref := audit.Refusal{Surface: audit.SurfaceData, RequestID: reqID, Remote: r.RemoteAddr, Method: r.Method, Path: r.URL.Path,
		Principal: a.Creator(), Code: se.code, Reason: se.msg}
	if se.detail != "" {
		ref.Reason = se.detail
	}
	if a == nil || se.code == "AuthenticationFailed" || se.status == http.StatusUnauthorized {
		audit.AuthenticationFailed(r.Context(), d.logger(), ref)
		return
	}
	ref.Action, ref.Scope = "read", a.ResourceID
	if r.Method == http.MethodPut {
		ref.Action = "write"
	}
	audit.Denied(r.Context(), d.logger(), ref)
}

func (d *ComputeData) writeError(w http.ResponseWriter, r *http.Request, reqID string, err error) {
	var se *storageError
	if e := resource.AsError(err); e != nil && e.Kind == resource.KindInsufficientStorage {
		d.logger().Warn("data request failed: no space on the data filesystem", "id", reqID, "method", r.Method, "path", r.URL.Path, "err", err)
		se = serr(http.StatusInsufficientStorage, e.Code, "%s", e.Message)
	} else if !errors.As(err, &se) {
		d.logger().Error("data request failed", "id", reqID, "method", r.Method, "path", r.URL.Path, "err", err)
		se = serr(http.StatusInternalServerError, "InternalError", "Server encountered an internal error. Please try again after some time.")
	} else {
		d.logger().Debug("data request refused", "id", reqID, "code", se.code, "message", se.msg)
	}
	body := xmlError{Code: se.code, Message: fmt.Sprintf("%s\nRequestId:%s\nTime:%s", se.msg, reqID, FormatTime(d.Clock.Now())),
		AuthenticationErrorDetail: se.detail}
	b, _ := xml.Marshal(body)
	b = append([]byte(xml.Header), b...)
	w.Header().Set("x-ms-error-code", se.code)
	w.Header().Set("Content-Type", "application/xml")
	if r.Method == http.MethodHead {
		w.WriteHeader(se.status)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(se.status)
	w.Write(b)
}

func authFailed(detail string) *storageError {
	e := serr(http.StatusForbidden, "AuthenticationFailed",
		"Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.")
	e.detail = detail
	return e
}

// forward serves a disk's data on the node that holds its volume. Only a
// token whose signature and expiry check out here is forwarded (the home
// node checks the grant itself again); anything else is answered here.
func (d *ComputeData) forward(ctx context.Context, w http.ResponseWriter, r *http.Request) (bool, error) {
	typ, uid, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, DataPrefix), "/")
	if d.Forwarder == nil || !ok || typ != compute.TypeDisks || uid == "" || strings.Contains(uid, "/") {
		return false, nil
	}
	if _, exp, err := d.Service.ParseToken(r.URL.Query().Get("sig")); err != nil || !exp.After(d.Clock.Now()) {
		return false, nil
	}
	done, err := d.Forwarder.Forward(ctx, w, r, nil, Volume{UniqueID: uid})
	if e := resource.AsError(err); e != nil {
		return false, &storageError{status: StatusOf(e.Kind), code: e.Code, msg: e.Message}
	}
	return done, err
}

// open resolves the request's SAS token and checks it names the resource
// in the path.
func (d *ComputeData) open(ctx context.Context, u *url.URL) (*compute.DataAccess, error) {
	rest := strings.TrimPrefix(u.Path, DataPrefix)
	typ, uid, ok := strings.Cut(rest, "/")
	if !ok || (typ != compute.TypeDisks && typ != compute.TypeSnapshots) || uid == "" || strings.Contains(uid, "/") {
		return nil, serr(http.StatusNotFound, "ResourceNotFound", "The specified resource does not exist.")
	}
	tok := u.Query().Get("sig")
	if tok == "" {
		return nil, serr(http.StatusUnauthorized, "NoAuthenticationInformation",
			"Server failed to authenticate the request. Please refer to the information in the www-authenticate header.")
	}
	a, err := d.Service.OpenAccess(ctx, tok)
	switch {
	case errors.Is(err, compute.ErrUnknownGrant):
		return nil, authFailed("Signature did not match. The access token is not a valid Coffer access grant.")
	case err != nil:
		return nil, dataError(err)
	}
	if a.Type != typ || !strings.EqualFold(a.UniqueID, uid) {
		return nil, authFailed("The access grant is for another resource.")
	}
	return a, nil
}

func (d *ComputeData) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, opened **compute.DataAccess) error {
	if done, err := d.forward(ctx, w, r); done || err != nil {
		return err
	}
	a, err := d.open(ctx, r.URL)
	if err != nil {
		return err
	}
	*opened = a
	comp := r.URL.Query().Get("comp")
	switch {
	case r.Method == http.MethodHead && comp == "":
		return d.properties(w, a)
	case r.Method == http.MethodGet && comp == "":
		return d.download(ctx, w, r, a)
	case r.Method == http.MethodGet && comp == "pagelist":
		return d.pageList(ctx, w, r, a)
	case r.Method == http.MethodPut && comp == "page":
		return d.putPage(ctx, w, r, a)
	case r.Method == http.MethodPut && comp == "":
		return serr(http.StatusForbidden, "OperationNotAllowed", "The blob behind a disk or snapshot access grant already exists; write it with Put Page (comp=page).")
	case comp != "" && comp != "page" && comp != "pagelist":
		return serr(http.StatusBadRequest, "UnsupportedQueryParameter", "The query parameter comp=%s is not supported on disk and snapshot access URLs.", comp)
	}
	return serr(http.StatusMethodNotAllowed, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb %s.", r.Method)
}

func (d *ComputeData) etag(a *compute.DataAccess) string {
	return `"0x` + strings.ToUpper(strings.ReplaceAll(a.UniqueID, "-", "")[:16]) + `"`
}

func (d *ComputeData) commonHeaders(h http.Header, a *compute.DataAccess) {
	h.Set("ETag", d.etag(a))
	h.Set("Last-Modified", d.Clock.Now().UTC().Format(http.TimeFormat))
	h.Set("x-ms-blob-type", "PageBlob")
	h.Set("x-ms-blob-sequence-number", "0")
	h.Set("x-ms-server-encrypted", "true")
	h.Set("Accept-Ranges", "bytes")
}

func (d *ComputeData) properties(w http.ResponseWriter, a *compute.DataAccess) error {
	h := w.Header()
	d.commonHeaders(h, a)
	h.Set("Content-Length", strconv.FormatInt(a.Size(), 10))
	h.Set("Content-Type", "application/octet-stream")
	h.Set("x-ms-lease-state", "available")
	h.Set("x-ms-lease-status", "unlocked")
	h.Set("x-ms-access-tier-inferred", "true")
	w.WriteHeader(http.StatusOK)
	return nil
}

// parseRange parses "bytes=a-b" or "bytes=a-" (end -1), a and b decimal
// digits.
func parseRange(s string) (start, end int64, err error) {
	spec, ok := strings.CutPrefix(strings.TrimSpace(s), "bytes=")
	if !ok {
		return 0, 0, serr(http.StatusBadRequest, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: range '%s'.", s)
	}
	a, b, ok := strings.Cut(spec, "-")
	if !ok || !isDigits(a) || (b != "" && !isDigits(b)) {
		return 0, 0, serr(http.StatusBadRequest, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: range '%s'.", s)
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end = -1
	var err2 error
	if b != "" {
		end, err2 = strconv.ParseInt(b, 10, 64)
	}
	if err1 != nil || err2 != nil || start < 0 || (end >= 0 && end < start) {
		return 0, 0, serr(http.StatusBadRequest, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: range '%s'.", s)
	}
	return start, end, nil
}

// isDigits reports whether s is one or more ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func rangeHeader(r *http.Request) string {
	if v := r.Header.Get("x-ms-range"); v != "" {
		return v
	}
	return r.Header.Get("Range")
}

func (d *ComputeData) download(ctx context.Context, w http.ResponseWriter, r *http.Request, a *compute.DataAccess) error {
	size := a.Size()
	start, end, status := int64(0), size-1, http.StatusOK
	if rh := rangeHeader(r); rh != "" {
		s, e, err := parseRange(rh)
		if err != nil {
			return err
		}
		if s >= size {
			return serr(http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The range specified is invalid for the current size of the resource.")
		}
		if e < 0 || e >= size {
			e = size - 1
		}
		start, end, status = s, e, http.StatusPartialContent
	}
	n := end - start + 1
	h := w.Header()
	d.commonHeaders(h, a)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	if status == http.StatusPartialContent {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, size))
	}
	// Read the first piece before the header, so that a refused read is
	// still an error answer.
	buf := make([]byte, min(int64(readBufSize), n))
	k, err := d.read(ctx, a, buf, start)
	if err != nil {
		return err
	}
	w.WriteHeader(status)
	for pos := start; ; {
		if _, err := w.Write(buf[:k]); err != nil {
			return nil // the client went away
		}
		pos += int64(k)
		if pos > end {
			return nil
		}
		l := min(int64(len(buf)), end+1-pos)
		if k, err = d.read(ctx, a, buf[:l], pos); err != nil {
			d.logger().Warn("data read failed mid-answer", "resource", a.ResourceID, "offset", pos, "err", err)
			panic(http.ErrAbortHandler) // abort the connection: the answer is incomplete
		}
	}
}

func (d *ComputeData) read(ctx context.Context, a *compute.DataAccess, p []byte, off int64) (int, error) {
	k, err := a.ReadAt(ctx, p, off)
	if err != nil && !(errors.Is(err, io.EOF) && k == len(p)) {
		return k, dataError(err)
	}
	return k, nil
}

// dataError maps a domain error to a storage error.
func dataError(err error) error {
	switch {
	case errors.Is(err, compute.ErrReadOnly):
		return serr(http.StatusForbidden, "AuthorizationPermissionMismatch", "This request is not authorized to perform this operation using this permission.")
	case errors.Is(err, compute.ErrCreatorDenied):
		return authFailed("The principal that created the access grant was deleted or no longer holds the roles the grant needs.")
	case errors.Is(err, compute.ErrAccessDenied):
		return authFailed("The access grant has expired or was revoked (endGetAccess).")
	case errors.Is(err, blockdev.ErrOutOfRange):
		return serr(http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The range specified is invalid for the current size of the resource.")
	}
	return err
}

func invalidPageRange() *storageError {
	return serr(http.StatusRequestedRangeNotSatisfiable, "InvalidPageRange", "The page range specified is invalid.")
}

func (d *ComputeData) putPage(ctx context.Context, w http.ResponseWriter, r *http.Request, a *compute.DataAccess) error {
	if err := a.CheckWrite(ctx); err != nil {
		return dataError(err)
	}
	mode := strings.ToLower(r.Header.Get("x-ms-page-write"))
	if mode == "" {
		return serr(http.StatusBadRequest, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-page-write.")
	}
	if mode != "update" && mode != "clear" {
		return serr(http.StatusBadRequest, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: x-ms-page-write '%s'.", mode)
	}
	rh := rangeHeader(r)
	if rh == "" {
		return serr(http.StatusBadRequest, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-range.")
	}
	start, end, err := parseRange(rh)
	if err != nil {
		return err
	}
	if end < 0 || start%pageSize != 0 || (end+1)%pageSize != 0 || end >= a.Size() {
		return invalidPageRange()
	}
	n := end - start + 1
	if mode == "clear" {
		if r.ContentLength > 0 {
			return serr(http.StatusBadRequest, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: Content-Length must be 0 for x-ms-page-write: clear.")
		}
		if err := a.Volume.WriteZeroes(ctx, start, n); err != nil {
			return dataError(err)
		}
	} else {
		if n > maxPutPage {
			return serr(http.StatusRequestEntityTooLarge, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum permissible limit (4 MiB per page write).")
		}
		if r.ContentLength != n {
			return serr(http.StatusBadRequest, "InvalidHeaderValue",
				"The value for one of the HTTP headers is not in the correct format: Content-Length %d does not match the range length %d.", r.ContentLength, n)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return serr(http.StatusBadRequest, "InvalidInput", "The request body is shorter than its Content-Length.")
		}
		if want := r.Header.Get("Content-MD5"); want != "" {
			sum := md5.Sum(buf)
			got := base64.StdEncoding.EncodeToString(sum[:])
			if got != want {
				return serr(http.StatusBadRequest, "Md5Mismatch", "The MD5 value specified in the request did not match with the MD5 value calculated by the server.")
			}
			w.Header().Set("Content-MD5", want)
		}
		if err := a.CheckWrite(ctx); err != nil { // the grant may have ended while the body arrived
			return dataError(err)
		}
		if _, err := a.Volume.WriteAtContext(ctx, buf, start); err != nil {
			return dataError(err)
		}
	}
	// A page write is durable once answered, as Azure's Put Page is: the
	// data (or the clear) reaches stable storage before the 201. SAS has
	// no flush of its own to leave this to (NBD clients flush themselves).
	if err := a.Volume.Flush(ctx); err != nil {
		return dataError(err)
	}
	h := w.Header()
	d.commonHeaders(h, a)
	h.Set("x-ms-request-server-encrypted", "true")
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

type xmlRange struct {
	Start int64 `xml:"Start"`
	End   int64 `xml:"End"`
}

// pageListItem is a PageRange or ClearRange element, kept in offset order.
type pageListItem struct {
	XMLName xml.Name
	xmlRange
}

type xmlPageList struct {
	XMLName    xml.Name       `xml:"PageList"`
	Items      []pageListItem `xml:",any"`
	NextMarker string         `xml:"NextMarker"`
}

func (d *ComputeData) pageList(ctx context.Context, w http.ResponseWriter, r *http.Request, a *compute.DataAccess) error {
	size := a.Size()
	start, end := int64(0), size-1
	if rh := rangeHeader(r); rh != "" {
		s, e, err := parseRange(rh)
		if err != nil {
			return err
		}
		if e < 0 || e >= size {
			e = size - 1
		}
		if s%pageSize != 0 || (e+1)%pageSize != 0 || s > e {
			return invalidPageRange()
		}
		start, end = s, e
	}
	if r.URL.Query().Get("prevsnapshot") != "" {
		return serr(http.StatusBadRequest, "InvalidQueryParameterValue",
			"Value for one of the query parameters specified in the request URI is invalid: prevsnapshot. Coffer takes the previous snapshot as x-ms-previous-snapshot-url.")
	}
	var exts []blockdev.Extent
	if prev := r.Header.Get("x-ms-previous-snapshot-url"); prev != "" {
		pu, err := url.Parse(prev)
		if err != nil {
			return serr(http.StatusBadRequest, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format: x-ms-previous-snapshot-url.")
		}
		pa, err := d.open(ctx, pu)
		if err != nil {
			if se := (*storageError)(nil); errors.As(err, &se) {
				se.msg = "Previous snapshot: " + se.msg
			}
			return err
		}
		if a.Snapshot == nil || pa.Snapshot == nil {
			return serr(http.StatusBadRequest, "InvalidHeaderValue",
				"x-ms-previous-snapshot-url and the request URL must both be snapshot access URLs.")
		}
		all, err := a.Diff(ctx, pa)
		if err != nil {
			return dataError(err)
		}
		exts = clip(all, start, end+1)
	} else {
		all, err := a.Extents(ctx, start, end+1-start)
		if err != nil {
			return dataError(err)
		}
		for _, e := range all {
			if !e.Hole {
				exts = append(exts, e)
			}
		}
	}
	pl := xmlPageList{Items: []pageListItem{}}
	for _, e := range exts {
		name := "PageRange"
		if e.Hole {
			name = "ClearRange"
		}
		pl.Items = append(pl.Items, pageListItem{XMLName: xml.Name{Local: name}, xmlRange: xmlRange{Start: e.Offset, End: e.Offset + e.Length - 1}})
	}
	var b bytes.Buffer
	b.WriteString(xml.Header)
	if err := xml.NewEncoder(&b).Encode(pl); err != nil {
		return fmt.Errorf("encode page list: %w", err)
	}
	h := w.Header()
	d.commonHeaders(h, a)
	h.Set("x-ms-blob-content-length", strconv.FormatInt(size, 10))
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	w.Write(b.Bytes())
	return nil
}

// clip keeps the parts of extents within [lo, hi).
func clip(exts []blockdev.Extent, lo, hi int64) []blockdev.Extent {
	var out []blockdev.Extent
	for _, e := range exts {
		s, t := max(e.Offset, lo), min(e.Offset+e.Length, hi)
		if s < t {
			out = append(out, blockdev.Extent{Offset: s, Length: t - s, Hole: e.Hole})
		}
	}
	return out
}
