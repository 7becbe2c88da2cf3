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
	// Kind is "access" for short-lived OAuth2 tokens and "api" for
	// long-lived, revocable API tokens.
	Kind string `json:"coffer_kind"`
}

// Token errors, matched with errors.Is.
var (
	ErrMalformedToken = errors.New("malformed token")
	ErrBadSignature   = errors.New("token signature is invalid")
	ErrExpiredToken   = errors.New("token has expired")
	ErrRevokedToken   = errors.New("token has been revoked")
	ErrUnknownSubject = errors.New("token's principal does not exist")
)

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
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, fmt.Errorf("generate signing key: %w", gerr)
		}
		enc := []byte(base64.StdEncoding.EncodeToString(priv.Seed()) + "\n")
		if err := writeFileAtomic(path, enc, 0o600); err != nil {
			return nil, fmt.Errorf("write signing key: %w", err)
		}
		return newSigner(priv), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read signing key %s: %w", path, err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("read signing key %s: not a base64 Ed25519 seed", path)
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

// Verify checks the signature and the time window of a token at now and
// returns its claims. It does not check revocation or the principal.
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
	var h struct{ Alg string }
	if json.Unmarshal(hb, &h) != nil || h.Alg != "EdDSA" {
		return c, ErrMalformedToken
	}
	if !ed25519.Verify(s.pub, []byte(parts[0]+"."+parts[1]), sig) {
		return c, ErrBadSignature
	}
	if err := json.Unmarshal(pb, &c); err != nil {
		return c, ErrMalformedToken
	}
	t := now.Unix()
	if c.Expires != 0 && t >= c.Expires {
		return c, ErrExpiredToken
	}
	if c.NotBefore != 0 && t+300 < c.NotBefore { // 5 minutes of clock skew
		return c, ErrMalformedToken
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
