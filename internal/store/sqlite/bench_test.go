package sqlite

import (
	"context"
	"fmt"
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

// BenchmarkListPrefix lists the 10 objects under one prefix of a store
// that holds 20,000 others outside it (a resource group's disks among a
// tenant's), with and without a kind: the key range is served by the
// (kind, key) and key indexes, so the cost follows the 10, not the 20,000.
func BenchmarkListPrefix(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, b.TempDir()+"/meta.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(ctx, func(tx store.Tx) error {
		for i := range 20000 {
			key := fmt.Sprintf("/subscriptions/s/resourcegroups/g%05d/disks/d", i)
			if err := tx.Put(ctx, &store.Object{Kind: "disk", Key: key, Data: []byte(`{}`)}, store.PutOptions{}); err != nil {
				return err
			}
		}
		for i := range 10 {
			key := fmt.Sprintf("/subscriptions/s/resourcegroups/mine/disks/d%d", i)
			if err := tx.Put(ctx, &store.Object{Kind: "disk", Key: key, Data: []byte(`{}`)}, store.PutOptions{}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for _, kind := range []string{"disk", ""} {
		b.Run("kind="+kind, func(b *testing.B) {
			q := store.Query{Kind: kind, Prefix: "/subscriptions/s/resourcegroups/mine/"}
			for b.Loop() {
				if err := s.View(ctx, func(tx store.Tx) error {
					l, err := tx.List(ctx, q)
					if err == nil && len(l) != 10 {
						err = fmt.Errorf("%d objects, want 10", len(l))
					}
					return err
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
