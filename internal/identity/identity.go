package identity

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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

// Name is how resources' systemData and the portal name the principal:
// its display name, else its object ID.
func (p Principal) Name() string {
	if p.DisplayName != "" {
		return p.DisplayName
	}
	return p.ID
}

// TypeName is the principal's type as ARM names it (systemData's
// createdByType): User, ManagedIdentity or Application.
func (p Principal) TypeName() string {
	switch p.Kind {
	case User:
		return "User"
	case ManagedIdentity:
		return "ManagedIdentity"
	}
	return "Application"
}

type secret struct {
	ID        string    `json:"id"`
	Salt      string    `json:"salt"`
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt,omitempty"`
}

// APIToken is the record of a long-lived API token: what is listed and
// revoked. The token itself is never stored.
type APIToken struct {
	ID          string    `json:"id"` // the token's jti
	PrincipalID string    `json:"principalId"`
	CreatedAt   time.Time `json:"createdAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
	Revoked     bool      `json:"revoked"`
	RevokedAt   time.Time `json:"revokedAt,omitzero"`
	Description string    `json:"description,omitempty"`
}

const (
	kindPrincipal = "identity.principal"
	kindClientID  = "identity.clientId"
	kindToken     = "identity.token"

	// AccessTokenLifetime is how long an OAuth2 access token is valid.
	AccessTokenLifetime = time.Hour
	// DefaultMaxAPITokenLifetime is the longest an API token lives when
	// Service.MaxAPITokenLifetime is not set.
	DefaultMaxAPITokenLifetime = 90 * 24 * time.Hour
)

// Errors, matched with errors.Is.
var (
	ErrNotFound         = errors.New("principal not found")
	ErrInvalidClient    = errors.New("invalid client credentials")
	ErrInvalidPrincipal = errors.New("invalid principal")
	// ErrUnknownAudience refuses a token request for a resource that is
	// not this server.
	ErrUnknownAudience = errors.New("not an audience of this server")
	// ErrTokenNotFound: no API token has that ID.
	ErrTokenNotFound = errors.New("API token not found")
	// ErrLifetimeExceeded refuses an API token longer than the maximum.
	ErrLifetimeExceeded = errors.New("API token lifetime exceeds the maximum")
	// ErrFreshCredentialsRequired refuses to mint an API token with
	// anything but an access token from the client-credentials grant.
	ErrFreshCredentialsRequired = errors.New("creating an API token needs an access token from the client's credentials")
	errSecretHashInvalid        = errors.New("stored secret hash invalid")
)

// Service manages principals and tokens.
type Service struct {
	Store    store.Store
	Signer   *Signer
	Clock    clock.Clock
	TenantID string
	// Issuer is stamped into tokens as "iss" and required of every token.
	Issuer string
	// Audiences are the resource URIs clients may request access tokens
	// for, and the only ones (besides the server's own APIAudience and
	// InternalAudience) a presented token may carry: the server's endpoint
	// URLs. They are compared ignoring case and trailing slashes.
	Audiences []string
	// PeerAudience, when set, reports whether aud is the endpoint of
	// another node sharing this server's metadata store: an access token
	// a client got for that node is accepted here too (a request that
	// node forwards keeps the caller's own token). It is never asked when
	// issuing tokens.
	PeerAudience func(aud string) bool
	// MaxAPITokenLifetime caps API tokens (zero: the default). It applies
	// at authentication too, so lowering it shortens existing tokens.
	MaxAPITokenLifetime time.Duration
}

// MaxAPITokenLife returns the longest an API token may live.
func (s *Service) MaxAPITokenLife() time.Duration {
	if s.MaxAPITokenLifetime > 0 {
		return s.MaxAPITokenLifetime
	}
	return DefaultMaxAPITokenLifetime
}

// IsAudience reports whether aud names this server's API (one of
// Audiences, ignoring case and trailing slashes).
func (s *Service) IsAudience(aud string) bool {
	a := strings.TrimRight(aud, "/")
	if a == "" {
		return false
	}
	for _, x := range s.Audiences {
		if strings.EqualFold(a, strings.TrimRight(x, "/")) {
			return true
		}
	}
	return false
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
		// Its API tokens stop working with it; their records go too.
		toks, err := listTokens(ctx, tx, p.ID)
		if err != nil {
			return err
		}
		for _, t := range toks {
			if err := tx.Delete(ctx, kindToken, tokenKey(t.ID)); err != nil {
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
// client_credentials) and issues an access token for audience, which must
// be one of the server's Audiences (ErrUnknownAudience).
func (s *Service) ClientCredentials(ctx context.Context, clientID, clientSecret, audience string) (string, time.Duration, error) {
	if !s.IsAudience(audience) {
		return "", 0, fmt.Errorf("token for %q: %w", audience, ErrUnknownAudience)
	}
	p, err := s.CheckClientSecret(ctx, clientID, clientSecret)
	if err != nil {
		return "", 0, err
	}
	tok, err := s.issue(p, audience, TokenAccess, NewGUID(), s.Clock.Now(), AccessTokenLifetime)
	return tok, AccessTokenLifetime, err
}

// CheckClientSecret returns the principal whose client ID and unexpired
// secret these are (ErrInvalidClient otherwise): the check behind the
// OAuth2 client_credentials grant and the portal's sign-in.
func (s *Service) CheckClientSecret(ctx context.Context, clientID, clientSecret string) (Principal, error) {
	var p Principal
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var pid string
		if err := getJSON(ctx, tx, kindClientID, "/clients/"+strings.ToLower(clientID), &pid); err != nil {
			return err
		}
		return getJSON(ctx, tx, kindPrincipal, principalKey(pid), &p)
	})
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, fmt.Errorf("client %s: %w", clientID, ErrInvalidClient)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("client credentials: %w", err)
	}
	now := s.Clock.Now()
	ok := false
	for _, sec := range p.Secrets {
		salt, err := hex.DecodeString(sec.Salt)
		if err != nil {
			return Principal{}, fmt.Errorf("client %s: %w", clientID, errSecretHashInvalid)
		}
		if !sec.ExpiresAt.IsZero() && now.After(sec.ExpiresAt) {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(hashSecret(salt, clientSecret)), []byte(sec.Hash)) == 1 {
			ok = true
		}
	}
	if !ok {
		return Principal{}, fmt.Errorf("client %s: %w", clientID, ErrInvalidClient)
	}
	return p, nil
}

// IssueAccessToken issues a short-lived token to a principal without a
// secret, for the server's own use (InternalAudience): workers act as a
// vault's managed identity with it.
func (s *Service) IssueAccessToken(p Principal) (string, error) {
	return s.issue(p, InternalAudience, TokenAccess, NewGUID(), s.Clock.Now(), AccessTokenLifetime)
}

func (s *Service) issue(p Principal, audience, kind, jti string, now time.Time, ttl time.Duration) (string, error) {
	c := Claims{Issuer: s.Issuer, Audience: audience, Subject: p.ID, ObjectID: p.ID, TenantID: s.TenantID,
		AppID: p.ClientID, IssuedAt: now.Unix(), NotBefore: now.Unix(), Expires: now.Add(ttl).Unix(),
		TokenID: jti, Kind: kind}
	return s.Signer.Sign(c)
}

// IssueAPIToken issues a long-lived, revocable token to a principal for
// ttl (zero: the maximum; more than MaxAPITokenLife: ErrLifetimeExceeded).
// It returns the token, shown only now, and its record. It trusts its
// caller: requests from clients go through MintAPIToken.
func (s *Service) IssueAPIToken(ctx context.Context, principalID string, ttl time.Duration, description string) (string, APIToken, error) {
	if ttl == 0 {
		ttl = s.MaxAPITokenLife()
	}
	if ttl < 0 || ttl > s.MaxAPITokenLife() {
		return "", APIToken{}, fmt.Errorf("issue API token for %v (maximum %v): %w", ttl, s.MaxAPITokenLife(), ErrLifetimeExceeded)
	}
	p, err := s.Get(ctx, principalID)
	if err != nil {
		return "", APIToken{}, err
	}
	now := s.Clock.Now()
	t := APIToken{ID: NewGUID(), PrincipalID: p.ID, CreatedAt: now.UTC(), ExpiresAt: now.Add(ttl).UTC(), Description: description}
	tok, err := s.issue(p, APIAudience, TokenAPI, t.ID, now, ttl)
	if err != nil {
		return "", APIToken{}, err
	}
	if err := s.Store.Update(ctx, func(tx store.Tx) error {
		return putJSON(ctx, tx, kindToken, tokenKey(t.ID), t, store.PutOptions{CreateOnly: true})
	}); err != nil {
		return "", APIToken{}, fmt.Errorf("issue API token: %w", err)
	}
	return tok, t, nil
}

// MintAPIToken issues an API token to the caller, whose request
// authenticated with the claims c. Only an access token from the
// client-credentials grant may mint one (ErrFreshCredentialsRequired): the
// principal presented its secret within the last AccessTokenLifetime. An
// API token cannot mint another, so a stolen API token cannot outlive its
// own expiry or revocation, and neither can a worker's token.
func (s *Service) MintAPIToken(ctx context.Context, c Claims, ttl time.Duration, description string) (string, APIToken, error) {
	if c.Kind != TokenAccess || !s.IsAudience(c.Audience) {
		return "", APIToken{}, fmt.Errorf("mint API token for %s: %w", c.ObjectID, ErrFreshCredentialsRequired)
	}
	return s.IssueAPIToken(ctx, c.ObjectID, ttl, description)
}

func tokenKey(id string) string { return "/tokens/" + strings.ToLower(id) }

// effective returns t with ExpiresAt no later than the maximum lifetime
// allows (a token issued before the maximum was lowered ends early).
func (s *Service) effective(t APIToken) APIToken {
	if end := t.CreatedAt.Add(s.MaxAPITokenLife()); end.Before(t.ExpiresAt) {
		t.ExpiresAt = end
	}
	return t
}

func listTokens(ctx context.Context, tx store.Tx, principalID string) ([]APIToken, error) {
	objs, err := tx.List(ctx, store.Query{Kind: kindToken})
	if err != nil {
		return nil, err
	}
	var out []APIToken
	for _, o := range objs {
		var t APIToken
		if err := json.Unmarshal(o.Data, &t); err != nil {
			return nil, fmt.Errorf("decode API token %s: %w", o.Key, err)
		}
		if principalID == "" || strings.EqualFold(t.PrincipalID, principalID) {
			out = append(out, t)
		}
	}
	return out, nil
}

// ListAPITokens returns the records of a principal's API tokens (every
// principal's when principalID is empty), oldest first, revoked and
// expired ones included, with ExpiresAt capped by the maximum lifetime.
func (s *Service) ListAPITokens(ctx context.Context, principalID string) ([]APIToken, error) {
	var out []APIToken
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = listTokens(ctx, tx, principalID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list API tokens: %w", err)
	}
	for i := range out {
		out[i] = s.effective(out[i])
	}
	slices.SortFunc(out, func(a, b APIToken) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// GetAPIToken returns the record of an API token.
func (s *Service) GetAPIToken(ctx context.Context, id string) (APIToken, error) {
	var t APIToken
	err := s.Store.View(ctx, func(tx store.Tx) error { return getJSON(ctx, tx, kindToken, tokenKey(id), &t) })
	if errors.Is(err, store.ErrNotFound) {
		return t, fmt.Errorf("get API token %s: %w", id, ErrTokenNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("get API token %s: %w", id, err)
	}
	return s.effective(t), nil
}

// RevokeToken revokes a long-lived API token by its ID (the jti claim).
// Revoking a revoked token changes nothing.
func (s *Service) RevokeToken(ctx context.Context, tokenID string) error {
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		var t APIToken
		if err := getJSON(ctx, tx, kindToken, tokenKey(tokenID), &t); err != nil {
			return err
		}
		if t.Revoked {
			return nil
		}
		t.Revoked, t.RevokedAt = true, s.Clock.Now().UTC()
		return putJSON(ctx, tx, kindToken, tokenKey(tokenID), t, store.PutOptions{})
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("revoke token %s: %w", tokenID, ErrTokenNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", tokenID, err)
	}
	return nil
}

// checkClaims checks the claims that bind a token to this server and its
// kind: issuer, tenant, subject, kind and audience, and for API tokens the
// maximum lifetime.
func (s *Service) checkClaims(c Claims, now time.Time) error {
	switch {
	case c.Issuer != s.Issuer:
		return claimErr("iss", "%q is not this server's issuer", c.Issuer)
	case !strings.EqualFold(c.TenantID, s.TenantID):
		return claimErr("tid", "%q is not this server's tenant", c.TenantID)
	case c.ObjectID == "":
		return claimErr("oid", "is missing")
	}
	switch c.Kind {
	case TokenAccess:
		if !s.IsAudience(c.Audience) && c.Audience != InternalAudience && (s.PeerAudience == nil || !s.PeerAudience(c.Audience)) {
			return claimErr("aud", "%q is not an audience of this server (accepted: %s)", c.Audience, strings.Join(s.Audiences, ", "))
		}
		if c.Expires-c.IssuedAt > int64(AccessTokenLifetime/time.Second) {
			return claimErr("exp", "is more than %v after iat", AccessTokenLifetime)
		}
	case TokenAPI:
		// API tokens issued before tokens carried an audience have none;
		// they are still checked against their store record and the
		// lifetime cap, so an upgrade does not log their holders out.
		if c.Audience != APIAudience && c.Audience != "" {
			return claimErr("aud", "%q is not the audience of API tokens", c.Audience)
		}
		if c.TokenID == "" {
			return claimErr("jti", "is missing")
		}
		if now.Unix() >= c.IssuedAt+int64(s.MaxAPITokenLife()/time.Second) {
			return ErrExpiredToken // older than the maximum lifetime allows
		}
	default:
		return claimErr("coffer_kind", "%q is not a kind of token this server issues", c.Kind)
	}
	return nil
}

// Authenticate verifies a bearer token and returns its principal: the
// signature and every claim (see Signer.Verify and checkClaims), an API
// token's record (not revoked, issued to the same principal), and that
// the principal still exists.
func (s *Service) Authenticate(ctx context.Context, token string) (Principal, Claims, error) {
	now := s.Clock.Now()
	c, err := s.Signer.Verify(token, now)
	if err != nil {
		return Principal{}, c, err
	}
	if err := s.checkClaims(c, now); err != nil {
		return Principal{}, c, err
	}
	var p Principal
	err = s.Store.View(ctx, func(tx store.Tx) error {
		if c.Kind == TokenAPI {
			var t APIToken
			if err := getJSON(ctx, tx, kindToken, tokenKey(c.TokenID), &t); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return ErrRevokedToken
				}
				return err
			}
			if t.Revoked || !strings.EqualFold(t.PrincipalID, c.ObjectID) {
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
