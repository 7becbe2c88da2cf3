package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"coffer/internal/clock"
	"coffer/internal/store"
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

// Session is a signed-in browser's session, started at sign-in (the
// sign-in page itself needs none: see signinTokens). It is kept in the
// metadata store (see sessions), so every node sharing the store knows it
// and a restart keeps it.
type Session struct {
	// PrincipalID is the signed-in principal.
	PrincipalID string
	// CSRF is the synchronizer token every state-changing request of the
	// session must carry.
	CSRF string

	key   string // the row's key: the hash of the cookie's ID
	rec   sessionRecord
	flash string // shown once by the next page rendered
}

// setFlash sets the message the page rendered by this request shows.
func (s *Session) setFlash(msg string) { s.flash = msg }

// kindSession is the metadata-store kind of portal sessions.
const kindSession = "portal.session"

// sessionRecord is a session's row. It never holds the cookie's value: the
// row's key is the SHA-256 of the cookie's random ID, so that a copy of
// the database signs no one in.
type sessionRecord struct {
	Principal string    `json:"principal,omitempty"`
	CSRF      string    `json:"csrf"`
	Created   time.Time `json:"created"`
	Seen      time.Time `json:"seen"`
	Flash     string    `json:"flash,omitempty"`
}

// touchEvery: a session's last-seen time is written when it is older than
// this (not on every page).
const touchEvery = time.Minute

// sessions is the portal's session store: rows of kindSession in the
// metadata store, which every node sharing it reads.
type sessions struct {
	db             store.Store
	clk            clock.Clock
	idle, absolute time.Duration
	// secure: the portal is served over TLS, and only the __Host- cookie
	// names a session (an unprefixed one may have been planted by a
	// sibling host: session fixation).
	secure bool
	// sweeper deletes expired sessions, a batch at each sign-in.
	sweeper *sweeper
}

func newSessions(db store.Store, clk clock.Clock, idle, absolute time.Duration) *sessions {
	ss := &sessions{db: db, clk: clk, idle: idle, absolute: absolute}
	ss.sweeper = &sweeper{db: db, kind: kindSession, prefix: sessionPrefix, expired: func(data []byte, now time.Time) bool {
		var rec sessionRecord
		return json.Unmarshal(data, &rec) != nil || ss.expired(rec, now)
	}}
	return ss
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

const sessionPrefix = "/portal/sessions/"

// sessionKeyOf is the row key of the session whose cookie carries id.
func sessionKeyOf(id string) string {
	h := sha256.Sum256([]byte(id))
	return sessionPrefix + hex.EncodeToString(h[:])
}

// start creates principalID's session, with a new random ID, sets its
// cookie and returns it.
func (ss *sessions) start(ctx context.Context, w http.ResponseWriter, principalID string, secure bool) (*Session, error) {
	id := randomToken()
	now := ss.clk.Now().UTC()
	s := &Session{PrincipalID: principalID, CSRF: randomToken(), key: sessionKeyOf(id),
		rec: sessionRecord{Principal: principalID, Created: now, Seen: now}}
	s.rec.CSRF = s.CSRF
	b, err := json.Marshal(s.rec)
	if err != nil {
		return nil, fmt.Errorf("encode session: %w", err)
	}
	err = ss.db.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Object{Kind: kindSession, Key: s.key, Data: b}, store.PutOptions{CreateOnly: true})
	})
	if err != nil {
		return nil, fmt.Errorf("start a portal session: %w", err)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName(secure), Value: id, Path: "/", HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteLaxMode})
	ss.sweeper.sweep(ctx, now)
	return s, nil
}

