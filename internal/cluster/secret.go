package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"coffer/internal/seal"
	"coffer/internal/store"
)

const kindSecret = "cluster.secret"

func secretKey(name string) string { return "/cluster/secrets/" + strings.ToLower(name) }

// ErrMasterKey is returned (wrapped) when the shared secrets cannot be
// unsealed: the master key file is missing, malformed, or not the one they
// were sealed with.
var ErrMasterKey = errors.New("wrong or missing master key")

// sealedPrefix starts every sealed secret row:
// "coffer-sealed-v1:" KEYID ":" base64(nonce || AES-256-GCM ciphertext),
// where KEYID names the master key (keyID) and the secret's name is the
// additional data, so that a sealed row moved under another name does not
// open. Rows without the prefix were written in clear by an earlier
// version; Secret seals them the first time it reads them.
const sealedPrefix = "coffer-sealed-v1:"

// MasterKey seals the shared secrets stored in the metadata store, so that
// a copy of the database alone (a backup, a replica, a dump) holds no key
// that can mint a token, sign a grant or issue a certificate. Every node
// holds the same key in a file (DATA/master.key or --master-key), owner-
// only; the first node creates it.
type MasterKey struct {
	path   string
	sealer *seal.Sealer
	id     string // names the key in sealed rows (a hash of it)
}

