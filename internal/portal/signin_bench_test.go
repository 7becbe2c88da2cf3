package portal

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/identity"
	"coffer/internal/store"
	"coffer/internal/store/postgres"
	"coffer/internal/store/postgres/pgtest"
	"coffer/internal/store/sqlite"
)

// BenchmarkSigninFailure measures what the sign-in rate limit asks of the
// metadata store, on SQLite and on PostgreSQL, against the check of the
// client secret that every failed sign-in (and every failed token
// request) makes anyway, in the same run:
//
//   - check-secret: identity.CheckClientSecret of a known client with a
//     wrong secret (one read-only transaction, two reads), the reference;
//
//   - blocked: the limiter's look before each attempt (one read-only
//     transaction, two reads), all an attempt costs once it is refused;
//
//   - failure: the look and the count of one failure (one serializable
//     write transaction, two reads and two writes; a sweep of expired rows
//     at most once a minute), each from another address for another
//     client ID, as a spraying attacker's attempts are, so none is
//     refused;
//
//   - spray-64: failures as in failure, 64 at a time, counted by group
//     commit; reports the write transactions per failure.
//
//     go test ./internal/portal -run '^$' -bench SigninFailure
func BenchmarkSigninFailure(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "meta.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		benchSigninFailure(b, db)
	})
	b.Run("postgres", func(b *testing.B) {
		db, err := postgres.Open(context.Background(), pgtest.Start(b).NewDatabase(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		benchSigninFailure(b, db)
	})
}

func benchSigninFailure(b *testing.B, db store.Store) {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ids := &identity.Service{Store: db, Clock: clk}
	p, _, err := ids.Create(ctx, identity.CreateOptions{Kind: identity.ServicePrincipal, DisplayName: "bench", WithSecret: true})
	if err != nil {
		b.Fatal(err)
	}
	l := newSigninLimiter(db, clk)
	b.Run("check-secret", func(b *testing.B) {
		for b.Loop() {
			if _, err := ids.CheckClientSecret(ctx, p.ClientID, "wrong"); !errors.Is(err, identity.ErrInvalidClient) {
				b.Fatal(err)
			}
		}
	})
	b.Run("blocked", func(b *testing.B) {
		for b.Loop() {
			if _, err := l.blocked(ctx, "10.0.0.1", p.ClientID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("failure", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			addr, client := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), fmt.Sprintf("client-%d", i)
			wait, err := l.blocked(ctx, addr, client)
			if err != nil || wait > 0 {
				b.Fatalf("attempt %d refused for %s (%v)", i, wait, err)
			}
			if err := l.fail(ctx, addr, client); err != nil {
				b.Fatal(err)
			}
			clk.Advance(time.Second)
		}
	})
	// A spray: 64 attempts at a time, each from another address for
	// another client ID; reports the write transactions per failure
	// (group commit: 1 when each failure wrote alone).
	b.Run("spray-64", func(b *testing.B) {
		var n atomic.Int64
		before := l.batches.Load()
		b.SetParallelism(64 / max(1, runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1) + 1<<20
				addr, client := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), fmt.Sprintf("spray-%d", i)
				if err := l.fail(ctx, addr, client); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(l.batches.Load()-before)/float64(n.Load()), "writes/failure")
	})
}
