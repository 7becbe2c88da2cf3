package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"coffer/internal/identity"
	"coffer/internal/store"
	"coffer/internal/store/postgres/pgtest"
)

// TestNodesShareSecrets: three nodes start at once on one empty
// PostgreSQL database, each with its own data dir and given the same
// master key file (which the first creates). The tenant is
// bootstrapped exactly once (one tenant, one admin principal, one
// admin.json); every node has the same token-signing key, grant key and
// certificate authority, so a token issued by one is accepted by the
// others and each node's certificate verifies under every node's CA.
func TestNodesShareSecrets(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Start(t).NewDatabase(t)
	const n = 3
	srvs := make([]*Server, n)
	errs := make([]error, n)
	dirs := make([]string, n)
	var wg sync.WaitGroup
	masterKey := filepath.Join(t.TempDir(), "master.key")
	for i := range n {
		dirs[i] = filepath.Join(t.TempDir(), fmt.Sprint("node", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			srvs[i], errs[i] = Open(ctx, Config{DataDir: dirs[i], Listen: "127.0.0.1:0", NBDListen: "127.0.0.1:0", DB: db,
				TLS: true, PublicEndpoint: "https://coffer.example.test", NodeName: fmt.Sprint("node-", i), MasterKey: masterKey,
				Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))})
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		defer srvs[i].Close()
	}
	var admins []int
	for i := range n {
		if _, err := os.Stat(srvs[i].AdminPath()); err == nil {
			admins = append(admins, i)
		}
	}
	if len(admins) != 1 {
		t.Fatalf("admin.json on nodes %v, want on one", admins)
	}
	first := srvs[admins[0]]
	var principals, tenants int
	ps, err := first.IDs.List(ctx)
	principals = len(ps)
	if err != nil {
		t.Fatal(err)
	}
	err = first.Store().View(ctx, func(tx store.Tx) error {
		ts, err := tx.List(ctx, store.Query{Kind: kindTenant})
		tenants = len(ts)
		return err
	})
	if err != nil || principals != 1 || tenants != 1 {
		t.Fatalf("%d principals and %d tenants (%v), want one of each", principals, tenants, err)
	}
	for i, s := range srvs {
		if s.IDs.TenantID != first.IDs.TenantID {
			t.Errorf("node %d: tenant %s, want %s", i, s.IDs.TenantID, first.IDs.TenantID)
		}
		if _, _, err := s.IDs.Authenticate(ctx, first.Admin.Token); err != nil {
			t.Errorf("node %d refuses the admin token node %d issued: %v", i, admins[0], err)
		}
		if !bytes.Equal(s.Compute.GrantKey, first.Compute.GrantKey) {
			t.Errorf("node %d has a grant key of its own", i)
		}
		if !bytes.Equal(s.CAPEM(), first.CAPEM()) {
			t.Errorf("node %d has a CA of its own", i)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(first.CAPEM())
		leaf, err := x509.ParseCertificate(s.TLSConfig().Certificates[0].Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "coffer.example.test"}); err != nil {
			t.Errorf("node %d's certificate under the shared CA: %v", i, err)
		}
	}
	// A token signed with another key is refused by every node.
	other, err := identity.ParseSigner(must(identity.NewSignerKey()))
	if err != nil {
		t.Fatal(err)
	}
	_, c, _ := first.IDs.Authenticate(ctx, first.Admin.Token)
	forged, err := other.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range srvs {
		if _, _, err := s.IDs.Authenticate(ctx, forged); !errors.Is(err, identity.ErrBadSignature) {
			t.Errorf("node %d: a token signed with another key: %v, want ErrBadSignature", i, err)
		}
	}
	// The nodes' keys are in the store, not in their data dirs.
	for i := range n {
		for _, f := range []string{"signing.key", "grant.key"} {
			if _, err := os.Stat(filepath.Join(dirs[i], f)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("node %d has %s: %v", i, f, err)
			}
		}
	}
}

// TestSecretsFromDataDir: a data dir of a version that kept its keys in
// files (signing.key, grant.key, tls/) opens with those keys, which become
// the keys every node shares; a token issued before still works.
func TestSecretsFromDataDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key, err := identity.NewSignerKey()
	if err != nil {
		t.Fatal(err)
	}
	grant := bytes.Repeat([]byte{7}, 32)
	for f, b := range map[string][]byte{"signing.key": key, "grant.key": grant} {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The TLS files of a version that did not keep its CA's key.
	now := time.Now()
	pair, err := generateCA(now)
	if err != nil {
		t.Fatal(err)
	}
	if err := issueTLS(tlsFiles(dir), pair, now, nil); err != nil {
		t.Fatal(err)
	}
	oldCA, _ := os.ReadFile(tlsFiles(dir).CA)
	s, err := Open(ctx, Config{DataDir: dir, Listen: "127.0.0.1:0", NBDListen: "127.0.0.1:0", TLS: true,
		Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	signer, _ := identity.ParseSigner(key)
	if !bytes.Equal(s.IDs.Signer.PublicKey(), signer.PublicKey()) || !bytes.Equal(s.Compute.GrantKey, grant) {
		t.Fatal("the data dir's keys were not used")
	}
	for name, want := range map[string][]byte{secretSigningKey: key, secretGrantKey: grant} {
		got, err := s.SharedSecret(ctx, name)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("shared %s: %v, want the data dir's", name, err)
		}
	}
	if !bytes.Equal(s.CAPEM(), oldCA) {
		t.Error("the data dir's TLS certificate and CA were replaced")
	}
	if b, _ := pem.Decode(s.CAPEM()); b == nil {
		t.Error("no CA PEM")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
