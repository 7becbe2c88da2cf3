package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Claims are the JWT claims Coffer issues and checks.
type Claims struct {
	Issuer    string `json:"iss"`
	Audience  string `json:"aud,omitempty"`
	Subject   string `json:"sub"`
	ObjectID  string `json:"oid"`
	TenantID  string `json:"tid"`
	AppID     string `json:"appid,omitempty"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	Expires   int64  `json:"exp"`
	TokenID   string `json:"jti"`
	// Kind is TokenAccess or TokenAPI.
	Kind string `json:"coffer_kind"`
}

// The kinds of token (the coffer_kind claim).
const (
	// TokenAccess is a short-lived access token: from the OAuth2
	// client-credentials grant (audience: one of the server's endpoint
	// URLs), or issued to a worker (audience InternalAudience).
	TokenAccess = "access"
	// TokenAPI is a long-lived API token (audience APIAudience), recorded
	// in the store so that it can be listed and revoked.
	TokenAPI = "api"
)

// The audiences of the tokens the server issues to itself rather than
// for a resource URL a client names.
const (
	InternalAudience = "urn:coffer:internal"
	APIAudience      = "urn:coffer:api"
)

// clockSkew is the tolerance for iat and nbf in the future.
const clockSkew = 5 * time.Minute

// Token errors, matched with errors.Is.
var (
	ErrMalformedToken = errors.New("malformed token")
	ErrBadSignature   = errors.New("token signature is invalid")
	ErrExpiredToken   = errors.New("token has expired")
	ErrRevokedToken   = errors.New("token has been revoked")
	ErrUnknownSubject = errors.New("token's principal does not exist")
	// ErrInvalidClaim is matched by every *ClaimError.
	ErrInvalidClaim = errors.New("token claim is invalid")
)

// ClaimError says which claim of a correctly signed token is refused and
// why. errors.Is(err, ErrInvalidClaim) matches it.
type ClaimError struct {
	Claim  string // the JSON name, e.g. "aud"
	Reason string // e.g. "is missing"
}

func (e *ClaimError) Error() string { return "token claim " + e.Claim + " " + e.Reason }

// Is makes errors.Is(err, ErrInvalidClaim) true.
func (e *ClaimError) Is(target error) bool { return target == ErrInvalidClaim }

func claimErr(claim, format string, args ...any) error {
	return &ClaimError{Claim: claim, Reason: fmt.Sprintf(format, args...)}
}

// Signer signs and verifies tokens with one Ed25519 key.
type Signer struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	kid  string
}

// LoadOrCreateSigner reads the signing key at path, creating it (mode 0600)
// on first use.
func LoadOrCreateSigner(path string) (*Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if b, err = NewSignerKey(); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("write signing key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read signing key %s: %w", path, err)
	}
	sg, err := ParseSigner(b)
	if err != nil {
		return nil, fmt.Errorf("read signing key %s: %w", path, err)
	}
	return sg, nil
}

// NewSignerKey returns a new signing key in the form ParseSigner reads
// (a base64 Ed25519 seed and a newline, as in DATA/signing.key).
func NewSignerKey() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	return []byte(base64.StdEncoding.EncodeToString(priv.Seed()) + "\n"), nil
}

// ParseSigner returns the signer of a key NewSignerKey made.
func ParseSigner(key []byte) (*Signer, error) {
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(key)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, errors.New("not a base64 Ed25519 seed")
	}
	return newSigner(ed25519.NewKeyFromSeed(seed)), nil
}

// NewSigner returns a signer with a fresh random key (tests).
func NewSigner() *Signer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	return newSigner(priv)
}

func newSigner(priv ed25519.PrivateKey) *Signer {
	pub := priv.Public().(ed25519.PublicKey)
	return &Signer{priv: priv, pub: pub, kid: base64.RawURLEncoding.EncodeToString(pub[:8])}
}

// PublicKey returns the verification key (published as a JWK).
func (s *Signer) PublicKey() ed25519.PublicKey { return s.pub }

// KeyID is the "kid" of the key.
func (s *Signer) KeyID() string { return s.kid }

var b64 = base64.RawURLEncoding

// Sign encodes and signs c.
func (s *Signer) Sign(c Claims) (string, error) {
	h, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": "JWT", "kid": s.kid})
	p, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	unsigned := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	sig := ed25519.Sign(s.priv, []byte(unsigned))
	return unsigned + "." + b64.EncodeToString(sig), nil
}

// Verify checks a token's header (alg EdDSA, this key's kid, no crit), its
// signature and its time claims at now: exp is required and in the future
// (ErrExpiredToken once passed), iat is required, not in the future and
// before exp, and nbf, when present, not in the future (both with five
// minutes of clock skew). It returns the claims; it does not check issuer,
// tenant, audience, kind, revocation or the principal (Service.Authenticate
// does).
func (s *Signer) Verify(tok string, now time.Time) (Claims, error) {
	var c Claims
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return c, ErrMalformedToken
	}
	hb, err1 := b64.DecodeString(parts[0])
	pb, err2 := b64.DecodeString(parts[1])
	sig, err3 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return c, ErrMalformedToken
	}
	var h struct {
		Alg  string          `json:"alg"`
		Kid  string          `json:"kid"`
		Crit json.RawMessage `json:"crit"`
	}
	if json.Unmarshal(hb, &h) != nil || h.Alg != "EdDSA" || h.Crit != nil {
		return c, ErrMalformedToken
	}
	if h.Kid != s.kid {
		return c, ErrBadSignature // signed with another key, or claims to be
	}
	if !ed25519.Verify(s.pub, []byte(parts[0]+"."+parts[1]), sig) {
		return c, ErrBadSignature
	}
	if err := json.Unmarshal(pb, &c); err != nil {
		return c, ErrMalformedToken
	}
	t, skew := now.Unix(), int64(clockSkew/time.Second)
	switch {
	case c.Expires == 0:
		return c, claimErr("exp", "is missing: every token must expire")
	case t >= c.Expires:
		return c, ErrExpiredToken
	case c.IssuedAt == 0:
		return c, claimErr("iat", "is missing")
	case c.IssuedAt > t+skew:
		return c, claimErr("iat", "is in the future")
	case c.Expires <= c.IssuedAt:
		return c, claimErr("exp", "is not after iat")
	case c.NotBefore != 0 && c.NotBefore > t+skew:
		return c, claimErr("nbf", "is in the future: the token is not valid yet")
	}
	return c, nil
}

// writeFileAtomic writes data to path durably: temp file, fsync, rename,
// fsync of the directory.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteFileAtomic is the durable write used for the server's small files
// (admin.json, keys, certificates).
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := writeFileAtomic(path, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
