package memstore_test

import (
	"testing"

	"coffer/internal/store"
	"coffer/internal/store/memstore"
	"coffer/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		s := memstore.New()
		return s, func() store.Store { return s }
	})
}
