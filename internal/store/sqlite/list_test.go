package sqlite

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"coffer/internal/store"
)

// TestListUsesKeyIndex: a List under a prefix searches a key range of an
// index, with and without a kind, rather than scanning the table (LIKE
// did, as SQLite's LIKE folds ASCII case and the key columns do not).
func TestListUsesKeyIndex(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir()+"/meta.db")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(ctx, func(tx store.Tx) error {
		for i := range 100 {
			if err := tx.Put(ctx, &store.Object{Kind: "k", Key: fmt.Sprintf("/g%03d/d", i)}, store.PutOptions{}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []store.Query{
		{Kind: "k", Prefix: "/g042/"},
		{Prefix: "/g042/"},
		{Kind: "k", Prefix: "/g042/", After: "/g042/a", Limit: 5},
	} {
		stmt, args := listQuery(q)
		rows, err := s.ReadDB().QueryContext(ctx, "EXPLAIN QUERY PLAN "+stmt, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		if !strings.Contains(p, "SEARCH objects USING") || !strings.Contains(p, "key>? AND key<?") {
			t.Errorf("%+v: plan %q, want a key range search of an index", q, p)
		}
	}
}
