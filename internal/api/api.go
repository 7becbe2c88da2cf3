package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"coffer/internal/authorization"
	"coffer/internal/capacity"
	"coffer/internal/clock"
	"coffer/internal/identity"
	"coffer/internal/operation"
	"coffer/internal/resource"
)

// Authorizer is the decision point (authorization.Service): whether a
// principal may perform an action at a scope, and if not what it lacks.
type Authorizer interface {
	Decide(ctx context.Context, p identity.Principal, action, scope string) (authorization.Decision, error)
}

// Route is one entry of the route table.
type Route struct {
	// Method and Pattern, e.g. "GET" and
	// "/subscriptions/{sub}/resourceGroups/{rg}". A leading "{scope...}"
	// captures a multi-segment scope.
	Method  string
	Pattern string
	// Type is the ARM resource type for api-version messages.
	Type string
	// Versions are the accepted api-versions; nil means the route does not
	// take one (OAuth, health, metrics).
	Versions []string
	// Who may call the route: every route declares exactly one of
	// Anonymous, Action, TenantAction and Checks (Handle panics
	// otherwise), so that no route can leave its caller unauthorized.
	//
	// Anonymous routes need no token.
	Anonymous bool
	// OptionalAuth, on an anonymous route, authenticates a request that
	// sends a token (a bad one is refused) and leaves one without a token
	// anonymous: /metrics adds per-resource series for an authenticated
	// scrape.
	OptionalAuth bool
	// Action is the RBAC action checked at Scope(r), through the decision
	// point, before the body is read and the handler runs.
	Action string
	// Scope returns the scope to authorize at; nil means the request path.
	Scope func(r *Request) string
	// TenantAction is a tenant-level action (only tenant administrators
	// hold it) checked at "/" before the handler runs, unless Self says
	// the caller acts on itself.
	TenantAction string
	Self         func(r *Request) bool
	// Checks says, for a route whose rule depends on what the request
	// reads (the caller's own tokens, an operation's creator, the
	// subscriptions a principal may see), which rule the domain operation
	// or the handler applies through the decision point.
	Checks string
	// MaxBody overrides the server's request body limit.
	MaxBody int64
	// Validate checks the path (names by Azure's rules) before anything
	// else, so a malformed name is a 400 rather than a 403 or 404.
	Validate func(r *Request) error
	// Raw routes get the request body unread (page uploads stream it).
	Raw bool
	// Stores marks a POST that stores new data (a backup, a restore): like
	// every PUT and PATCH it is refused with 507 InsufficientStorage while
	// the data filesystem's free space is below the reserve (Server.Space).
	Stores bool
	// Filter says the handler reads $filter; every other route refuses
	// one (400 InvalidFilter) rather than answer as if it were not there.
	Filter bool
	// Volume, when set, names the live disk whose volume the request acts
	// on (false: none): with several nodes, the request is served by the
	// node that holds it (Server.Forwarder), after this node has
	// authenticated and authorized it and read its body.
	Volume func(r *Request) (Volume, bool)
	Handle func(ctx context.Context, r *Request) (*Response, error)

	pat pattern
}

// Request is what a handler receives.
type Request struct {
	HTTP       *http.Request
	Vars       map[string]string
	Principal  identity.Principal
	Claims     identity.Claims
	Token      string
	APIVersion string
	Body       []byte
	RequestID  string
	// BaseURL is the server's public endpoint (Server.Endpoint), the base
	// of every absolute URL in the answer.
	BaseURL string
	// Path is the request path without a trailing slash.
	Path string
}

// Var returns a captured path variable.
func (r *Request) Var(name string) string { return r.Vars[name] }

// Query returns a query parameter.
func (r *Request) Query(name string) string { return r.HTTP.URL.Query().Get(name) }

// ID parses the request path as a resource ID.
func (r *Request) ID() resource.ID {
	id, err := resource.Parse(r.Path)
	if err != nil {
		return resource.ID{}
	}
	return id
}

// Decode decodes the JSON body into v. Unknown fields are ignored (as ARM
// does); malformed JSON or a value of the wrong type is a 400
// InvalidRequestContent naming the field. An empty body is an error unless
// allowEmpty.
func (r *Request) Decode(v any) error {
	return DecodeJSON(r.Body, v)
}

// DecodeJSON is the decoder used for every request body.
func DecodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errInvalidContent("the request body is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return errInvalidContent(fmt.Sprintf("the value of '%s' must be of type %s, not %s", te.Field, te.Type, te.Value)).WithTarget(te.Field)
		case errors.As(err, &se):
			return errInvalidContent(fmt.Sprintf("malformed JSON at offset %d: %v", se.Offset, se))
		}
		return errInvalidContent(err.Error())
	}
	if dec.More() {
		return errInvalidContent("unexpected data after the JSON value")
	}
	return nil
}