// OpenMasterKey reads the master key file at path. When the file does not
// exist and st holds no sealed secret (the first start of the first node,
// or an upgrade from a version that stored them in clear), it creates one:
// 32 random bytes in base64, mode 0600. When st already holds sealed
// secrets, a missing file is an error naming it: another node sealed them,
// and this one must be given that node's file.
func OpenMasterKey(ctx context.Context, st store.Store, path string) (*MasterKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return parseMasterKey(path, b)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read master key %s: %w", path, err)
	}
	var sealed string
	err = st.View(ctx, func(tx store.Tx) error {
		objs, err := tx.List(ctx, store.Query{Kind: kindSecret})
		sealed = ""
		for _, o := range objs {
			if bytes.HasPrefix(o.Data, []byte(sealedPrefix)) {
				sealed = o.Key
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read shared secrets: %w", err)
	}
	// Read the file again: another node given the same file may have
	// created it, and sealed with it, since the first read.
	if b, err := os.ReadFile(path); err == nil {
		return parseMasterKey(path, b)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read master key %s: %w", path, err)
	}
	if sealed != "" {
		return nil, fmt.Errorf("cannot unseal the shared secrets with master key %s: the file does not exist; "+
			"the metadata store's secrets were sealed by another node: copy its master key file here (mode 0600) or name it with --master-key: %w",
			path, ErrMasterKey)
	}
	key := make([]byte, seal.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("create master key %s: %w", path, err)
	}
	// Write a temporary file, then link it to path: the file appears
	// whole, and only if no other process created one meanwhile.
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".master.key-*")
	if err != nil {
		return nil, fmt.Errorf("create master key %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if werr == nil {
		werr = tmp.Chmod(0o600)
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("create master key %s: %w", path, werr)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, os.ErrExist) {
		// Created meanwhile (another node given the same file): use it.
		if b, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("read master key %s: %w", path, err)
		}
		return parseMasterKey(path, b)
	} else if err != nil {
		return nil, fmt.Errorf("create master key %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err == nil {
		err = errors.Join(d.Sync(), d.Close())
	}
	if err != nil {
		return nil, fmt.Errorf("create master key %s: sync %s: %w", path, dir, err)
	}
	return newMasterKey(path, key)
}

// parseMasterKey decodes the contents b of the master key file path.
func parseMasterKey(path string, b []byte) (*MasterKey, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != seal.KeySize {
		return nil, fmt.Errorf("master key %s: want %d bytes in base64 on one line: %w", path, seal.KeySize, ErrMasterKey)
	}
	return newMasterKey(path, key)
}

func newMasterKey(path string, key []byte) (*MasterKey, error) {
	sl, err := seal.New(key)
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	sum := sha256.Sum256(append([]byte("coffer master key id\x00"), key...))
	return &MasterKey{path: path, sealer: sl, id: hex.EncodeToString(sum[:8])}, nil
}

// Path returns the file the key was read from.
func (k *MasterKey) Path() string { return k.path }

// seal returns the sealed row data of the secret name.
func (k *MasterKey) seal(name string, clear []byte) ([]byte, error) {
	box, err := k.sealer.Seal(secretKey(name), string(clear))
	if err != nil {
		return nil, fmt.Errorf("seal secret %s: %w", name, err)
	}
	return []byte(sealedPrefix + k.id + ":" + box), nil
}

// unseal opens the sealed row data of the secret name.
func (k *MasterKey) unseal(name string, data []byte) ([]byte, error) {
	id, box, ok := strings.Cut(strings.TrimPrefix(string(data), sealedPrefix), ":")
	if !ok {
		return nil, fmt.Errorf("cannot unseal secret %s with master key %s: malformed sealed secret: %w", name, k.path, ErrMasterKey)
	}
	if id != k.id {
		return nil, fmt.Errorf("cannot unseal secret %s with master key %s: it was sealed with master key %s, the file holds key %s; "+
			"every node needs the same master key file: %w", name, k.path, id, k.id, ErrMasterKey)
	}
	clear, err := k.sealer.Open(secretKey(name), box)
	if err != nil {
		return nil, fmt.Errorf("cannot unseal secret %s with master key %s: %w: %w", name, k.path, err, ErrMasterKey)
	}
	return []byte(clear), nil
}

// Secret returns the secret that every node sharing st uses under name
// (the token-signing key, the grant key, the TLS certificate authority):
// the one stored, or, when none is, the one create makes, stored
// create-only, so that of nodes starting at once exactly one stores its
// secret and all use that one. create runs outside the transaction (it
// may read a file or generate a key) and at most once; its result is
// dropped when another node's was stored first.
//
// Secrets are stored sealed under mk (AES-256-GCM, the secret's name as
// additional data): the row is not the key. A row an earlier version
// stored in clear is sealed in place the first time it is read. A row
// sealed under another master key fails with ErrMasterKey, naming mk's
// file.
func Secret(ctx context.Context, st store.Store, mk *MasterKey, name string, create func() ([]byte, error)) ([]byte, error) {
	if mk == nil {
		return nil, fmt.Errorf("secret %s: no master key: %w", name, ErrMasterKey)
	}
	// read returns the stored row, sealing it first if it is in clear.
	read := func() ([]byte, error) {
		var data []byte
		err := st.Update(ctx, func(tx store.Tx) error {
			o, err := tx.Get(ctx, kindSecret, secretKey(name))
			if err != nil {
				return err
			}
			data = o.Data
			if bytes.HasPrefix(o.Data, []byte(sealedPrefix)) || len(o.Data) == 0 {
				return nil
			}
			// Stored in clear by an earlier version: seal it in place.
			b, err := mk.seal(name, o.Data)
			if err != nil {
				return err
			}
			sealed := &store.Object{Kind: kindSecret, Key: o.Key, Data: b}
			if err := tx.Put(ctx, sealed, store.PutOptions{MatchIndex: o.ModifyIndex}); err != nil {
				return err
			}
			data = sealed.Data
			return nil
		})
		if err != nil {
			return nil, err
		}
		return mk.unseal(name, data)
	}
	b, err := read()
	if err == nil || errors.Is(err, ErrMasterKey) {
		return b, err
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	fresh, err := create()
	if err != nil {
		return nil, fmt.Errorf("create secret %s: %w", name, err)
	}
	if len(fresh) == 0 {
		return nil, fmt.Errorf("create secret %s: empty", name)
	}
	sealed, err := mk.seal(name, fresh)
	if err != nil {
		return nil, err
	}
	err = st.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Object{Kind: kindSecret, Key: secretKey(name), Data: sealed}, store.PutOptions{CreateOnly: true})
	})
	if errors.Is(err, store.ErrConflict) {
		return read()
	}
	if err != nil {
		return nil, fmt.Errorf("store secret %s: %w", name, err)
	}
	return fresh, nil
}
