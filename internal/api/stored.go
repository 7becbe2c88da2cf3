package api

import (
	"context"
	"encoding/json"
	"fmt"

	"coffer/internal/store"
)

func decodeStored(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode stored %T: %w", v, err)
	}
	return nil
}

func putStored(ctx context.Context, tx store.Tx, kind, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %T: %w", v, err)
	}
	return tx.Put(ctx, &store.Object{Kind: kind, Key: key, Data: b}, store.PutOptions{})
}