// Response is what a handler returns.
type Response struct {
	Status int
	Body   any // JSON-encoded; []byte is sent as-is; nil sends no body
	Header http.Header
}

// JSON returns a response with a JSON body.
func JSON(status int, body any) *Response { return &Response{Status: status, Body: body} }

// SetHeader sets a response header and returns the response.
func (r *Response) SetHeader(k, v string) *Response {
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.Header.Set(k, v)
	return r
}

// Server serves the route table.
type Server struct {
	Identity   *identity.Service
	Authorizer Authorizer
	Clock      clock.Clock
	Logger     *slog.Logger
	// MaxBody is the default request body limit (bytes).
	MaxBody int64
	// TenantID is used in WWW-Authenticate challenges.
	TenantID string
	// PageSize is the number of items per list page.
	PageSize int
	// Endpoint is the public URL of the API (scheme://host[:port], as
	// server.Server.Endpoint says): every absolute URL in an answer is
	// built from it, never from the request's Host header.
	Endpoint string

	// Operations serves operation-status and -result polls.
	Operations *operation.Manager
	// Space, when set, refuses requests that store new data while free
	// space is below its reserve (see Route.Stores).
	Space *capacity.Monitor
	// Forwarder, when set, serves the requests of routes that act on a
	// live volume on the node that holds it (Route.Volume).
	Forwarder Forwarder

	routes  []*Route
	results map[string]ResultFunc
	metrics *metrics
}

// NewServer returns a Server with defaults.
func NewServer(id *identity.Service, authz Authorizer, clk clock.Clock, logger *slog.Logger) *Server {
	return &Server{Identity: id, Authorizer: authz, Clock: clk, Logger: logger, MaxBody: 4 << 20,
		TenantID: id.TenantID, PageSize: 100, metrics: newMetrics()}
}

// Handle adds routes. It panics on a route that does not declare who may
// call it (see Route.Anonymous).
func (s *Server) Handle(routes ...Route) {
	for i := range routes {
		r := routes[i]
		if err := r.checkAccess(); err != nil {
			panic(err)
		}
		r.pat = parsePattern(r.Pattern)
		s.routes = append(s.routes, &r)
	}
}

// checkAccess reports a route that declares none, or more than one, of the
// ways of authorizing its caller.
func (r *Route) checkAccess() error {
	n := 0
	for _, set := range []bool{r.Anonymous, r.Action != "", r.TenantAction != "", r.Checks != ""} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return fmt.Errorf("api: route %s %s declares %d of Anonymous, Action, TenantAction and Checks; it must declare exactly one", r.Method, r.Pattern, n)
	case r.Self != nil && r.TenantAction == "":
		return fmt.Errorf("api: route %s %s has Self without a TenantAction", r.Method, r.Pattern)
	case r.TenantAction != "" && !authorization.IsTenantAction(r.TenantAction):
		return fmt.Errorf("api: route %s %s: %s is not a tenant-level action", r.Method, r.Pattern, r.TenantAction)
	case r.Action != "" && authorization.IsTenantAction(r.Action):
		return fmt.Errorf("api: route %s %s: %s is a tenant-level action: declare it as TenantAction", r.Method, r.Pattern, r.Action)
	}
	return nil
}

// lookup finds the best route for a path: among matching patterns the one
// with the most literal segments wins. It also reports whether the path
// matched any route with another method.
func (s *Server) lookup(method string, segs []string) (*Route, map[string]string, bool) {
	var best *Route
	var bestVars map[string]string
	otherMethod := false
	for _, rt := range s.routes {
		vars := map[string]string{}
		if !rt.pat.match(segs, vars) {
			continue
		}
		if rt.Method != method {
			otherMethod = true
			continue
		}
		if best == nil || rt.pat.literals > best.pat.literals ||
			(rt.pat.literals == best.pat.literals && rt.pat.scopeVar == "" && best.pat.scopeVar != "") {
			best, bestVars = rt, vars
		}
	}
	return best, bestVars, otherMethod
}

type ctxKey int

const requestIDKey ctxKey = 0

// RequestID returns the request ID carried by ctx, if any.
func RequestID(ctx context.Context) string {
	s, _ := ctx.Value(requestIDKey).(string)
	return s
}