// get returns the live session r's cookie names, or nil. An expired
// session's row is deleted; a live one's last-seen time is written when it
// is older than touchEvery.
func (ss *sessions) get(ctx context.Context, r *http.Request) (*Session, error) {
	key, ok := ss.sessionKey(r)
	if !ok {
		return nil, nil
	}
	now := ss.clk.Now().UTC()
	var s *Session
	read := func(tx store.Tx) error {
		s = nil
		o, err := tx.Get(ctx, kindSession, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var rec sessionRecord
		if err := json.Unmarshal(o.Data, &rec); err != nil {
			return fmt.Errorf("decode portal session: %w", err)
		}
		s = &Session{PrincipalID: rec.Principal, CSRF: rec.CSRF, key: key, rec: rec, flash: rec.Flash}
		return nil
	}
	if err := ss.db.View(ctx, read); err != nil {
		return nil, fmt.Errorf("read a portal session: %w", err)
	}
	switch {
	case s == nil:
		return nil, nil
	case ss.expired(s.rec, now):
		return nil, ss.delete(ctx, key)
	case now.Sub(s.rec.Seen) < touchEvery:
		return s, nil
	}
	err := ss.db.Update(ctx, func(tx store.Tx) error {
		if err := read(tx); err != nil || s == nil {
			return err
		}
		s.rec.Seen = now
		return ss.put(ctx, tx, s)
	})
	if err != nil {
		return nil, fmt.Errorf("touch a portal session: %w", err)
	}
	return s, nil
}

func (ss *sessions) put(ctx context.Context, tx store.Tx, s *Session) error {
	b, err := json.Marshal(s.rec)
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	return tx.Put(ctx, &store.Object{Kind: kindSession, Key: s.key, Data: b}, store.PutOptions{})
}

func (ss *sessions) expired(rec sessionRecord, now time.Time) bool {
	return now.Sub(rec.Seen) >= ss.idle || now.Sub(rec.Created) >= ss.absolute
}

// setFlash stores msg ("" clears it) as the message s's next page shows.
func (ss *sessions) setFlash(ctx context.Context, s *Session, msg string) error {
	err := ss.db.Update(ctx, func(tx store.Tx) error {
		o, err := tx.Get(ctx, kindSession, s.key)
		if errors.Is(err, store.ErrNotFound) {
			return nil // signed out meanwhile: nothing to show
		}
		if err != nil {
			return err
		}
		var rec sessionRecord
		if err := json.Unmarshal(o.Data, &rec); err != nil {
			return fmt.Errorf("decode portal session: %w", err)
		}
		rec.Flash = msg
		s.rec = rec
		return ss.put(ctx, tx, s)
	})
	if err != nil {
		return fmt.Errorf("write a portal session's message: %w", err)
	}
	return nil
}

// takeFlash returns the message to show once, and forgets it (in the
// store too when it came from there).
func (ss *sessions) takeFlash(ctx context.Context, s *Session) (string, error) {
	m := s.flash
	s.flash = ""
	if s.rec.Flash == "" {
		return m, nil
	}
	return m, ss.setFlash(ctx, s, "")
}

func (ss *sessions) delete(ctx context.Context, key string) error {
	err := ss.db.Update(ctx, func(tx store.Tx) error {
		if err := tx.Delete(ctx, kindSession, key); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("end a portal session: %w", err)
	}
	return nil
}

// end ends r's session, if any (deleting its row), and clears its cookie.
func (ss *sessions) end(ctx context.Context, w http.ResponseWriter, r *http.Request, secure bool) error {
	http.SetCookie(w, &http.Cookie{Name: cookieName(secure), Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: secure, SameSite: http.SameSiteLaxMode})
	if key, ok := ss.sessionKey(r); ok {
		return ss.delete(ctx, key)
	}
	return nil
}

// sessionKey returns the key of the session r's cookie names, if any.
func (ss *sessions) sessionKey(r *http.Request) (string, bool) {
	if c, err := r.Cookie(cookieName(ss.secure)); err == nil && c.Value != "" {
		return sessionKeyOf(c.Value), true
	}
	return "", false
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
// its session's. A public page's request without a session (the sign-in
// form's) may instead carry its anonymous sign-in token (signinTokens).
// It reports whether the request may go on.
func (p *Portal) checkCSRF(w http.ResponseWriter, r *http.Request, s *Session, public bool) bool {
	if !stateChanging(r.Method) {
		return true
	}
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" {
		// Bounded: a form bigger than this is not one of ours.
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		tok = r.PostFormValue(csrfField)
	}
	ok := false
	switch {
	case tok == "":
	case s != nil:
		ok = subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) == 1
	case public:
		ok = p.signinTokens.check(r, tok)
	}
	if !ok {
		http.Error(w, "The form's security token is missing or stale: reload the page and try again.", http.StatusForbidden)
	}
	return ok
}
