// Package portal is Coffer's web portal: server-rendered pages at the root
// of the server for every backup and restore flow (overview, vaults,
// policies, protection, backup instances, jobs, recovery, disks). It calls
// the same domain services as the ARM API (internal/api) and authorizes
// through the same decision point (authorization.Service); it never calls
// the API over HTTP and never restates an authorization rule. It owns the
// portal's sessions, sign-in, CSRF protection, security headers,
// templates and assets.
//
// # Conventions
//
// Pages. Each page is a handler func(*Request) error registered in
// Portal.routes with p.page("GET /vaults", p.vaults) (signed-in pages) or
// p.public (the sign-in page). A handler returns an error rather than
// writing one: a domain *resource.Error is shown with the API's status and
// message (a refusal by the decision point is the API's 403
// AuthorizationFailed), anything else as a 500 whose cause is logged.
//
// Views. A view is templates/NAME.html, defining "title" and "content"
// (and optionally "head"). At New every view is parsed once, with
// templates/layout.html and templates/parts.html, into its own set; a
// handler renders it with rq.Render("NAME", data), where the template sees
// the view data as .Page and the layout's fields (.User, .CSRF, .Flash,
// .Nav …) at the root. Adding a view is adding its file and a route.
//
// Forms. Every state-changing request is a POST of a form that carries the
// session's CSRF token ({{template "csrf" $}} inside the form). The portal
// refuses any POST, PUT, PATCH or DELETE whose token does not match its
// session with 403 before the handler runs. The sign-in form, which has no
// session, carries a stateless token instead (signintoken.go): a visit to
// the sign-in page writes nothing to the store. A handler that succeeds
// redirects (rq.Redirect(url, flash)): post/redirect/get. A handler whose
// input is refused re-renders its form with the error (rq.Status(400)).
//
// Authorization. A page decides what its principal may do with rq.Can
// (action, scope) — the domain's action constants, the decision point's
// Decide — which returns a Control; {{template "submit" (button "Create"
// .Page.Create)}} renders it as a button, disabled with the missing action
// and scope as its reason when refused; {{template "post" (post "Cancel"
// URL .Page.Cancel $.CSRF)}} renders a one-button form. The handler that
// performs the change calls rq.Require(action, scope) first, which refuses a
// forced request exactly as the API does (authorization.Forbidden). Lists
// show only what the principal may read (authorization.Visible).
//
// Scripting. Every form shows its CLI equivalent ({{template "cli" CLI}},
// built with Command so that what is shown is what the coffer CLI takes),
// and every resource page the JSON view of its ARM body ({{template "json"
// (jsonView RESOURCE)}}), the wire shape the API returns.
//
// JavaScript (assets/portal.js) only adds copy buttons, auto-refresh of
// pages showing running work (rq.Refresh) and the live CLI equivalent;
// every page works without it. The Content-Security-Policy forbids inline
// script and inline style.
package portal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"coffer/internal/api"
	"coffer/internal/authorization"
	"coffer/internal/clock"
	"coffer/internal/compute"
	"coffer/internal/dataprotection"
	"coffer/internal/identity"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/tenant"
)

// Config is what the portal serves from: the domain services, shared
// with the API, and a few settings.
type Config struct {
	Identity       *identity.Service
	Authz          *authorization.Service
	Tenant         *tenant.Service
	DataProtection *dataprotection.Service
	Compute        *compute.Service
	// Store is the metadata store the API's services use; the portal keeps
	// its sessions there, so that every node sharing it serves them.
	Store  store.Store
	Clock  clock.Clock
	Logger *slog.Logger
	// Endpoint is the server's public endpoint (shown in CLI equivalents
	// and used for NBD and upload URLs).
	Endpoint string
	// NBDAddress returns the address of the NBD listener that serves the
	// disk or snapshot resourceID ("" when not serving NBD; resourceID ""
	// asks for this node's); NBDTLS says it requires TLS.
	NBDAddress func(ctx context.Context, resourceID string) string
	NBDTLS     bool
	// Storage reports the storage engine's usage for the overview (nil:
	// not shown).
	Storage func(ctx context.Context) (StorageUsage, error)
	// Secure marks the session cookie Secure (the server serves TLS).
	Secure bool
	// Forwarder, when set (several nodes share the metadata store),
	// serves an action on a disk's volume or grants (and the creation of
	// a disk, placed as the API places one) on the node that holds it:
	// the server's one forwarder, which the API uses too.
	Forwarder api.Forwarder
	// SigninKey MACs the sign-in form's CSRF tokens (signinTokens): every
	// node sharing Store must be given the same key (the server gives the
	// secret the nodes share), so that a form served by one node may be
	// posted to another. Nil: a random key of this process (one node, whose
	// open sign-in forms do not outlive a restart).
	SigninKey []byte
	// SessionIdle and SessionMax bound a session's life: it ends after
	// SessionIdle without a request and SessionMax after sign-in (zero:
	// DefaultSessionIdle, DefaultSessionMax).
	SessionIdle, SessionMax time.Duration
}

