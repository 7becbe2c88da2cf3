package identity

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/store/memstore"
)

// FuzzAuthenticate feeds arbitrary bearer tokens to Signer.Verify and
// Service.Authenticate. Neither may panic; nothing may be accepted that
// this service did not sign (the signed header and payload must be exactly
// those of a token it issued, with the same claims); and Authenticate may
// accept only what Verify accepts, never a revoked API token, and only for
// the principal the token names.
func FuzzAuthenticate(f *testing.F) {
	ctx := context.Background()
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s := &Service{Store: memstore.New(), Signer: NewSigner(), Clock: fc, TenantID: NewGUID(), Issuer: "coffer",
		Audiences: []string{"https://coffer"}}
	p, secret, err := s.Create(ctx, CreateOptions{Kind: ServicePrincipal, DisplayName: "sp", WithSecret: true})
	if err != nil {
		f.Fatal(err)
	}
	signed := map[string]Claims{} // header.payload → claims
	add := func(tok string) {
		f.Helper()
		c, err := s.Signer.Verify(tok, fc.Now())
		if err == nil {
			i := strings.LastIndex(tok, ".")
			signed[tok[:i]] = c
		}
		f.Add(tok)
	}
	access, _, err := s.ClientCredentials(ctx, p.ClientID, secret, "https://coffer/")
	if err != nil {
		f.Fatal(err)
	}
	add(access)
	api, _, err := s.IssueAPIToken(ctx, p.ID, 24*time.Hour, "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	add(api)
	revoked, revokedID, err := s.IssueAPIToken(ctx, p.ID, 24*time.Hour, "fuzz, revoked")
	if err != nil {
		f.Fatal(err)
	}
	if err := s.RevokeToken(ctx, revokedID.ID); err != nil {
		f.Fatal(err)
	}
	add(revoked)
	// Tokens of other keys and shapes, which must all be refused.
	other := &Service{Store: s.Store, Signer: NewSigner(), Clock: fc, TenantID: s.TenantID}
	foreign, _ := other.IssueAccessToken(p)
	f.Add(foreign)
	b64 := base64.RawURLEncoding.EncodeToString
	payload := b64([]byte(`{"oid":"` + p.ID + `","coffer_kind":"access","exp":9999999999}`))
	for _, tok := range []string{"", ".", "..", "a.b.c", b64([]byte(`{"alg":"none"}`)) + "." + payload + ".",
		b64([]byte(`{"alg":"EdDSA"}`)) + "." + payload + "." + b64(make([]byte, 64)), strings.Repeat("A", 300) + "." + payload + ".x"} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		vc, verr := s.Signer.Verify(tok, fc.Now())
		if verr == nil {
			i := strings.LastIndex(tok, ".")
			want, ok := signed[tok[:i]]
			if !ok {
				t.Fatalf("Verify accepted %q, which was never signed", tok)
			}
			if vc != want {
				t.Fatalf("Verify(%q) claims %+v, signed %+v", tok, vc, want)
			}
		}
		got, c, err := s.Authenticate(ctx, tok)
		if err != nil {
			return
		}
		if verr != nil {
			t.Fatalf("Authenticate accepted %q, which Verify refuses: %v", tok, verr)
		}
		if c.TokenID == revokedID.ID {
			t.Fatalf("Authenticate accepted the revoked API token %q", tok)
		}
		if got.ID != c.ObjectID || got.ID != p.ID {
			t.Fatalf("Authenticate(%q) = principal %s for a token of %s", tok, got.ID, c.ObjectID)
		}
	})
}
