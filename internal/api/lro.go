package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"coffer/internal/operation"
	"coffer/internal/resource"
)

// RetryAfter is the polling interval, in seconds, that LRO responses
// advertise. Coffer's operations are fast, so it is short.
var RetryAfter = 1

// OperationURLs returns the absolute Azure-AsyncOperation (status) and
// Location (result) URLs of an operation in namespace ns, in the
// subscription-scoped form Azure's providers use.
func (r *Request) OperationURLs(ns, sub, location, opID string) (status, result string) {
	q := url.Values{}
	if r.APIVersion != "" {
		q.Set("api-version", r.APIVersion)
	}
	base := fmt.Sprintf("/subscriptions/%s/providers/%s/locations/%s", sub, ns, location)
	return r.URL(base+"/operationStatus/"+opID, q), r.URL(base+"/operationResults/"+opID, q)
}

// Async returns an LRO answer: status with body (nil for an empty body)
// plus Azure-AsyncOperation, Location and Retry-After headers pointing at
// the operation.
func (r *Request) Async(status int, body any, ns, sub, location string, op operation.Record) *Response {
	st, res := r.OperationURLs(ns, sub, location, op.ID)
	resp := &Response{Status: status, Body: body}
	resp.SetHeader("Azure-AsyncOperation", st)
	resp.SetHeader("Location", res)
	resp.SetHeader("Retry-After", fmt.Sprint(RetryAfter))
	return resp
}

// OperationStatus is ARM's operation-status body.
type OperationStatus struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Status     string          `json:"status"`
	StartTime  string          `json:"startTime,omitempty"`
	EndTime    string          `json:"endTime,omitempty"`
	Error      *resource.Error `json:"error,omitempty"`
	Properties json.RawMessage `json:"properties,omitempty"`
}

// FormatTime formats times as ARM emits them: RFC 3339 in UTC with
// fractional seconds.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.0000000Z")
}

func (s *Server) operationRoutes(versions []string) []Route {
	status := func(ctx context.Context, r *Request) (*Response, error) {
		rec, err := s.readOperation(ctx, r)
		if err != nil {
			return nil, err
		}
		body := OperationStatus{ID: r.Path, Name: rec.ID, Status: string(rec.Status),
			StartTime: FormatTime(rec.StartTime), EndTime: FormatTime(rec.EndTime), Error: rec.Error, Properties: rec.Properties}
		if strings.EqualFold(r.Query("monitor"), "true") {
			return s.operationResult(ctx, r, rec)
		}
		return JSON(http.StatusOK, body), nil
	}
	result := func(ctx context.Context, r *Request) (*Response, error) {
		rec, err := s.readOperation(ctx, r)
		if err != nil {
			return nil, err
		}
		return s.operationResult(ctx, r, rec)
	}
	const rule = "the operation's creator, or the operation's read action at its resource"
	return []Route{
		{Method: "GET", Pattern: "{scope...}/operationStatus/{op}", Type: "operationStatus", Versions: versions, Checks: rule, Handle: status},
		{Method: "GET", Pattern: "{scope...}/operations/{op}", Type: "operations", Versions: versions, Checks: rule, Handle: status},
		{Method: "GET", Pattern: "{scope...}/operationResults/{op}", Type: "operationResults", Versions: versions, Checks: rule, Handle: result},
	}
}

// ResultFunc answers the result of a succeeded operation of one kind whose
// stored Result is not the answer itself (it names a secret to derive
// again, say). It authorizes what the answer reveals beyond the operation's
// ReadAction.
type ResultFunc func(ctx context.Context, r *Request, rec operation.Record) (*Response, error)

// HandleResult makes fn answer the results of operations of kind.
func (s *Server) HandleResult(kind string, fn ResultFunc) {
	if s.results == nil {
		s.results = map[string]ResultFunc{}
	}
	s.results[kind] = fn
}

// operationResult answers a Location poll: 202 while running, the result
// (200, or 204 without one) on success, the error on failure.
func (s *Server) operationResult(ctx context.Context, r *Request, rec operation.Record) (*Response, error) {
	switch rec.Status {
	case operation.Succeeded:
		if fn := s.results[rec.Kind]; fn != nil {
			return fn(ctx, r, rec)
		}
		if len(rec.Result) == 0 {
			return &Response{Status: http.StatusNoContent}, nil
		}
		return &Response{Status: http.StatusOK, Body: []byte(rec.Result)}, nil
	case operation.Failed, operation.Canceled:
		e := rec.Error
		if e == nil {
			e = resource.Errorf(resource.KindInternal, "OperationFailed", "The operation failed.")
		}
		status := StatusOf(e.Kind)
		if status >= 500 || status == http.StatusTooManyRequests {
			// Azure SDK pollers retry 5xx and 429 as transient; a finished
			// operation's failure must end the poll, so it is a 409.
			status = http.StatusConflict
		}
		return &Response{Status: status, Body: ErrorBody{Error: e}}, nil
	}
	resp := &Response{Status: http.StatusAccepted}
	resp.SetHeader("Location", r.BaseURL+r.HTTP.URL.RequestURI())
	resp.SetHeader("Retry-After", fmt.Sprint(RetryAfter))
	return resp, nil
}

