package identity

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// validClaims are the claims of a good access token for p at now.
func validClaims(s *Service, p Principal, now time.Time) Claims {
	return Claims{Issuer: s.Issuer, Audience: aud, Subject: p.ID, ObjectID: p.ID, TenantID: s.TenantID,
		AppID: p.ClientID, IssuedAt: now.Unix(), NotBefore: now.Unix(), Expires: now.Add(time.Hour).Unix(),
		TokenID: NewGUID(), Kind: TokenAccess}
}

// TestForgedClaimsRefused signs tokens with the server's own key whose
// claims are wrong one at a time: each is refused, naming the claim.
func TestForgedClaimsRefused(t *testing.T) {
	ctx := context.Background()
	s, fc := newService(t)
	p, _, err := s.Create(ctx, CreateOptions{Kind: ServicePrincipal, DisplayName: "sp"})
	if err != nil {
		t.Fatal(err)
	}
	now := fc.Now()
	good := validClaims(s, p, now)
	tok, err := s.Signer.Sign(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Authenticate(ctx, tok); err != nil {
		t.Fatalf("the well-formed token is refused: %v", err)
	}
	for _, c := range []struct {
		name  string
		edit  func(c *Claims)
		claim string
	}{
		{"another tenant", func(c *Claims) { c.TenantID = NewGUID() }, "tid"},
		{"no tenant", func(c *Claims) { c.TenantID = "" }, "tid"},
		{"another issuer", func(c *Claims) { c.Issuer = "https://login.microsoftonline.com/x/v2.0" }, "iss"},
		{"another audience", func(c *Claims) { c.Audience = "https://management.azure.com/" }, "aud"},
		{"no audience", func(c *Claims) { c.Audience = "" }, "aud"},
		{"the API tokens' audience on an access token", func(c *Claims) { c.Audience = APIAudience }, "aud"},
		{"no expiry", func(c *Claims) { c.Expires = 0 }, "exp"},
		{"an access token for ten years", func(c *Claims) { c.Expires = now.AddDate(10, 0, 0).Unix() }, "exp"},
		{"no iat", func(c *Claims) { c.IssuedAt = 0 }, "iat"},
		{"issued in the future", func(c *Claims) {
			c.IssuedAt, c.NotBefore, c.Expires = now.Add(time.Hour).Unix(), 0, now.Add(90*time.Minute).Unix()
		}, "iat"},
		{"not valid yet", func(c *Claims) { c.NotBefore = now.Add(time.Hour).Unix() }, "nbf"},
		{"exp before iat", func(c *Claims) { c.IssuedAt = now.Unix() + 60; c.Expires = now.Unix() + 30 }, "exp"},
		{"unknown kind", func(c *Claims) { c.Kind = "refresh" }, "coffer_kind"},
		{"no kind", func(c *Claims) { c.Kind = "" }, "coffer_kind"},
		{"no object ID", func(c *Claims) { c.ObjectID = "" }, "oid"},
		{"an API token for another audience", func(c *Claims) { c.Kind = TokenAPI }, "aud"},
	} {
		t.Run(c.name, func(t *testing.T) {
			claims := good
			c.edit(&claims)
			tok, err := s.Signer.Sign(claims)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = s.Authenticate(ctx, tok)
			var ce *ClaimError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidClaim) || ce.Claim != c.claim {
				t.Fatalf("got %v, want a ClaimError on %q", err, c.claim)
			}
		})
	}
	// An expired token is expired, not invalid.
	claims := good
	claims.IssuedAt, claims.NotBefore, claims.Expires = now.Add(-2*time.Hour).Unix(), 0, now.Add(-time.Hour).Unix()
	tok, _ = s.Signer.Sign(claims)
	if _, _, err := s.Authenticate(ctx, tok); !errors.Is(err, ErrExpiredToken) {
		t.Fatalf("expired token: %v", err)
	}
	// Worker tokens carry the internal audience and are accepted.
	wt, err := s.IssueAccessToken(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, c, err := s.Authenticate(ctx, wt); err != nil || c.Audience != InternalAudience {
		t.Fatalf("worker token: %+v %v", c, err)
	}
}

// TestClientCredentialsAudience: a token is issued only for one of the
// server's audiences, with or without the trailing slash, in any case.
func TestClientCredentialsAudience(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t)
	p, secret, err := s.Create(ctx, CreateOptions{Kind: ServicePrincipal, DisplayName: "sp", WithSecret: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"https://coffer.test:7480", "https://coffer.test:7480/", "HTTPS://Coffer.Test:7480//"} {
		tok, _, err := s.ClientCredentials(ctx, p.ClientID, secret, a)
		if err != nil {
			t.Fatalf("audience %q: %v", a, err)
		}
		if _, _, err := s.Authenticate(ctx, tok); err != nil {
			t.Fatalf("token for %q: %v", a, err)
		}
	}
	for _, a := range []string{"", "https://management.azure.com/", "https://coffer.test:7481", InternalAudience, APIAudience} {
		if _, _, err := s.ClientCredentials(ctx, p.ClientID, secret, a); !errors.Is(err, ErrUnknownAudience) {
			t.Fatalf("audience %q: %v, want ErrUnknownAudience", a, err)
		}
	}
}

// TestAPITokenRules: the lifetime cap (at issue and at authentication),
// minting only with fresh credentials, listing and revocation.
func TestAPITokenRules(t *testing.T) {
	ctx := context.Background()
	s, fc := newService(t)
	s.MaxAPITokenLifetime = 30 * 24 * time.Hour
	p, secret, err := s.Create(ctx, CreateOptions{Kind: ServicePrincipal, DisplayName: "sp", WithSecret: true})
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := s.Create(ctx, CreateOptions{Kind: ServicePrincipal, DisplayName: "other"})
	if err != nil {
		t.Fatal(err)
	}
	access, _, err := s.ClientCredentials(ctx, p.ClientID, secret, aud)
	if err != nil {
		t.Fatal(err)
	}
	_, ac, err := s.Authenticate(ctx, access)
	if err != nil {
		t.Fatal(err)
	}

	// Above the cap: refused. Zero: the cap.
	if _, _, err := s.MintAPIToken(ctx, ac, 31*24*time.Hour, "long"); !errors.Is(err, ErrLifetimeExceeded) {
		t.Fatalf("31 days with a 30-day maximum: %v", err)
	}
	api, rec, err := s.MintAPIToken(ctx, ac, 0, "default")
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.ExpiresAt.Sub(rec.CreatedAt); got != s.MaxAPITokenLifetime || rec.PrincipalID != p.ID {
		t.Fatalf("default token: %+v", rec)
	}
	_, apic, err := s.Authenticate(ctx, api)
	if err != nil {
		t.Fatal(err)
	}
	// An API token cannot mint another, nor can a worker's token.
	if _, _, err := s.MintAPIToken(ctx, apic, time.Hour, "child"); !errors.Is(err, ErrFreshCredentialsRequired) {
		t.Fatalf("API token minting an API token: %v", err)
	}
	wt, _ := s.IssueAccessToken(p)
	_, wc, err := s.Authenticate(ctx, wt)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.MintAPIToken(ctx, wc, time.Hour, "worker"); !errors.Is(err, ErrFreshCredentialsRequired) {
		t.Fatalf("worker token minting an API token: %v", err)
	}
	if _, _, err := s.IssueAPIToken(ctx, other.ID, time.Hour, "other's"); err != nil {
		t.Fatal(err)
	}

	// Listing: own, everyone's; never the token.
	mine, err := s.ListAPITokens(ctx, p.ID)
	if err != nil || len(mine) != 1 || mine[0].ID != rec.ID || mine[0].Description != "default" {
		t.Fatalf("own tokens: %+v %v", mine, err)
	}
	all, err := s.ListAPITokens(ctx, "")
	if err != nil || len(all) != 2 {
		t.Fatalf("all tokens: %+v %v", all, err)
	}

	// Revoking: the token stops working, the record says when.
	fc.Advance(time.Minute)
	if err := s.RevokeToken(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Authenticate(ctx, api); !errors.Is(err, ErrRevokedToken) {
		t.Fatalf("revoked: %v", err)
	}
	got, err := s.GetAPIToken(ctx, rec.ID)
	if err != nil || !got.Revoked || !got.RevokedAt.Equal(fc.Now().UTC()) {
		t.Fatalf("revoked record: %+v %v", got, err)
	}
	if err := s.RevokeToken(ctx, NewGUID()); !errors.Is(err, ErrTokenNotFound) {
		t.Fatalf("revoking an unknown token: %v", err)
	}

	// Lowering the maximum shortens existing tokens.
	api2, rec2, err := s.IssueAPIToken(ctx, p.ID, 0, "second")
	if err != nil {
		t.Fatal(err)
	}
	fc.Advance(10 * 24 * time.Hour)
	if _, _, err := s.Authenticate(ctx, api2); err != nil {
		t.Fatal(err)
	}
	s.MaxAPITokenLifetime = 7 * 24 * time.Hour
	if _, _, err := s.Authenticate(ctx, api2); !errors.Is(err, ErrExpiredToken) {
		t.Fatalf("token older than a lowered maximum: %v", err)
	}
	if got, _ := s.GetAPIToken(ctx, rec2.ID); !got.ExpiresAt.Equal(rec2.CreatedAt.Add(7 * 24 * time.Hour)) {
		t.Fatalf("listed expiry %v, want the lowered maximum after creation", got.ExpiresAt)
	}

	// An API token issued before tokens carried an audience (releases up
	// to 0d543b6) still works while its record lives and the cap allows;
	// an API token without a record does not.
	legacyTok, legacy, err := s.IssueAPIToken(ctx, p.ID, 0, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	_, lc, err := s.Authenticate(ctx, legacyTok)
	if err != nil {
		t.Fatal(err)
	}
	lc.Audience = ""
	unaud, _ := s.Signer.Sign(lc)
	if _, _, err := s.Authenticate(ctx, unaud); err != nil {
		t.Fatalf("an API token without an audience, with its record: %v", err)
	}
	lc.TokenID = NewGUID()
	orphan, _ := s.Signer.Sign(lc)
	if _, _, err := s.Authenticate(ctx, orphan); !errors.Is(err, ErrRevokedToken) {
		t.Fatalf("an API token without an audience or a record: %v", err)
	}
	if err := s.RevokeToken(ctx, legacy.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Authenticate(ctx, unaud); !errors.Is(err, ErrRevokedToken) {
		t.Fatalf("a revoked API token without an audience: %v", err)
	}

	// Deleting the principal deletes its token records.
	if err := s.Delete(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if left, _ := s.ListAPITokens(ctx, p.ID); len(left) != 0 {
		t.Fatalf("tokens of a deleted principal: %+v", left)
	}
}

// TestHeaderChecked: the signature algorithm is EdDSA with this key's kid
// and nothing the verifier does not understand; another header over the
// same claims and signature is refused.
func TestHeaderChecked(t *testing.T) {
	ctx := context.Background()
	s, fc := newService(t)
	p, _, err := s.Create(ctx, CreateOptions{Kind: ServicePrincipal, DisplayName: "sp"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Signer.Sign(validClaims(s, p, fc.Now()))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.SplitN(tok, ".", 3)
	for _, h := range []string{
		`{"alg":"none","typ":"JWT","kid":"` + s.Signer.KeyID() + `"}`,
		`{"alg":"HS256","typ":"JWT","kid":"` + s.Signer.KeyID() + `"}`,
		`{"alg":"EdDSA","typ":"JWT","kid":"other"}`,
		`{"alg":"EdDSA","typ":"JWT"}`,
		`{"alg":"EdDSA","typ":"JWT","kid":"` + s.Signer.KeyID() + `","crit":["exp"]}`,
	} {
		forged := b64.EncodeToString([]byte(h)) + "." + parts[1] + "." + parts[2]
		_, _, err := s.Authenticate(ctx, forged)
		if !errors.Is(err, ErrMalformedToken) && !errors.Is(err, ErrBadSignature) {
			t.Errorf("header %s: %v, want refused", h, err)
		}
	}
	noSig := parts[0] + "." + parts[1] + "."
	if _, _, err := s.Authenticate(ctx, noSig); !errors.Is(err, ErrBadSignature) {
		t.Errorf("no signature: %v", err)
	}
}
