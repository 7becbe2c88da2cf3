package portal

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"coffer/internal/clock"
	"coffer/internal/identity"
)

// Failed sign-ins are limited per client ID and per remote address:
// after signinMaxFailures within signinWindow, sign-in is refused until
// the oldest of them leaves the window.
const (
	signinMaxFailures = 5
	signinWindow      = 15 * time.Minute
)

type signinPage struct {
	ClientID string
	Next     string
	Error    string
}

func (p *Portal) signinPage(rq *Request) error {
	s := rq.Session
	if s != nil && s.PrincipalID != "" {
		http.Redirect(rq.W, rq.R, "/", http.StatusSeeOther)
		return nil
	}
	if s == nil {
		rq.signinCSRF = p.signinTokens.forForm(rq.W, rq.R, p.cfg.Secure)
	}
	return rq.Render("signin", signinPage{Next: localPath(rq.R.URL.Query().Get("next"))})
}

// signin checks a client ID and secret (a service principal's, or the
// admin's from admin.json) and starts a signed-in session with a new ID
// and CSRF token.
func (p *Portal) signin(rq *Request) error {
	clientID := strings.TrimSpace(rq.R.PostFormValue("client_id"))
	secret := rq.R.PostFormValue("client_secret")
	page := signinPage{ClientID: clientID, Next: localPath(rq.R.PostFormValue("next"))}
	if rq.Session == nil {
		// The form shown again carries the token just checked.
		rq.signinCSRF = p.signinTokens.cookie(rq.R)
	}
	addr := remoteHost(rq.R)
	if wait := p.limiter.blocked(addr, clientID); wait > 0 {
		rq.Status(http.StatusTooManyRequests)
		page.Error = "Too many failed sign-ins. Try again in " + wait.Round(time.Minute).String() + "."
		return rq.Render("signin", page)
	}
	pr, err := p.cfg.Identity.CheckClientSecret(rq.Context(), clientID, secret)
	if errors.Is(err, identity.ErrInvalidClient) || (err == nil && clientID == "") {
		p.limiter.fail(addr, clientID)
		p.log.Info("portal sign-in refused", "clientId", clientID, "remote", addr)
		rq.Status(http.StatusUnauthorized)
		page.Error = "The client ID or secret is not valid."
		return rq.Render("signin", page)
	}
	if err != nil {
		return err
	}
	// A new session with a new ID: one the browser held (another
	// principal's, or an ID another party planted) ends, and so does the
	// sign-in form's token.
	if err := p.sessions.end(rq.Context(), rq.W, rq.R, p.cfg.Secure); err != nil {
		return err
	}
	p.signinTokens.clear(rq.W, p.cfg.Secure)
	if _, err := p.sessions.start(rq.Context(), rq.W, pr.ID, p.cfg.Secure); err != nil {
		return err
	}
	next := page.Next
	if next == "" {
		next = "/"
	}
	http.Redirect(rq.W, rq.R, next, http.StatusSeeOther)
	return nil
}

func (p *Portal) signout(rq *Request) error {
	if err := p.sessions.end(rq.Context(), rq.W, rq.R, p.cfg.Secure); err != nil {
		return err
	}
	http.Redirect(rq.W, rq.R, "/signin", http.StatusSeeOther)
	return nil
}

// localPath returns next when it is a path of this server (so that the
// sign-in page cannot send a browser elsewhere), else "".
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\r\n") {
		return ""
	}
	return next
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// signinLimiter counts failed sign-ins per remote address and per client
// ID over a sliding window.
type signinLimiter struct {
	clk clock.Clock
	mu  sync.Mutex
	m   map[string][]time.Time
}

func newSigninLimiter(clk clock.Clock) *signinLimiter {
	return &signinLimiter{clk: clk, m: map[string][]time.Time{}}
}

func limiterKeys(addr, clientID string) []string {
	return []string{"addr:" + addr, "client:" + strings.ToLower(clientID)}
}

// blocked returns how long sign-ins from addr or for clientID stay
// refused (0: not refused).
func (l *signinLimiter) blocked(addr, clientID string) time.Duration {
	now := l.clk.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range limiterKeys(addr, clientID) {
		fs := l.prune(k, now)
		if len(fs) >= signinMaxFailures {
			wait = max(wait, fs[len(fs)-signinMaxFailures].Add(signinWindow).Sub(now))
		}
	}
	return wait
}

func (l *signinLimiter) fail(addr, clientID string) {
	now := l.clk.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range limiterKeys(addr, clientID) {
		l.m[k] = append(l.prune(k, now), now)
	}
}

// prune drops failures older than the window (mu held).
func (l *signinLimiter) prune(k string, now time.Time) []time.Time {
	fs := l.m[k]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) >= signinWindow {
		i++
	}
	fs = fs[i:]
	if len(fs) == 0 {
		delete(l.m, k)
		return nil
	}
	l.m[k] = fs
	return fs
}
