package portal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"time"

	"coffer/internal/clock"
)

// The sign-in page's CSRF protection is stateless, so that a visit to it
// writes nothing: the page sets a token in an anonymous cookie and in its
// form (double submit), and POST /signin is accepted only when the two are
// equal and the token is one this installation issued (MAC'd with the key
// every node shares, SigninKey) and not expired. The signed-in session,
// with a fresh ID, starts only at a successful sign-in.

// signinTokenTTL bounds how long a sign-in form may be posted after it was
// served.
const signinTokenTTL = 30 * time.Minute

// signinCookieName is the anonymous cookie that carries the sign-in
// form's token; under TLS it takes the __Host- prefix, so that no other
// host (a sibling subdomain) can plant one.
func signinCookieName(secure bool) string {
	if secure {
		return "__Host-coffer_signin"
	}
	return "coffer_signin"
}

// signinTokenLabel separates this MAC's inputs from any other use of the
// key.
const signinTokenLabel = "coffer portal sign-in csrf v1\x00"

// A token is base64url(expiry (Unix seconds, 8 bytes big-endian) || 16
// random bytes || HMAC-SHA256(key, label || the 24 bytes before)).
const (
	signinTokenBody = 8 + 16
	signinTokenLen  = signinTokenBody + sha256.Size
)

// signinTokens issues and checks the sign-in form's tokens.
type signinTokens struct {
	key    []byte
	clk    clock.Clock
	secure bool // the portal is served over TLS: the cookie is __Host-
}

func (st signinTokens) mac(body []byte) []byte {
	m := hmac.New(sha256.New, st.key)
	m.Write([]byte(signinTokenLabel))
	m.Write(body)
	return m.Sum(nil)
}

// issue returns a new token that expires signinTokenTTL from now.
func (st signinTokens) issue() string {
	b := make([]byte, signinTokenBody, signinTokenLen)
	binary.BigEndian.PutUint64(b, uint64(st.clk.Now().Add(signinTokenTTL).Unix()))
	rand.Read(b[8:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(append(b, st.mac(b)...))
}

// expiry returns when tok expires, and false when it is not a token this
// key issued or it has expired.
func (st signinTokens) expiry(tok string) (time.Time, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != signinTokenLen {
		return time.Time{}, false
	}
	if !hmac.Equal(b[signinTokenBody:], st.mac(b[:signinTokenBody])) {
		return time.Time{}, false
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(b)), 0)
	if !st.clk.Now().Before(exp) {
		return time.Time{}, false
	}
	return exp, true
}

// cookie returns the token r's anonymous cookie carries ("" if none).
// Under TLS only the __Host- cookie counts: a cookie without the prefix
// may have been set by a sibling host, which would let it plant a token
// of its own choosing beside the form's (login CSRF).
func (st signinTokens) cookie(r *http.Request) string {
	if c, err := r.Cookie(signinCookieName(st.secure)); err == nil {
		return c.Value
	}
	return ""
}

// forForm returns the token the sign-in form served to r carries: the
// one its cookie already holds while that has more than half its life
// left (so that a second tab's form does not void the first's), else a
// new one, set in the cookie.
func (st signinTokens) forForm(w http.ResponseWriter, r *http.Request, secure bool) string {
	if tok := st.cookie(r); tok != "" {
		if exp, ok := st.expiry(tok); ok && exp.Sub(st.clk.Now()) > signinTokenTTL/2 {
			return tok
		}
	}
	tok := st.issue()
	http.SetCookie(w, &http.Cookie{Name: signinCookieName(secure), Value: tok, Path: "/",
		MaxAge: int(signinTokenTTL / time.Second), HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
	return tok
}

// clear removes the anonymous cookie (at sign-in).
func (st signinTokens) clear(w http.ResponseWriter, secure bool) {
	http.SetCookie(w, &http.Cookie{Name: signinCookieName(secure), Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: secure, SameSite: http.SameSiteStrictMode})
}

// check reports whether tok, posted by r, is r's sign-in token: equal to
// the cookie's, issued with the key, and not expired.
func (st signinTokens) check(r *http.Request, tok string) bool {
	c := st.cookie(r)
	if tok == "" || c == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(c)) != 1 {
		return false
	}
	_, ok := st.expiry(tok)
	return ok
}
