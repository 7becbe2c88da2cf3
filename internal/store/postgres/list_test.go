package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"coffer/internal/store"
	"coffer/internal/store/postgres/pgtest"
)

// TestListUsesKeyIndex: a List under a prefix is an index range scan
// (Index Cond on key >= and key <), with and without a kind, in a table
// of many keys outside the prefix.
func TestListUsesKeyIndex(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Start(t)
	s, err := Open(ctx, c.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(ctx, func(tx store.Tx) error {
		for i := range 2000 {
			if err := tx.Put(ctx, &store.Object{Kind: "k", Key: fmt.Sprintf("/g%04d/d", i)}, store.PutOptions{}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.Exec(ctx, "ANALYZE objects"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []store.Query{
		{Kind: "k", Prefix: "/g0042/"},
		{Prefix: "/g0042/"},
		{Kind: "k", Prefix: "/g0042/", After: "/g0042/a", Limit: 5},
	} {
		stmt, args := listQuery(q)
		rows, err := s.r.Query(ctx, "EXPLAIN "+stmt, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, strings.TrimSpace(line))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		p := strings.Join(plan, "\n")
		if !strings.Contains(p, "Index Cond: (") || !strings.Contains(p, "(key >= ") || !strings.Contains(p, "(key < ") || strings.Contains(p, "Seq Scan") {
			t.Errorf("%+v: plan\n%s\nwant an index range scan on key", q, p)
		}
	}
}