func (s *Server) readOperation(ctx context.Context, r *Request) (operation.Record, error) {
	id := r.Var("op")
	notFound := resource.Errorf(resource.KindNotFound, "OperationNotFound", "The operation '%s' could not be found.", id)
	rec, err := s.Operations.Get(ctx, id)
	if errors.Is(err, operation.ErrNotFound) {
		return rec, notFound
	}
	if err != nil {
		return rec, err
	}
	// The operation must belong to the subscription in the path (or, for
	// tenant-level operations, have none).
	if !strings.EqualFold(subscriptionSegment(r.Var("scope")), subscriptionSegment(rec.ResourceID)) {
		return rec, notFound
	}
	if rec.CreatedBy == r.Principal.ID {
		return rec, nil
	}
	action := rec.ReadAction
	if action == "" {
		action = "*/read"
	}
	if err := s.Authorize(ctx, r, action, rec.ResourceID); err != nil {
		return rec, err
	}
	return rec, nil
}

// ETag formats a store index as an entity tag.
func ETag(index uint64) string { return fmt.Sprintf(`W/"%d"`, index) }

// CheckPreconditions applies If-Match / If-None-Match to a write of a
// resource that exists (with current etag) or not.
func CheckPreconditions(r *Request, exists bool, etag uint64) error {
	cur := ETag(etag)
	if im := r.HTTP.Header.Get("If-Match"); im != "" {
		if !exists {
			return errPrecondition("The resource does not exist, so the If-Match condition '" + im + "' cannot be met.")
		}
		if im != "*" && !etagListHas(im, cur) {
			return errPrecondition("The If-Match condition '" + im + "' does not match the resource's current ETag '" + cur + "'.")
		}
	}
	if inm := r.HTTP.Header.Get("If-None-Match"); inm != "" && exists {
		if inm == "*" || etagListHas(inm, cur) {
			return errPrecondition("The resource already exists, so the If-None-Match condition '" + inm + "' is not met.")
		}
	}
	return nil
}

func etagListHas(list, tag string) bool {
	weak := strings.TrimPrefix(tag, "W/")
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if t == tag || strings.TrimPrefix(t, "W/") == weak {
			return true
		}
	}
	return false
}

// Page is one page of a list answer.
type Page struct {
	Value    []any  `json:"value"`
	NextLink string `json:"nextLink,omitempty"`
}

// Paginate cuts items (already in a stable order, with keys parallel to
// them) into the page selected by $skipToken and $top, with a nextLink to
// the following page.
func (s *Server) Paginate(r *Request, items []any, keys []string) (*Response, error) {
	size := s.PageSize
	if top := r.Query("$top"); top != "" {
		n, err := strconv.Atoi(top)
		if err != nil || n < 1 {
			return nil, resource.Errorf(resource.KindBadRequest, "InvalidTopParameter", "The value '%s' of $top is invalid: it must be a positive integer.", resource.Printable(top))
		}
		if n < size {
			size = n
		}
	}
	start := 0
	if tok := r.Query("$skipToken"); tok != "" {
		start = len(keys)
		for i, k := range keys {
			if k > tok {
				start = i
				break
			}
		}
	}
	end := start + size
	if end > len(items) {
		end = len(items)
	}
	page := Page{Value: items[start:end]}
	if page.Value == nil {
		page.Value = []any{}
	}
	if end < len(items) && r.Query("$top") == "" {
		q := r.HTTP.URL.Query()
		q.Set("$skipToken", keys[end-1])
		page.NextLink = r.URL(r.HTTP.URL.Path, q)
	}
	return JSON(http.StatusOK, page), nil
}

// subscriptionSegment returns the subscription ID a path starts with, or "".
func subscriptionSegment(path string) string {
	segs := splitPath(path)
	if len(segs) >= 2 && strings.EqualFold(segs[0], "subscriptions") {
		return segs[1]
	}
	return ""
}