// Portal is the web portal's handler.
type Portal struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	views    map[string]*viewSet
	assets   *assets
	sessions *sessions
	limiter  *signinLimiter
	// signinTokens protects the sign-in form without a session.
	signinTokens signinTokens
	patterns     []string
}

// New parses the templates, fingerprints the assets and builds the routes.
func New(cfg Config) (*Portal, error) {
	if cfg.Store == nil {
		return nil, errors.New("portal: no metadata store for sessions")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NBDAddress == nil {
		cfg.NBDAddress = func(context.Context, string) string { return "" }
	}
	if cfg.SessionIdle == 0 {
		cfg.SessionIdle = DefaultSessionIdle
	}
	if cfg.SessionMax == 0 {
		cfg.SessionMax = DefaultSessionMax
	}
	if cfg.SigninKey == nil {
		cfg.SigninKey = []byte(randomToken())
	}
	p := &Portal{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(),
		sessions:     newSessions(cfg.Store, cfg.Clock, cfg.SessionIdle, cfg.SessionMax),
		limiter:      newSigninLimiter(cfg.Store, cfg.Clock),
		signinTokens: signinTokens{key: cfg.SigninKey, clk: cfg.Clock, secure: cfg.Secure}}
	p.sessions.secure = cfg.Secure
	var err error
	if p.assets, err = loadAssets(); err != nil {
		return nil, err
	}
	if p.views, err = parseViews(p.assets); err != nil {
		return nil, err
	}
	p.routes()
	return p, nil
}

// routes registers every page. Nav entries of pages still being built
// point at routes their files add (policies, protect, instances, recover).
func (p *Portal) routes() {
	p.mux.HandleFunc("GET /assets/{name}", p.serveAsset)
	p.public("GET /signin", p.signinPage)
	p.public("POST /signin", p.signin)
	p.public("POST /signout", p.signout)
	p.page("GET /{$}", p.overview)
	p.page("GET /protectable", p.protectable)
	p.vaultRoutes()
	p.jobRoutes()
	p.diskRoutes()
	for _, extra := range extraRoutes {
		extra(p)
	}
}

// extraRoutes lets a page's file register its routes from an init
// function (func init() { extraRoutes = append(extraRoutes,
// (*Portal).policyRoutes) }), so that pages built in parallel do not edit
// the same lines of routes.
var extraRoutes []func(*Portal)

// Routes are the patterns of the portal's pages ("POST /vaults", "GET
// /jobs/{sub}/{rg}/{vault}/{id}" …), for tests that walk them.
func (p *Portal) Routes() []string { return slices.Clone(p.patterns) }

// Owns reports whether r is for the portal (a page, an asset, sign-in)
// rather than for the ARM API the server serves alongside it.
func (p *Portal) Owns(r *http.Request) bool {
	_, pattern := p.mux.Handler(r)
	return pattern != ""
}

// ServeHTTP serves the portal, with its security headers on every answer.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	p.mux.ServeHTTP(w, r)
}

// contentSecurityPolicy allows only the portal's own script, style and
// images (SVG charts are inline markup, not script), no framing, and forms
// that post only to the portal.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// setSecurityHeaders sets the headers every portal answer carries.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// Request is what a page handler gets: the HTTP exchange, the session and
// its signed-in principal.
type Request struct {
	W         http.ResponseWriter
	R         *http.Request
	Session   *Session
	Principal identity.Principal

	p        *Portal
	status   int
	refresh  int
	decideEr error
	// signinCSRF is the sign-in form's token, rendered as .CSRF when
	// there is no session.
	signinCSRF string
}

// Context is the request's context.
func (rq *Request) Context() context.Context { return rq.R.Context() }

// Status sets the status of the page Render writes (default 200).
func (rq *Request) Status(code int) { rq.status = code }

// Refresh makes the rendered page reload itself every seconds while it
// shows running work (with JavaScript; a Refresh link works without).
func (rq *Request) Refresh(seconds int) { rq.refresh = seconds }

// Redirect answers a POST with 303 See Other to url, showing flash there.
func (rq *Request) Redirect(url, flash string) error {
	if flash != "" {
		// Stored: the page redirected to may be served by another node.
		if err := rq.p.sessions.setFlash(rq.Context(), rq.Session, flash); err != nil {
			return err
		}
	}
	http.Redirect(rq.W, rq.R, url, http.StatusSeeOther)
	return nil
}

// Caller is the principal as dataprotection stamps it in systemData.
func (rq *Request) Caller() dataprotection.Caller {
	return dataprotection.Caller{Name: rq.Principal.Name(), Type: rq.Principal.TypeName()}
}

type handlerFunc func(*Request) error

