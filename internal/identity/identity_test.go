package identity

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/store/sqlite"
)

func newService(t *testing.T) (*Service, *clock.Fake) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return &Service{Store: st, Signer: NewSigner(), Clock: fc, TenantID: NewGUID(), Issuer: "test",
		Audiences: []string{"https://coffer.test:7480"}}, fc
}

const aud = "https://coffer.test:7480/" // as the Azure CLI asks for it

func TestTokenLifecycle(t *testing.T) {
	ctx := context.Background()
	s, fc := newService(t)
	p, secret, err := s.Create(ctx, CreateOptions{Kind: ServicePrincipal, DisplayName: "sp", WithSecret: true})
	if err != nil {
		t.Fatal(err)
	}
	if !IsGUID(p.ID) || !IsGUID(p.ClientID) || secret == "" || len(p.Secrets) != 0 {
		t.Fatalf("created %+v (secrets must not be returned)", p)
	}
	if _, _, err := s.ClientCredentials(ctx, p.ClientID, secret+"x", aud); !errors.Is(err, ErrInvalidClient) {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, _, err := s.ClientCredentials(ctx, NewGUID(), secret, aud); !errors.Is(err, ErrInvalidClient) {
		t.Fatalf("unknown client: %v", err)
	}
	tok, ttl, err := s.ClientCredentials(ctx, p.ClientID, secret, aud)
	if err != nil || ttl != AccessTokenLifetime {
		t.Fatal(err)
	}
	got, c, err := s.Authenticate(ctx, tok)
	if err != nil || got.ID != p.ID || c.TenantID != s.TenantID || c.Audience != aud {
		t.Fatalf("authenticate: %+v %+v %v", got, c, err)
	}
	// Tampering with the payload breaks the signature.
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + parts[1][:len(parts[1])-2] + "AA." + parts[2]
	if _, _, err := s.Authenticate(ctx, forged); !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformedToken) {
		t.Fatalf("forged token: %v", err)
	}
	// A token from another key is refused.
	other := &Service{Store: s.Store, Signer: NewSigner(), Clock: fc, TenantID: s.TenantID, Issuer: s.Issuer}
	otok, _ := other.IssueAccessToken(p)
	if _, _, err := s.Authenticate(ctx, otok); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("foreign token: %v", err)
	}
	// Expiry, on the fake clock.
	fc.Advance(AccessTokenLifetime + time.Second)
	if _, _, err := s.Authenticate(ctx, tok); !errors.Is(err, ErrExpiredToken) {
		t.Fatalf("expired token: %v", err)
	}
	// API tokens: valid until revoked.
	api, rec, err := s.IssueAPIToken(ctx, p.ID, 24*time.Hour, "t")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Authenticate(ctx, api); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Authenticate(ctx, api); !errors.Is(err, ErrRevokedToken) {
		t.Fatalf("revoked: %v", err)
	}
	// Deleting the principal invalidates its tokens.
	tok2, _ := s.IssueAccessToken(p)
	if err := s.Delete(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Authenticate(ctx, tok2); !errors.Is(err, ErrUnknownSubject) {
		t.Fatalf("deleted principal: %v", err)
	}
	if err := s.Delete(ctx, p.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestSignerPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	a, err := LoadOrCreateSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateSigner(path)
	if err != nil || !a.PublicKey().Equal(b.PublicKey()) {
		t.Fatalf("reloaded key differs: %v", err)
	}
	now := time.Unix(1_800_000_000, 0)
	tok, _ := a.Sign(Claims{Subject: "x", IssuedAt: now.Unix(), Expires: now.Add(time.Minute).Unix()})
	if _, err := b.Verify(tok, now); err != nil {
		t.Fatal(err)
	}
}
