package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"coffer/internal/store"
)

const kindSecret = "cluster.secret"

func secretKey(name string) string { return "/cluster/secrets/" + strings.ToLower(name) }

// Secret returns the secret that every node sharing st uses under name
// (the token-signing key, the grant key, the TLS certificate authority):
// the one stored, or, when none is, the one create makes, stored
// create-only, so that of nodes starting at once exactly one stores its
// secret and all use that one. create runs outside the transaction (it
// may read a file or generate a key) and at most once; its result is
// dropped when another node's was stored first.
//
// Secrets are stored as they are: the metadata database must be guarded
// as the credentials it holds (see docs/operations.md).
func Secret(ctx context.Context, st store.Store, name string, create func() ([]byte, error)) ([]byte, error) {
	read := func() ([]byte, error) {
		var b []byte
		err := st.View(ctx, func(tx store.Tx) error {
			o, err := tx.Get(ctx, kindSecret, secretKey(name))
			if err != nil {
				return err
			}
			b = o.Data
			return nil
		})
		return b, err
	}
	b, err := read()
	if err == nil {
		return b, nil
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
	err = st.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Object{Kind: kindSecret, Key: secretKey(name), Data: fresh}, store.PutOptions{CreateOnly: true})
	})
	if errors.Is(err, store.ErrConflict) {
		if b, err = read(); err == nil {
			return b, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("store secret %s: %w", name, err)
	}
	return fresh, nil
}
