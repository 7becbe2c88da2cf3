package postgres_test

import (
	"context"
	"testing"

	"coffer/internal/store"
	"coffer/internal/store/postgres"
	"coffer/internal/store/postgres/pgtest"
	"coffer/internal/store/storetest"
)

// open opens the store at url, closed when the test ends.
func open(t *testing.T, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	c := pgtest.Start(t)
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		url := c.NewDatabase(t)
		return open(t, url), func() store.Store { return open(t, url) }
	})
}
