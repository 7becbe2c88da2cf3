package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/identity"
)

func openFake(t *testing.T, dir string, fc *clock.Fake, maxLife time.Duration, log *bytes.Buffer) *Server {
	t.Helper()
	s, err := Open(context.Background(), Config{DataDir: dir, Listen: "127.0.0.1:0", NBDListen: "127.0.0.1:0", Clock: fc,
		MaxAPITokenLifetime: maxLife, Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAdminTokenRenewed: admin.json's API token obeys the maximum lifetime
// and is renewed before it runs out (at half its life), when it is
// refused at start (revoked), and the new token is written to admin.json;
// a token of an older version keeps working under the same rules.
func TestAdminTokenRenewed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fc := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	var log bytes.Buffer
	const maxLife = 10 * 24 * time.Hour
	s := openFake(t, dir, fc, maxLife, &log)
	first := s.Admin.Token
	_, c, err := s.IDs.Authenticate(ctx, first)
	if err != nil || c.Kind != identity.TokenAPI || time.Duration(c.Expires-c.IssuedAt)*time.Second != maxLife {
		t.Fatalf("bootstrap admin token: %+v %v", c, err)
	}

	// With more than half its life left, nothing changes.
	fc.Advance(4 * 24 * time.Hour)
	if err := s.renewAdminToken(ctx); err != nil || s.Admin.Token != first {
		t.Fatalf("renewed too early: %v", err)
	}
	// Past half its life: a new one, in admin.json; the old one still works
	// until it expires.
	fc.Advance(2 * 24 * time.Hour)
	if err := s.renewAdminToken(ctx); err != nil || s.Admin.Token == first {
		t.Fatalf("not renewed past half its life: %v", err)
	}
	if _, _, err := s.IDs.Authenticate(ctx, first); err != nil {
		t.Fatalf("the previous token stopped working at once: %v", err)
	}
	second := s.Admin.Token
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Revoked while the server was down: renewed at start.
	s = openFake(t, dir, fc, maxLife, &log)
	if s.Admin.Token != second {
		t.Fatal("admin.json was rewritten without cause")
	}
	_, c, _ = s.IDs.Authenticate(ctx, second)
	if err := s.IDs.RevokeToken(ctx, c.TokenID); err != nil {
		t.Fatal(err)
	}
	s.Close()
	log.Reset()
	s = openFake(t, dir, fc, maxLife, &log)
	if s.Admin.Token == second {
		t.Fatal("a revoked admin token was kept")
	}
	if _, _, err := s.IDs.Authenticate(ctx, s.Admin.Token); err != nil {
		t.Fatalf("the renewed admin token: %v", err)
	}
	if !strings.Contains(log.String(), "renewed the API token in admin.json") {
		t.Errorf("renewal not logged:\n%s", log.String())
	}

	// A token of an older version (no audience, ten years): it still
	// works while its record lives, capped by the maximum lifetime, and
	// is renewed like any other once past half of that.
	tok, _, err := s.IDs.IssueAPIToken(ctx, s.Admin.PrincipalID, 0, "old")
	if err != nil {
		t.Fatal(err)
	}
	_, oc, _ := s.IDs.Authenticate(ctx, tok)
	oc.Audience, oc.Expires = "", fc.Now().AddDate(10, 0, 0).Unix()
	legacy, err := s.IDs.Signer.Sign(oc)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.IDs.Authenticate(ctx, legacy); err != nil {
		t.Fatalf("legacy token: %v", err)
	}
	s.Admin.Token = legacy
	if err := s.writeAdminFile(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openFake(t, dir, fc, maxLife, &log)
	if s.Admin.Token != legacy {
		t.Fatal("a working legacy admin token was replaced at start")
	}
	s.Close()
	fc.Advance(6 * 24 * time.Hour)
	s = openFake(t, dir, fc, maxLife, &log)
	defer s.Close()
	if s.Admin.Token == legacy {
		t.Fatal("a legacy admin token past half the maximum lifetime was kept")
	}
	if _, _, err := s.IDs.Authenticate(ctx, s.Admin.Token); err != nil {
		t.Fatalf("the admin token that replaced the legacy one: %v", err)
	}
	fc.Advance(5 * 24 * time.Hour)
	if _, _, err := s.IDs.Authenticate(ctx, legacy); !errors.Is(err, identity.ErrExpiredToken) {
		t.Fatalf("a legacy token older than the maximum lifetime: %v", err)
	}
}
