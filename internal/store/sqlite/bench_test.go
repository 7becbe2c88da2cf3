package sqlite

import (
	"context"
	"testing"

	"coffer/internal/store"
)

// BenchmarkViewGet is a request's typical read: a read transaction and
// one object by key.
func BenchmarkViewGet(b *testing.B) {
	s, err := Open(context.Background(), b.TempDir()+"/meta.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Object{Kind: "k", Key: "/a", Data: []byte(`{"name":"a"}`)}, store.PutOptions{})
	}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.View(ctx, func(tx store.Tx) error {
			_, err := tx.Get(ctx, "k", "/a")
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
}
