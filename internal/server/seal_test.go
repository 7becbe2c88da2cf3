package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"coffer/internal/cluster"
	"coffer/internal/identity"
	"coffer/internal/store"
	"coffer/internal/store/sqlite"
)

func quietConfig(dir string) Config {
	return Config{DataDir: dir, Listen: "127.0.0.1:0", NBDListen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// copyDB copies the SQLite metadata database of the closed server in from
// into the data dir to (created), and nothing else of from.
func copyDB(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "metadata.db") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// secretRows reads the stored rows of the shared secrets of the metadata
// database in dir.
func secretRows(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows := map[string][]byte{}
	err = st.View(ctx, func(tx store.Tx) error {
		objs, err := tx.List(ctx, store.Query{Kind: "cluster.secret"})
		for _, o := range objs {
			rows[o.Key[strings.LastIndex(o.Key, "/")+1:]] = o.Data
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestDatabaseCopyCannotMintTokens: the shared secrets are sealed under the
// data dir's master key (master.key, 0600). A copy of the metadata
// database alone holds no key: no stored row is (or encodes) the signing
// key, nor parses as one; a server on that copy without the master key, or
// with another one, refuses to start with an error naming the key file;
// with a copy of the master key it starts and accepts the first server's
// tokens.
func TestDatabaseCopyCannotMintTokens(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "a")
	s, err := Open(ctx, quietConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	token := s.Admin.Token
	seed, err := s.SharedSecret(ctx, secretSigningKey)
	if err != nil {
		t.Fatal(err)
	}
	grant := s.Compute.GrantKey
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mkPath := filepath.Join(dir, MasterKeyFile)
	if fi, err := os.Stat(mkPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key file: %v (mode %v), want 0600", err, fi.Mode().Perm())
	}

	rows := secretRows(t, dir)
	if len(rows) < 2 {
		t.Fatalf("secret rows: %d, want the signing and grant keys", len(rows))
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(string(seed)))
	for name, row := range rows {
		for _, secret := range [][]byte{seed, raw, grant} {
			if len(secret) > 0 && bytes.Contains(row, secret) {
				t.Errorf("row %s holds a secret in clear", name)
			}
		}
		if _, err := identity.ParseSigner(row); err == nil {
			t.Errorf("row %s parses as a signing key", name)
		}
	}

	// A copy of the database without the master key.
	b := filepath.Join(t.TempDir(), "b")
	copyDB(t, dir, b)
	_, err = Open(ctx, quietConfig(b))
	if !errors.Is(err, cluster.ErrMasterKey) || !strings.Contains(err.Error(), "cannot unseal") || !strings.Contains(err.Error(), filepath.Join(b, MasterKeyFile)) {
		t.Fatalf("server on a database copy without the master key: %v", err)
	}
	// With another master key.
	other := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(other, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := quietConfig(b)
	cfg.MasterKey = other
	_, err = Open(ctx, cfg)
	if !errors.Is(err, cluster.ErrMasterKey) || !strings.Contains(err.Error(), "cannot unseal secret token-signing-key with master key "+other) {
		t.Fatalf("server on a database copy with another master key: %v", err)
	}
	// With the master key: the same installation.
	cfg.MasterKey = mkPath
	s2, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("server on a database copy with the master key: %v", err)
	}
	defer s2.Close()
	if _, _, err := s2.IDs.Authenticate(ctx, token); err != nil {
		t.Fatalf("the first server's token: %v", err)
	}
}

// TestClearSecretsAreSealedOnStart: a metadata database whose shared
// secrets are stored in clear (as the version before sealing stored them)
// and a data dir without master.key: the server starts, creates the master
// key, seals every row in place, and keeps the keys (tokens issued before
// still work).
func TestClearSecretsAreSealedOnStart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, quietConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	token := s.Admin.Token
	clear := map[string][]byte{}
	for _, name := range []string{secretSigningKey, secretGrantKey} {
		if clear[name], err = s.SharedSecret(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Back to the earlier version's state: rows in clear, no master key,
	// and none of the secrets later versions added (the portal's sign-in
	// key).
	st, err := sqlite.Open(ctx, filepath.Join(dir, "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx store.Tx) error {
		if err := tx.Delete(ctx, "cluster.secret", "/cluster/secrets/"+secretSigninKey); err != nil {
			return err
		}
		for name, b := range clear {
			if err := tx.Put(ctx, &store.Object{Kind: "cluster.secret", Key: "/cluster/secrets/" + name, Data: b}, store.PutOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err := errors.Join(err, st.Close()); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, MasterKeyFile)); err != nil {
		t.Fatal(err)
	}

	s, err = Open(ctx, quietConfig(dir))
	if err != nil {
		t.Fatalf("start over clear secrets: %v", err)
	}
	if _, _, err := s.IDs.Authenticate(ctx, token); err != nil {
		t.Errorf("a token issued before the upgrade: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, row := range secretRows(t, dir) {
		if c := clear[name]; c != nil && bytes.Contains(row, c) {
			t.Errorf("row %s still in clear after the upgrade", name)
		}
	}
}
