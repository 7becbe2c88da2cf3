package operation

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/resource"
	"coffer/internal/store/sqlite"
)

func TestRunAndRecover(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m := &Manager{Store: st, Clock: fc}

	ok, _ := m.Start(ctx, Record{ResourceID: "/subscriptions/s", Kind: "k"}, func(ctx context.Context) (any, error) {
		return map[string]string{"jobId": "j"}, nil
	})
	bad, _ := m.Start(ctx, Record{ResourceID: "/subscriptions/s", Kind: "k"}, func(ctx context.Context) (any, error) {
		return nil, resource.Errorf(resource.KindConflict, "Nope", "no")
	})
	release := make(chan struct{})
	stuck, _ := m.Start(ctx, Record{ResourceID: "/subscriptions/s", Kind: "resumable"}, func(ctx context.Context) (any, error) {
		select {
		case <-release:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	lost, _ := m.Start(ctx, Record{ResourceID: "/subscriptions/s", Kind: "other"}, func(ctx context.Context) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	// Wait for the first two to finish.
	for _, id := range []string{ok.ID, bad.ID} {
		for {
			r, err := m.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status.IsTerminal() {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	r, _ := m.Get(ctx, ok.ID)
	if r.Status != Succeeded || string(r.Result) != `{"jobId":"j"}` {
		t.Fatalf("ok: %+v", r)
	}
	r, _ = m.Get(ctx, bad.ID)
	if r.Status != Failed || r.Error == nil || r.Error.Code != "Nope" || r.Error.Kind != resource.KindConflict {
		t.Fatalf("bad: %+v", r)
	}
	// Shut down with two operations running: they stay InProgress on disk.
	m.Shutdown()
	st.Close()

	st2, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	m2 := &Manager{Store: st2, Clock: fc}
	resumed := make(chan string, 1)
	err = m2.Recover(ctx, map[string]Resumer{"resumable": func(ctx context.Context, rec Record) (Func, bool) {
		return func(ctx context.Context) (any, error) { resumed <- rec.ID; return "done", nil }, true
	}})
	if err != nil {
		t.Fatal(err)
	}
	if id := <-resumed; id != stuck.ID {
		t.Fatalf("resumed %s, want %s", id, stuck.ID)
	}
	m2.Wait()
	r, _ = m2.Get(ctx, stuck.ID)
	if r.Status != Succeeded {
		t.Fatalf("resumed op: %+v", r)
	}
	r, _ = m2.Get(ctx, lost.ID)
	if r.Status != Failed || r.Error == nil || r.Error.Code != "OperationInterrupted" {
		t.Fatalf("interrupted op: %+v", r)
	}
	if _, err := m2.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown op: %v", err)
	}
	close(release)
}
