package operation_test

import (
	"context"
	"encoding/json"
	"fmt"
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

// BenchmarkRunning measures Running (what each node's start reads) on
// SQLite with 5000 ended operations kept and 10 in progress: "index" reads
// the index of the operations in progress, against "scan", every record
// (what it reads on a store whose index is not built yet, and what it read
// before the index), as the reference.
func BenchmarkRunning(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "m.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	a := newNode(b, func(testing.TB) (store.Store, job.Backend) { return st, job.Objects{Store: st} }, "a", clock.Real{})
	a.m.Register("k", func(ctx context.Context, rec operation.Record) (any, error) { return "ok", nil })
	err = st.Update(ctx, func(tx store.Tx) error {
		for i := range 5000 {
			r := rec("k")
			r.ID, r.Status, r.StartTime, r.EndTime = fmt.Sprintf("ended-%05d", i), operation.Succeeded, t0, t0
			data, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := tx.Put(ctx, &store.Object{Kind: "operation", Key: "/operations/" + r.ID, Data: data}, store.PutOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for range 10 {
		if _, err := a.m.Start(ctx, rec("k"), nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := a.m.Recover(ctx); err != nil { // builds the index
		b.Fatal(err)
	}
	var marker store.Object
	if err := st.View(ctx, func(tx store.Tx) error {
		marker, err = tx.Get(ctx, "operation.index", "/inprogress")
		return err
	}); err != nil {
		b.Fatal(err)
	}
	setMarker := func(on bool) {
		err := st.Update(ctx, func(tx store.Tx) error {
			if on {
				return tx.Put(ctx, &store.Object{Kind: marker.Kind, Key: marker.Key, Data: marker.Data}, store.PutOptions{})
			}
			return tx.Delete(ctx, marker.Kind, marker.Key)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name  string
		index bool
	}{{"scan", false}, {"index", true}} {
		setMarker(c.index)
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				run, err := a.m.Running(ctx)
				if err != nil || len(run) != 1 {
					b.Fatalf("running: %v %v", run, err)
				}
			}
		})
	}
}
