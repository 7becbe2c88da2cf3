package operation_test

import (
	"context"
	"path/filepath"
	"testing"

	"coffer/internal/clock"
	"coffer/internal/job"
	"coffer/internal/operation"
	"coffer/internal/store"
	"coffer/internal/store/sqlite"
)

// BenchmarkOperation measures what an operation costs on SQLite: "queued"
// starts one and runs it through a worker (the record and task written
// together, leased, run and completed with the ack), against "recorded",
// the one write of an operation that ends in its request (Complete), as
// the reference.
func BenchmarkOperation(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "m.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	a := newNode(b, func(testing.TB) (store.Store, job.Backend) { return st, job.Objects{Store: st} }, "a", clock.Real{})
	a.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) { return "ok", nil })
	b.Run("recorded", func(b *testing.B) {
		for b.Loop() {
			if _, err := a.m.Complete(ctx, rec("k"), "ok", nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("queued", func(b *testing.B) {
		for b.Loop() {
			if _, err := a.m.Start(ctx, rec("k"), nil); err != nil {
				b.Fatal(err)
			}
			if err := a.pool.Drain(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
