package identity

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
	"strings"
	"time"

	"coffer/internal/clock"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// Kind is the kind of a principal.
type Kind string

// The kinds of principal.
const (
	User             Kind = "User"
	ServicePrincipal Kind = "ServicePrincipal"
	ManagedIdentity  Kind = "ManagedIdentity"
)

// PrincipalType is the value Azure puts in a role assignment's
// principalType for this kind (managed identities are service principals).
func (k Kind) PrincipalType() string {
	if k == User {
		return "User"
	}
	return "ServicePrincipal"
}

// Principal is a security principal: something that authenticates and to
// which roles are assigned.
type Principal struct {
	ID          string    `json:"principalId"`
	Kind        Kind      `json:"kind"`
	DisplayName string    `json:"displayName"`
	ClientID    string    `json:"clientId,omitempty"`
	TenantID    string    `json:"tenantId"`
	ResourceID  string    `json:"resourceId,omitempty"` // managed identity: the resource it belongs to
	TenantAdmin bool      `json:"tenantAdmin,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	Secrets     []secret  `json:"secrets,omitempty"`
}

type secret struct {
	ID        string    `json:"id"`
	Salt      string    `json:"salt"`
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt,omitempty"`
}

type apiToken struct {
	ID          string    `json:"id"`
	PrincipalID string    `json:"principalId"`
	CreatedAt   time.Time `json:"createdAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
	Revoked     bool      `json:"revoked"`
	Description string    `json:"description,omitempty"`
}

const (
	kindPrincipal = "identity.principal"
	kindClientID  = "identity.clientId"
	kindToken     = "identity.token"

	// AccessTokenLifetime is how long an OAuth2 access token is valid.
	AccessTokenLifetime = time.Hour
)

// Errors, matched with errors.Is.
var (
	ErrNotFound          = errors.New("principal not found")
	ErrInvalidClient     = errors.New("invalid client credentials")
	ErrInvalidPrincipal  = errors.New("invalid principal")
	errSecretHashInvalid = errors.New("stored secret hash invalid")
)

// Service manages principals and tokens.
type Service struct {
	Store    store.Store
	Signer   *Signer
	Clock    clock.Clock
	TenantID string
	// Issuer is stamped into tokens as "iss".
	Issuer string
}

// NewGUID returns a random RFC 4122 version-4 UUID string.
func NewGUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// IsGUID reports whether s has the 8-4-4-4-12 hex form of a GUID.
func IsGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

func principalKey(id string) string { return "/principals/" + strings.ToLower(id) }

func newSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func hashSecret(salt []byte, s string) string {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(s))
	return hex.EncodeToString(h.Sum(nil))
}

// CreateOptions describe a new principal.
type CreateOptions struct {
	Kind        Kind
	DisplayName string
	ResourceID  string // managed identities
	TenantAdmin bool
	// WithSecret creates a client secret and returns it (once).
	WithSecret bool
	// ID forces the principal ID (bootstrap and tests); empty means random.
	ID string
}

// Create creates a principal. When opts.WithSecret is set it returns the
// client secret, which is stored only as a salted hash.
func (s *Service) Create(ctx context.Context, opts CreateOptions) (Principal, string, error) {
	if opts.Kind != User && opts.Kind != ServicePrincipal && opts.Kind != ManagedIdentity {
		return Principal{}, "", fmt.Errorf("create principal: kind %q: %w", opts.Kind, ErrInvalidPrincipal)
	}
	p := Principal{
		ID:          opts.ID,
		Kind:        opts.Kind,
		DisplayName: opts.DisplayName,
		TenantID:    s.TenantID,
		ResourceID:  opts.ResourceID,
		TenantAdmin: opts.TenantAdmin,
		CreatedAt:   s.Clock.Now().UTC(),
	}
	if p.ID == "" {
		p.ID = NewGUID()
	}
	if opts.Kind != User {
		p.ClientID = NewGUID()
	}
	var plain string
	if opts.WithSecret {
		plain = newSecret()
		var salt [16]byte
		rand.Read(salt[:])
		p.Secrets = append(p.Secrets, secret{ID: NewGUID(), Salt: hex.EncodeToString(salt[:]),
			Hash: hashSecret(salt[:], plain), CreatedAt: p.CreatedAt})
	}
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		if err := putJSON(ctx, tx, kindPrincipal, principalKey(p.ID), p, store.PutOptions{CreateOnly: true}); err != nil {
			return err
		}
		if p.ClientID != "" {
			return putJSON(ctx, tx, kindClientID, "/clients/"+strings.ToLower(p.ClientID), p.ID, store.PutOptions{CreateOnly: true})
		}
		return nil
	})
	if err != nil {
		return Principal{}, "", fmt.Errorf("create principal %s: %w", p.ID, err)
	}
	return p.redacted(), plain, nil
}

func (p Principal) redacted() Principal {
	p.Secrets = nil
	return p
}

func putJSON(ctx context.Context, tx store.Tx, kind, key string, v any, opts store.PutOptions) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", kind, err)
	}
	return tx.Put(ctx, &store.Object{Kind: kind, Key: key, Data: b}, opts)
}

func getJSON(ctx context.Context, tx store.Tx, kind, key string, v any) error {
	o, err := tx.Get(ctx, kind, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(o.Data, v); err != nil {
		return fmt.Errorf("decode %s %s: %w", kind, key, err)
	}
	return nil
}

// Get returns a principal by ID (without secrets).
func (s *Service) Get(ctx context.Context, id string) (Principal, error) {
	var p Principal
	err := s.Store.View(ctx, func(tx store.Tx) error { return getJSON(ctx, tx, kindPrincipal, principalKey(id), &p) })
	if errors.Is(err, store.ErrNotFound) {
		return p, fmt.Errorf("get principal %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("get principal %s: %w", id, err)
	}
	return p.redacted(), nil
}

// List returns every principal, ordered by ID.
func (s *Service) List(ctx context.Context) ([]Principal, error) {
	var out []Principal
	err := s.Store.View(ctx, func(tx store.Tx) error {
		objs, err := tx.List(ctx, store.Query{Kind: kindPrincipal})
		if err != nil {
			return err
		}
		for _, o := range objs {
			var p Principal
			if err := json.Unmarshal(o.Data, &p); err != nil {
				return fmt.Errorf("decode principal %s: %w", o.Key, err)
			}
			out = append(out, p.redacted())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list principals: %w", err)
	}
	return out, nil
}

// Delete removes a principal; tokens issued to it stop working at once.
// Role assignments naming it are left for the caller to remove.
func (s *Service) Delete(ctx context.Context, id string) error {
	return s.DeleteTx(ctx, nil, id)
}

// DeleteTx is Delete inside the caller's transaction (nil: its own).
func (s *Service) DeleteTx(ctx context.Context, tx store.Tx, id string) error {
	run := func(tx store.Tx) error {
		var p Principal
		if err := getJSON(ctx, tx, kindPrincipal, principalKey(id), &p); err != nil {
			return err
		}
		if p.ClientID != "" {
			if err := tx.Delete(ctx, kindClientID, "/clients/"+strings.ToLower(p.ClientID)); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return tx.Delete(ctx, kindPrincipal, principalKey(id))
	}
	var err error
	if tx != nil {
		err = run(tx)
	} else {
		err = s.Store.Update(ctx, run)
	}
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete principal %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete principal %s: %w", id, err)
	}
	return nil
}

// CreateTx creates a managed identity inside the caller's transaction, so
// that a resource and its identity are created together.
func (s *Service) CreateManagedIdentityTx(ctx context.Context, tx store.Tx, resourceID, displayName string) (Principal, error) {
	p := Principal{ID: NewGUID(), Kind: ManagedIdentity, DisplayName: displayName, ClientID: NewGUID(),
		TenantID: s.TenantID, ResourceID: resourceID, CreatedAt: s.Clock.Now().UTC()}
	if err := putJSON(ctx, tx, kindPrincipal, principalKey(p.ID), p, store.PutOptions{CreateOnly: true}); err != nil {
		return p, fmt.Errorf("create managed identity for %s: %w", resourceID, err)
	}
	if err := putJSON(ctx, tx, kindClientID, "/clients/"+strings.ToLower(p.ClientID), p.ID, store.PutOptions{CreateOnly: true}); err != nil {
		return p, fmt.Errorf("create managed identity for %s: %w", resourceID, err)
	}
	return p, nil
}

// ClientCredentials checks a client ID and secret (OAuth2
// client_credentials) and issues an access token for audience.
func (s *Service) ClientCredentials(ctx context.Context, clientID, clientSecret, audience string) (string, time.Duration, error) {
	var p Principal
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var pid string
		if err := getJSON(ctx, tx, kindClientID, "/clients/"+strings.ToLower(clientID), &pid); err != nil {
			return err
		}
		return getJSON(ctx, tx, kindPrincipal, principalKey(pid), &p)
	})
	if errors.Is(err, store.ErrNotFound) {
		return "", 0, fmt.Errorf("client %s: %w", clientID, ErrInvalidClient)
	}
	if err != nil {
		return "", 0, fmt.Errorf("client credentials: %w", err)
	}
	now := s.Clock.Now()
	ok := false
	for _, sec := range p.Secrets {
		salt, err := hex.DecodeString(sec.Salt)
		if err != nil {
			return "", 0, fmt.Errorf("client %s: %w", clientID, errSecretHashInvalid)
		}
		if !sec.ExpiresAt.IsZero() && now.After(sec.ExpiresAt) {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(hashSecret(salt, clientSecret)), []byte(sec.Hash)) == 1 {
			ok = true
		}
	}
	if !ok {
		return "", 0, fmt.Errorf("client %s: %w", clientID, ErrInvalidClient)
	}
	tok, err := s.issue(p, audience, "access", NewGUID(), now, AccessTokenLifetime)
	return tok, AccessTokenLifetime, err
}

// IssueAccessToken issues a short-lived token to a principal without a
// secret: workers use it to act as a vault's managed identity.
func (s *Service) IssueAccessToken(p Principal) (string, error) {
	return s.issue(p, "", "access", NewGUID(), s.Clock.Now(), AccessTokenLifetime)
}

func (s *Service) issue(p Principal, audience, kind, jti string, now time.Time, ttl time.Duration) (string, error) {
	c := Claims{Issuer: s.Issuer, Audience: audience, Subject: p.ID, ObjectID: p.ID, TenantID: s.TenantID,
		AppID: p.ClientID, IssuedAt: now.Unix(), NotBefore: now.Unix(), Expires: now.Add(ttl).Unix(),
		TokenID: jti, Kind: kind}
	return s.Signer.Sign(c)
}

// IssueAPIToken issues a long-lived, revocable token to a principal.
func (s *Service) IssueAPIToken(ctx context.Context, principalID string, ttl time.Duration, description string) (string, string, error) {
	p, err := s.Get(ctx, principalID)
	if err != nil {
		return "", "", err
	}
	now := s.Clock.Now()
	t := apiToken{ID: NewGUID(), PrincipalID: p.ID, CreatedAt: now.UTC(), ExpiresAt: now.Add(ttl).UTC(), Description: description}
	if err := s.Store.Update(ctx, func(tx store.Tx) error {
		return putJSON(ctx, tx, kindToken, "/tokens/"+t.ID, t, store.PutOptions{CreateOnly: true})
	}); err != nil {
		return "", "", fmt.Errorf("issue API token: %w", err)
	}
	tok, err := s.issue(p, "", "api", t.ID, now, ttl)
	return tok, t.ID, err
}

// RevokeToken revokes a long-lived API token by its ID (the jti claim).
func (s *Service) RevokeToken(ctx context.Context, tokenID string) error {
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		var t apiToken
		if err := getJSON(ctx, tx, kindToken, "/tokens/"+strings.ToLower(tokenID), &t); err != nil {
			return err
		}
		t.Revoked = true
		return putJSON(ctx, tx, kindToken, "/tokens/"+strings.ToLower(tokenID), t, store.PutOptions{})
	})
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", tokenID, err)
	}
	return nil
}

// Authenticate verifies a bearer token and returns its principal.
func (s *Service) Authenticate(ctx context.Context, token string) (Principal, Claims, error) {
	c, err := s.Signer.Verify(token, s.Clock.Now())
	if err != nil {
		return Principal{}, c, err
	}
	var p Principal
	err = s.Store.View(ctx, func(tx store.Tx) error {
		if c.Kind == "api" {
			var t apiToken
			if err := getJSON(ctx, tx, kindToken, "/tokens/"+strings.ToLower(c.TokenID), &t); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return ErrRevokedToken
				}
				return err
			}
			if t.Revoked {
				return ErrRevokedToken
			}
		}
		err := getJSON(ctx, tx, kindPrincipal, principalKey(c.ObjectID), &p)
		if errors.Is(err, store.ErrNotFound) {
			return ErrUnknownSubject
		}
		return err
	})
	if err != nil {
		return Principal{}, c, err
	}
	return p.redacted(), c, nil
}

// NotFound returns the ARM error for a missing principal.
func NotFound(id string) *resource.Error {
	return resource.Errorf(resource.KindNotFound, "PrincipalNotFound", "Principal '%s' does not exist in tenant.", id)
}
