package portal

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"coffer/internal/clock"
)

// Session lives, and expires, defaults.
const (
	DefaultSessionIdle = 30 * time.Minute
	DefaultSessionMax  = 12 * time.Hour
)

// cookieName is the session cookie's name; under TLS it takes the
// __Host- prefix, which browsers accept only Secure, for path / and
// without a Domain.
func cookieName(secure bool) string {
	if secure {
		return "__Host-coffer_session"
	}
	return "coffer_session"
}

// csrfField is the form field that carries the CSRF token.
const csrfField = "csrf"

// Session is a browser's session: anonymous (the sign-in page's, for its
// CSRF token) or signed in. The store keys it by the hash of the random
// ID its cookie carries, so that the store holds nothing a cookie can be
// made from.
type Session struct {
	// PrincipalID is the signed-in principal ("" while anonymous).
	PrincipalID string
	// CSRF is the synchronizer token every state-changing request of the
	// session must carry.
	CSRF string

	key     [32]byte
	created time.Time
	seen    time.Time
	flash   string
}

// sessions is the server-side session store (in memory: a restart signs
// everyone out).
type sessions struct {
	clk            clock.Clock
	idle, absolute time.Duration

	mu sync.Mutex
	m  map[[32]byte]*Session
}

func newSessions(clk clock.Clock, idle, absolute time.Duration) *sessions {
	return &sessions{clk: clk, idle: idle, absolute: absolute, m: map[[32]byte]*Session{}}
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// start creates a session (signed in when principalID is set), sets its
// cookie and returns it.
func (ss *sessions) start(w http.ResponseWriter, principalID string, secure bool) *Session {
	id := randomToken()
	now := ss.clk.Now()
	s := &Session{PrincipalID: principalID, CSRF: randomToken(), key: sha256.Sum256([]byte(id)), created: now, seen: now}
	ss.mu.Lock()
	ss.sweep(now)
	ss.m[s.key] = s
	ss.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName(secure), Value: id, Path: "/", HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteLaxMode})
	return s
}

// get returns the live session r's cookie names, or nil.
func (ss *sessions) get(r *http.Request) *Session {
	key, ok := sessionKey(r)
	if !ok {
		return nil
	}
	now := ss.clk.Now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[key]
	if s == nil {
		return nil
	}
	if ss.expired(s, now) {
		delete(ss.m, key)
		return nil
	}
	s.seen = now
	return s
}

func (ss *sessions) expired(s *Session, now time.Time) bool {
	return now.Sub(s.seen) >= ss.idle || now.Sub(s.created) >= ss.absolute
}

// sweep drops expired sessions (called with mu held).
func (ss *sessions) sweep(now time.Time) {
	for k, s := range ss.m {
		if ss.expired(s, now) {
			delete(ss.m, k)
		}
	}
}

// end ends r's session, if any, and clears its cookie.
func (ss *sessions) end(w http.ResponseWriter, r *http.Request, secure bool) {
	if key, ok := sessionKey(r); ok {
		ss.mu.Lock()
		delete(ss.m, key)
		ss.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName(secure), Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: secure, SameSite: http.SameSiteLaxMode})
}

func sessionKey(r *http.Request) ([32]byte, bool) {
	for _, name := range []string{cookieName(true), cookieName(false)} {
		if c, err := r.Cookie(name); err == nil && c.Value != "" {
			return sha256.Sum256([]byte(c.Value)), true
		}
	}
	return [32]byte{}, false
}

func (s *Session) setFlash(msg string) { s.flash = msg }

// takeFlash returns the message to show once, and forgets it.
func (s *Session) takeFlash() string {
	m := s.flash
	s.flash = ""
	return m
}

// stateChanging reports whether a method changes state (and so needs the
// CSRF token).
func stateChanging(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// checkCSRF refuses (403) a state-changing request whose CSRF token (the
// form field, or the X-CSRF-Token header of a script's request) is not
// its session's. It reports whether the request may go on.
func (p *Portal) checkCSRF(w http.ResponseWriter, r *http.Request, s *Session) bool {
	if !stateChanging(r.Method) {
		return true
	}
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" {
		// Bounded: a form bigger than this is not one of ours.
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		tok = r.PostFormValue(csrfField)
	}
	if s == nil || tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) != 1 {
		http.Error(w, "The form's security token is missing or stale: reload the page and try again.", http.StatusForbidden)
		return false
	}
	return true
}
