package location_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"coffer/internal/store"
	"coffer/internal/store/location"
	"coffer/internal/store/postgres"
	"coffer/internal/store/postgres/pgtest"
	"coffer/internal/store/sqlite"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		loc, kind, target, err string
	}{
		{"", "sqlite", "/data/metadata.db", ""},
		{"/var/lib/coffer/meta.db", "sqlite", "/var/lib/coffer/meta.db", ""},
		{"meta.db", "sqlite", "meta.db", ""},
		{"sqlite:///srv/meta.db", "sqlite", "/srv/meta.db", ""},
		{"file:///srv/meta.db", "sqlite", "/srv/meta.db", ""},
		{"postgres://u:secret@db:5432/coffer?sslmode=require", "postgres", "postgres://u:secret@db:5432/coffer?sslmode=require", ""},
		{"postgresql://db/coffer", "postgres", "postgresql://db/coffer", ""},
		{"sqlite://host/meta.db", "", "", "want sqlite:///ABSOLUTE/PATH"},
		{"mysql://u:secret@db/coffer", "", "", "unknown metadata store scheme"},
	} {
		kind, target, err := location.Parse(c.loc, "/data/metadata.db")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || strings.Contains(err.Error(), "secret") {
				t.Errorf("Parse(%q): %v, want an error with %q and no password", c.loc, err, c.err)
			}
			continue
		}
		if err != nil || kind != c.kind || target != c.target {
			t.Errorf("Parse(%q) = %s %s %v, want %s %s", c.loc, kind, target, err, c.kind, c.target)
		}
	}
	if _, _, err := location.Parse("mysql://x", ""); !errors.Is(err, location.ErrUnknownScheme) {
		t.Errorf("unknown scheme: %v", err)
	}
}

// TestOpen opens the same three things on each implementation: a path is
// SQLite, a postgres:// URL PostgreSQL, and each writes and reads.
func TestOpen(t *testing.T) {
	ctx := context.Background()
	locs := map[string]string{"sqlite": "sqlite://" + filepath.Join(t.TempDir(), "m.db")}
	if pg := pgtest.Start(t); pg != nil {
		locs["postgres"] = pg.NewDatabase(t)
	}
	for kind, loc := range locs {
		m, err := location.Open(ctx, loc, location.Options{})
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		defer m.Close()
		if m.Kind != kind {
			t.Errorf("%s opened as %s", loc, m.Kind)
		}
		switch m.Store.(type) {
		case *sqlite.Store:
			if kind != "sqlite" {
				t.Errorf("%s: a SQLite store", kind)
			}
		case *postgres.Store:
			if kind != "postgres" {
				t.Errorf("%s: a PostgreSQL store", kind)
			}
		}
		if err := m.Store.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Object{Kind: "k", Key: "/a"}, store.PutOptions{})
		}); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if st, err := m.Index.Stats(ctx); err != nil || st.Chunks != 0 {
			t.Fatalf("%s: index %+v %v", kind, st, err)
		}
	}
}