// ServeHTTP dispatches a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	start := s.Clock.Now()
	reqID := identity.NewGUID()
	corr := hr.Header.Get("x-ms-correlation-request-id")
	if corr == "" {
		corr = hr.Header.Get("x-ms-client-request-id")
	}
	if corr == "" {
		corr = reqID
	}
	h := w.Header()
	h.Set("x-ms-request-id", reqID)
	h.Set("x-ms-correlation-request-id", corr)
	if cid := hr.Header.Get("x-ms-client-request-id"); cid != "" {
		h.Set("x-ms-client-request-id", cid)
	}
	ctx := context.WithValue(hr.Context(), requestIDKey, reqID)
	hr = hr.WithContext(ctx)

	path := strings.TrimSuffix(hr.URL.Path, "/")
	if path == "" {
		path = "/"
	}
	segs := splitPath(path)
	method := hr.Method
	if method == http.MethodHead {
		method = http.MethodHead
	}
	rt, vars, other := s.lookup(method, segs)
	routeName := "unmatched"
	if rt != nil {
		routeName = rt.Method + " " + rt.Pattern
	}
	rec := &statusRecorder{ResponseWriter: w}
	var req *Request
	defer func() {
		d := s.Clock.Now().Sub(start)
		s.metrics.observe(routeName, rec.status(), d)
		principal := ""
		if req != nil {
			principal = req.Principal.ID
		}
		s.logger().Debug("request", "id", reqID, "method", hr.Method, "path", hr.URL.Path, "route", routeName,
			"status", rec.status(), "duration", d, "principal", principal, "remote", hr.RemoteAddr)
	}()
	if rt == nil {
		if other {
			s.writeError(ctx, rec, errMethodNotAllowed(hr.Method, hr.URL.Path))
			return
		}
		s.writeError(ctx, rec, errNotFoundRoute(hr.URL.Path))
		return
	}
	req = &Request{HTTP: hr, Vars: vars, RequestID: reqID, BaseURL: s.Endpoint, Path: path}
	resp, err := s.serve(ctx, rt, req, rec)
	if err != nil {
		s.auditRefusal(ctx, hr, req, reqID, err)
		s.writeError(ctx, rec, err)
		return
	}
	if resp == nil { // the handler wrote the response itself
		return
	}
	s.writeResponse(rec, resp)
}

func (s *Server) serve(ctx context.Context, rt *Route, req *Request, w http.ResponseWriter) (*Response, error) {
	if rt.Versions != nil {
		v := req.HTTP.URL.Query().Get("api-version")
		if v == "" {
			return nil, errMissingAPIVersion()
		}
		if !slices.Contains(rt.Versions, v) {
			return nil, errInvalidAPIVersion(v, rt.Type, strings.Join(rt.Versions, ", "))
		}
		req.APIVersion = v
	}
	if f, ok := req.HTTP.URL.Query()["$filter"]; ok && !rt.Filter {
		return nil, resource.InvalidFilter(strings.Join(f, " "), "this operation takes no $filter")
	}
	if rt.Validate != nil {
		if err := rt.Validate(req); err != nil {
			return nil, err
		}
	}
	if rt.Anonymous && rt.OptionalAuth && req.HTTP.Header.Get("Authorization") != "" {
		if err := s.authenticate(ctx, req, w); err != nil {
			return nil, err
		}
	}
	if !rt.Anonymous {
		if err := s.authenticate(ctx, req, w); err != nil {
			return nil, err
		}
		ctx = identity.WithPrincipal(ctx, req.Principal)
		switch {
		case rt.Action != "":
			scope := req.Path
			if rt.Scope != nil {
				scope = rt.Scope(req)
			}
			if err := s.Authorize(ctx, req, rt.Action, scope); err != nil {
				return nil, err
			}
		case rt.TenantAction != "" && (rt.Self == nil || !rt.Self(req)):
			if err := s.Authorize(ctx, req, rt.TenantAction, authorization.TenantScope); err != nil {
				return nil, err
			}
		}
	}
	if !rt.Raw {
		limit := s.MaxBody
		if rt.MaxBody > 0 {
			limit = rt.MaxBody
		}
		if req.HTTP.ContentLength > limit {
			return nil, errTooLarge(limit)
		}
		body, err := io.ReadAll(io.LimitReader(req.HTTP.Body, limit+1))
		if err != nil {
			return nil, errInvalidContent("reading the body failed: " + err.Error())
		}
		if int64(len(body)) > limit {
			return nil, errTooLarge(limit)
		}
		req.Body = body
	}
	if rt.Method == http.MethodPut || rt.Method == http.MethodPatch {
		if ct := req.HTTP.Header.Get("Content-Type"); len(req.Body) > 0 && ct != "" && !strings.Contains(strings.ToLower(ct), "json") && !rt.Raw {
			return nil, resource.Errorf(resource.KindBadRequest, "UnsupportedMediaType",
				"The content media type '%s' is not supported. Only 'application/json' is supported.", ct)
		}
	}
	// A request for a volume another node holds is served there, with
	// that node's free space.
	if done, err := s.forward(ctx, rt, req, w); done || err != nil {
		return nil, err
	}
	if !rt.Anonymous && (rt.Method == http.MethodPut || rt.Method == http.MethodPatch || rt.Stores) {
		if err := s.Space.Check(); err != nil {
			return nil, err
		}
	}
	return rt.Handle(ctx, req)
}