// handle registers pattern: every answer is not to be cached, a
// state-changing request must carry its session's CSRF token, and then
// serve runs with the request's live session (nil if none).
func (p *Portal) handle(pattern string, public bool, serve func(http.ResponseWriter, *http.Request, *Session)) {
	p.patterns = append(p.patterns, pattern)
	p.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		s, err := p.sessions.get(r.Context(), r)
		if err != nil {
			p.log.Error("portal: read the session", "err", err)
			http.Error(w, "The server could not read your session; try again.", http.StatusInternalServerError)
			return
		}
		if !p.checkCSRF(w, r, s, public) {
			return
		}
		serve(w, r, s)
	})
}

// page registers a signed-in page: without a live session a GET is
// redirected to the sign-in page and anything else refused.
func (p *Portal) page(pattern string, h handlerFunc) {
	p.handle(pattern, false, func(w http.ResponseWriter, r *http.Request, s *Session) {
		var pr identity.Principal
		var err error
		if s != nil && s.PrincipalID != "" {
			pr, err = p.cfg.Identity.Get(r.Context(), s.PrincipalID)
			switch {
			case errors.Is(err, identity.ErrNotFound):
				// The principal was deleted: its session ends.
				if err := p.sessions.end(r.Context(), w, r, p.cfg.Secure); err != nil {
					p.log.Error("portal: end the session of a deleted principal", "principal", s.PrincipalID, "err", err)
				}
				s = nil
			case err != nil:
				p.log.Error("portal: read the signed-in principal", "principal", s.PrincipalID, "err", err)
				http.Error(w, "The server could not read your principal; try again.", http.StatusInternalServerError)
				return
			}
		}
		if s == nil || s.PrincipalID == "" {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "Sign in first.", http.StatusForbidden)
			return
		}
		p.serve(w, r, s, pr, h)
	})
}

// public registers a page that needs no sign-in (but, for a POST, the
// session's CSRF token or, without a session, the sign-in form's).
func (p *Portal) public(pattern string, h handlerFunc) {
	p.handle(pattern, true, func(w http.ResponseWriter, r *http.Request, s *Session) {
		p.serve(w, r, s, identity.Principal{}, h)
	})
}

func (p *Portal) serve(w http.ResponseWriter, r *http.Request, s *Session, pr identity.Principal, h handlerFunc) {
	rq := &Request{W: w, R: r, Session: s, Principal: pr, p: p}
	if err := h(rq); err != nil {
		p.fail(rq, err)
	}
}

// fail shows a handler's error: the domain's message with the API's
// status, or a 500 whose cause is logged and not shown.
func (p *Portal) fail(rq *Request, err error) {
	status := http.StatusInternalServerError
	msg := "Something went wrong on the server; the error has been logged."
	code := ""
	if e := resource.AsError(err); e != nil && e.Kind != resource.KindInternal {
		status, msg, code = api.StatusOf(e.Kind), e.Message, e.Code
	} else if errors.Is(err, context.Canceled) {
		return
	} else {
		p.log.Error("portal page failed", "path", rq.R.URL.Path, "err", err)
	}
	rq.status = status
	if rerr := rq.Render("error", errorPage{Status: status, Code: code, Message: msg}); rerr != nil {
		p.log.Error("render the error page", "err", rerr)
	}
}

type errorPage struct {
	Status  int
	Code    string
	Message string
}

// Can asks the decision point whether the signed-in principal may perform
// action at scope, for a page to offer or disable what it would do.
func (rq *Request) Can(action, scope string) Control {
	return rq.CanAll(authorization.Need{Action: action, Scope: scope})
}

// CanAll is Can for an operation that needs several actions.
func (rq *Request) CanAll(needs ...authorization.Need) Control {
	d, err := rq.p.cfg.Authz.DecideAll(rq.Context(), rq.Principal, needs...)
	if err != nil {
		// Rendering fails with it (see Render): a page never shows a
		// control whose decision was not made.
		if rq.decideEr == nil {
			rq.decideEr = fmt.Errorf("decide %v: %w", needs, err)
		}
		return Control{Reason: "could not be decided"}
	}
	return Control{Allowed: d.Allowed, Reason: d.Reason()}
}

// Require refuses the request as the API would (403 AuthorizationFailed,
// naming the missing action and scope) unless the principal may perform
// every need. Every handler that changes something calls it before it
// reads the form.
func (rq *Request) Require(needs ...authorization.Need) error {
	return rq.p.cfg.Authz.RequireAll(rq.Context(), rq.Principal, needs...)
}

// Need is shorthand for an authorization.Need.
func Need(action, scope string) authorization.Need {
	return authorization.Need{Action: action, Scope: scope}
}

// Control is a decided action as a page shows it: allowed, or disabled
// with the reason (the missing action and scope).
type Control struct {
	Allowed bool
	Reason  string
}

// Allow is a Control for something every signed-in principal may do.
var Allow = Control{Allowed: true}

// subscriptions returns the subscriptions the principal may see.
func (rq *Request) subscriptions() ([]tenant.Subscription, error) {
	return rq.p.cfg.Tenant.VisibleSubscriptions(rq.Context(), rq.Principal)
}