// authenticate checks the bearer token.
func (s *Server) authenticate(ctx context.Context, req *Request, w http.ResponseWriter) error {
	challenge := func(code, desc string) error {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization_uri="%s/%s", error="invalid_token", error_description="%s"`,
			req.BaseURL, s.TenantID, strings.ReplaceAll(desc, `"`, `'`)))
		return resource.Errorf(resource.KindUnauthorized, code, "%s", desc)
	}
	auth := req.HTTP.Header.Get("Authorization")
	if auth == "" {
		return challenge("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
	}
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return challenge("AuthenticationFailed", "Authentication failed. The 'Authorization' header is provided in an invalid format.")
	}
	tok = strings.TrimSpace(tok)
	p, c, err := s.Identity.Authenticate(ctx, tok)
	switch {
	case err == nil:
	case errors.Is(err, identity.ErrExpiredToken):
		return challenge("ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than current UTC time.")
	case errors.Is(err, identity.ErrRevokedToken):
		return challenge("InvalidAuthenticationToken", "The access token has been revoked.")
	case errors.Is(err, identity.ErrUnknownSubject):
		return challenge("InvalidAuthenticationToken", "The access token's principal no longer exists.")
	case errors.Is(err, identity.ErrMalformedToken), errors.Is(err, identity.ErrBadSignature):
		return challenge("InvalidAuthenticationToken", "The access token is invalid.")
	case errors.Is(err, identity.ErrInvalidClaim):
		var ce *identity.ClaimError
		if errors.As(err, &ce) {
			return challenge("InvalidAuthenticationToken", fmt.Sprintf("The access token is invalid: its '%s' claim %s.", ce.Claim, ce.Reason))
		}
		return challenge("InvalidAuthenticationToken", "The access token is invalid.")
	default:
		return fmt.Errorf("authenticate: %w", err)
	}
	req.Principal, req.Claims, req.Token = p, c, tok
	return nil
}

// Authorize asks the decision point whether the request's principal may
// perform action at scope: nil if it may, else Azure's 403
// AuthorizationFailed (a 400 InvalidScope for a scope that is not one).
// The route table calls it for every route's declared action; handlers
// call it for the rules Route.Checks describes.
func (s *Server) Authorize(ctx context.Context, req *Request, action, scope string) error {
	d, err := s.Authorizer.Decide(ctx, req.Principal, action, scope)
	if e := resource.AsError(err); e != nil && e.Kind == resource.KindBadRequest {
		return e
	}
	if err != nil {
		return fmt.Errorf("authorize %s at %s: %w", action, scope, err)
	}
	if !d.Allowed {
		return authorization.Forbidden(req.Principal, d)
	}
	return nil
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// ErrorBody is ARM's error envelope.
type ErrorBody struct {
	Error *resource.Error `json:"error"`
}

func (s *Server) writeError(ctx context.Context, w http.ResponseWriter, err error) {
	e := resource.AsError(err)
	if e == nil {
		s.logger().Error("request failed", "id", RequestID(ctx), "err", err)
		e = errInternal()
	} else if e.Kind == resource.KindInternal {
		s.logger().Error("request failed", "id", RequestID(ctx), "code", e.Code, "err", err)
	} else if e.Kind == resource.KindInsufficientStorage {
		s.logger().Warn("request failed: no space on the data filesystem", "id", RequestID(ctx), "err", err)
	} else {
		s.logger().Debug("request refused", "id", RequestID(ctx), "code", e.Code, "message", e.Message)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("x-ms-error-code", e.Code)
	w.WriteHeader(StatusOf(e.Kind))
	json.NewEncoder(w).Encode(ErrorBody{Error: e})
}

// WriteError writes err as an ARM error body (for handlers that write
// their own responses).
func (s *Server) WriteError(ctx context.Context, w http.ResponseWriter, err error) {
	s.writeError(ctx, w, err)
}

func (s *Server) writeResponse(w http.ResponseWriter, resp *Response) {
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	switch b := resp.Body.(type) {
	case nil:
		w.WriteHeader(status)
	case []byte:
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(status)
		w.Write(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			s.logger().Error("encode response", "err", err)
			s.writeError(context.Background(), w, errInternal())
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(status)
		w.Write(data)
	}
}

// URL returns an absolute URL on this server for path with the query.
func (r *Request) URL(path string, q url.Values) string {
	u := r.BaseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(c int) {
	if s.code == 0 {
		s.code = c
	}
	s.ResponseWriter.WriteHeader(c)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// Flush lets streaming handlers flush.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// since is used by handlers that report durations.
func since(c clock.Clock, t time.Time) time.Duration { return c.Now().Sub(t) }
