package dataprotection_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/store/memstore"
	"coffer/internal/store/postgres"
	"coffer/internal/store/postgres/pgtest"
	"coffer/internal/store/sqlite"
)

// countingStore counts what its callers ask of a metadata store:
// transactions, and the reads, writes and rows inside them.
type countingStore struct {
	store.Store
	updates, views, gets, puts, deletes, lists, rows atomic.Int64
}

func (c *countingStore) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	c.updates.Add(1)
	return c.Store.Update(ctx, func(tx store.Tx) error { return fn(countingTx{tx, c}) })
}

func (c *countingStore) View(ctx context.Context, fn func(tx store.Tx) error) error {
	c.views.Add(1)
	return c.Store.View(ctx, func(tx store.Tx) error { return fn(countingTx{tx, c}) })
}

// counts returns the counters as of now.
func (c *countingStore) counts() [7]int64 {
	return [7]int64{c.updates.Load(), c.views.Load(), c.gets.Load(), c.puts.Load(), c.deletes.Load(), c.lists.Load(), c.rows.Load()}
}

type countingTx struct {
	store.Tx
	c *countingStore
}

// UnwrapTx lets the PostgreSQL job queue reach its transaction.
func (t countingTx) UnwrapTx() store.Tx { return t.Tx }

func (t countingTx) Get(ctx context.Context, kind, key string) (store.Object, error) {
	t.c.gets.Add(1)
	return t.Tx.Get(ctx, kind, key)
}

func (t countingTx) Put(ctx context.Context, o *store.Object, opts store.PutOptions) error {
	t.c.puts.Add(1)
	return t.Tx.Put(ctx, o, opts)
}

func (t countingTx) Delete(ctx context.Context, kind, key string) error {
	t.c.deletes.Add(1)
	return t.Tx.Delete(ctx, kind, key)
}

func (t countingTx) List(ctx context.Context, q store.Query) ([]store.Object, error) {
	t.c.lists.Add(1)
	objs, err := t.Tx.List(ctx, q)
	t.c.rows.Add(int64(len(objs)))
	return objs, err
}

// scaleInstances is how many backup instances BenchmarkSchedulerTopOfHour
// protects.
var scaleInstances = flag.Int("scheduler.instances", 10000, "backup instances of BenchmarkSchedulerTopOfHour")

// BenchmarkSchedulerTopOfHour: one scheduler and 10,000 backup instances
// of an hourly policy, on a fake clock, on SQLite and on PostgreSQL. Each
// iteration moves the clock to the next top of the hour and runs one Tick;
// ns/op is the scheduling latency (from the hour until the last backup is
// queued), and the metrics the database load it causes: transactions
// (update-tx, view-tx), reads, writes and rows listed per Tick, as the
// metadata store's interface sees them (on PostgreSQL the job queue's own
// statements, an insert and a target lookup per backup, come on top). The
// first iteration queues 10,000 backups; later ones skip the instances
// whose backup of the hour before is still queued (no worker runs here),
// which costs about the same. The quiet-tick/* figures are a Tick at
// half past, when nothing is due (a Refresh, a wake for another instance).
//
//	go test ./internal/dataprotection -run '^$' -bench SchedulerTopOfHour -benchtime 1x
func BenchmarkSchedulerTopOfHour(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "meta.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		benchTopOfHour(b, st, nil)
	})
	b.Run("postgres", func(b *testing.B) {
		url := pgtest.Start(b).NewDatabase(b)
		st, err := postgres.Open(context.Background(), url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		benchTopOfHour(b, st, st.Queue())
	})
}

// benchTopOfHour runs the benchmark on st, with the job queue on backend
// (nil: the queue's objects in st, as on SQLite), as the server does.
func benchTopOfHour(b *testing.B, st store.Store, backend job.Backend) {
	ctx := context.Background()
	start := time.Date(2026, 6, 1, 9, 10, 0, 0, time.UTC)
	cs := &countingStore{Store: st}
	e := newEnvOn(b, cs, clock.NewFake(start), nil)
	if backend != nil {
		e.queue.Backend = backend
	}
	s := e.standard(true)
	p, err := dataprotection.BuildDiskPolicy(dataprotection.DiskPolicyOptions{Hours: 1, Time: "00:00", TimeZone: "UTC", Retention: "7d"})
	if err != nil {
		b.Fatal(err)
	}
	pol := e.policy(s.vault, "Hourly", p)
	e.protect(s.bi, biJSON(s.disk, "local", pol, s.snapRG.String()))
	cloneInstances(b, cs, s.bi, *scaleInstances-1)

	tick := func() (dataprotection.Fired, [7]int64, time.Duration) {
		c0 := cs.counts()
		t0 := time.Now()
		_, fired, err := e.sched.Tick(ctx)
		d := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		c1 := cs.counts()
		for i := range c1 {
			c1[i] -= c0[i]
		}
		return fired, c1, d
	}
	report := func(prefix string, c [7]int64, n int) {
		for i, name := range []string{"update-tx", "view-tx", "gets", "puts", "deletes", "lists", "rows-listed"} {
			b.ReportMetric(float64(c[i])/float64(n), prefix+name+"/op")
		}
	}
	// The first Tick after protection plans every instance: at 9:10
	// nothing is due yet.
	e.clk.Set(start.Truncate(time.Hour).Add(30 * time.Minute))
	fired, quiet, quietDur := tick()
	if len(fired.Backups) != 0 {
		b.Fatalf("a quiet tick queued %d backups", len(fired.Backups))
	}
	var sum [7]int64
	b.ResetTimer()
	for i := range b.N {
		e.clk.Set(start.Truncate(time.Hour).Add(time.Duration(i+1) * time.Hour))
		fired, c, _ := tick()
		if got := len(fired.Backups) + len(fired.Skipped); got != *scaleInstances {
			b.Fatalf("top of hour %d: %d backups queued and %d skipped, want %d in all", i+1, len(fired.Backups), len(fired.Skipped), *scaleInstances)
		}
		if i == 0 && len(fired.Backups) != *scaleInstances {
			b.Fatalf("first top of the hour: %d backups queued, want %d", len(fired.Backups), *scaleInstances)
		}
		for k := range c {
			sum[k] += c[k]
		}
	}
	b.StopTimer()
	report("", sum, b.N)
	report("quiet-tick/", quiet, 1)
	b.ReportMetric(quietDur.Seconds(), "quiet-tick-s")
}

// cloneInstances copies the stored record of backup instance bi n times,
// each protecting a disk of its own, in batches of one transaction each.
func cloneInstances(b testing.TB, st store.Store, bi resource.ID, n int) {
	ctx := context.Background()
	var proto store.Object
	err := st.View(ctx, func(tx store.Tx) error {
		objs, err := tx.List(ctx, store.Query{Prefix: bi.Key()})
		for _, o := range objs {
			if o.Key == bi.Key() && strings.Contains(o.Kind, "nstance") {
				proto = o
			}
		}
		return err
	})
	if err != nil || proto.Kind == "" {
		b.Fatalf("the instance record of %s: %v", bi, err)
	}
	var m map[string]any
	if err := json.Unmarshal(proto.Data, &m); err != nil {
		b.Fatal(err)
	}
	disk := m["diskId"].(string)
	const batch = 1000
	for lo := 0; lo < n; lo += batch {
		err := st.Update(ctx, func(tx store.Tx) error {
			for i := lo; i < min(lo+batch, n); i++ {
				name := fmt.Sprintf("bi-%05d", i)
				id := bi.Parent().Child("backupInstances", name)
				res := m["resource"].(map[string]any)
				res["id"], res["name"] = id.String(), name
				m["diskId"] = fmt.Sprintf("%s-%05d", disk, i)
				data, err := json.Marshal(m)
				if err != nil {
					return err
				}
				if err := tx.Put(ctx, &store.Object{Kind: proto.Kind, Key: id.Key(), Data: data}, store.PutOptions{}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// hourlyFleet is an env on st at start with n backup instances of the
// standard disk under one hourly policy (the standard instance and n-1
// copies, bi-00001 …).
func hourlyFleet(t *testing.T, st store.Store, start time.Time, n int) (*env, standard) {
	t.Helper()
	e := newEnvOn(t, st, clock.NewFake(start), nil)
	s := e.standard(true)
	p, err := dataprotection.BuildDiskPolicy(dataprotection.DiskPolicyOptions{Hours: 1, Time: "00:00", TimeZone: "UTC", Retention: "7d"})
	if err != nil {
		t.Fatal(err)
	}
	pol := e.policy(s.vault, "Hourly", p)
	e.protect(s.bi, biJSON(s.disk, "local", pol, s.snapRG.String()))
	cloneInstances(t, st, s.bi, n-1)
	return e, s
}

// TestQuietTickWritesNothing: a Tick at which nothing is due plans every
// instance in one read-only transaction and opens no write transaction
// (it opened one per instance before); at the top of the hour the due
// instances are fired in write transactions of FireBatch instances each
// (it was one per instance before).
func TestQuietTickWritesNothing(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 6, 1, 9, 10, 0, 0, time.UTC)
	cs := &countingStore{Store: memstore.New()}
	const n = 20
	e, _ := hourlyFleet(t, cs, start, n)
	e.sched.FireBatch = 8

	// The first Tick also cleans up old jobs (daily), which writes.
	if _, _, err := e.sched.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	e.clk.Set(start.Add(20 * time.Minute))
	u0 := cs.updates.Load()
	next, fired, err := e.sched.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u := cs.updates.Load() - u0; u != 0 || len(fired.Backups) != 0 {
		t.Fatalf("a tick with nothing due made %d write transactions and queued %d backups, want none", u, len(fired.Backups))
	}
	if want := start.Truncate(time.Hour).Add(time.Hour); !next.Equal(want) {
		t.Fatalf("next wake %s, want the top of the hour %s", next, want)
	}

	e.clk.Set(next)
	u0 = cs.updates.Load()
	if _, fired, err = e.sched.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if len(fired.Backups) != n {
		t.Fatalf("top of the hour: %d backups queued, want %d", len(fired.Backups), n)
	}
	if u, want := cs.updates.Load()-u0, int64((n+e.sched.FireBatch-1)/e.sched.FireBatch); u != want {
		t.Fatalf("top of the hour: %d write transactions for %d due instances, want %d (batches of %d)", u, n, want, e.sched.FireBatch)
	}
}

// TestFireBatchIsolatesAnError: at the top of the hour, one instance of
// ten whose policy is gone fails its batch's write transaction; the batch
// is fired again one instance per transaction, so the other nine are
// queued and only that one is not. A second Tick of the same slot queues
// nothing again (each slot once).
func TestFireBatchIsolatesAnError(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 6, 1, 9, 10, 0, 0, time.UTC)
	cs := &countingStore{Store: memstore.New()}
	const n = 10
	e, s := hourlyFleet(t, cs, start, n)
	e.sched.FireBatch = 4
	broken := s.bi.Parent().Child("backupInstances", "bi-00005")
	err := cs.Update(ctx, func(tx store.Tx) error {
		objs, err := tx.List(ctx, store.Query{Prefix: broken.Key()})
		if err != nil {
			return err
		}
		for _, o := range objs {
			if o.Key != broken.Key() {
				continue
			}
			o.Data = []byte(strings.Replace(string(o.Data), "/backupPolicies/Hourly", "/backupPolicies/Gone", 1))
			return tx.Put(ctx, &o, store.PutOptions{})
		}
		return fmt.Errorf("no record of %s", broken)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.sched.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	e.clk.Set(start.Truncate(time.Hour).Add(time.Hour))
	_, fired, err := e.sched.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fired.Backups) != n-1 {
		t.Fatalf("top of the hour: %d backups queued, want %d", len(fired.Backups), n-1)
	}
	if _, fired, err = e.sched.Tick(ctx); err != nil || len(fired.Backups) != 0 {
		t.Fatalf("the same slot again: %d backups queued (%v), want none", len(fired.Backups), err)
	}
}

// firstUpdateHook runs hook (once, when set) before its next Update.
type firstUpdateHook struct {
	store.Store
	hook func()
}

func (f *firstUpdateHook) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	if h := f.hook; h != nil {
		f.hook = nil
		h()
	}
	return f.Store.Update(ctx, fn)
}

// TestFireSpanMissesNoInstance: an instance made between a Tick's plan and
// its write transaction, among the due instances in key order, pushes the
// last of them out of the batch's ranged read; that one is read alone and
// queued like the others.
func TestFireSpanMissesNoInstance(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 6, 1, 9, 10, 0, 0, time.UTC)
	st := &firstUpdateHook{Store: memstore.New()}
	const n = 6
	e, s := hourlyFleet(t, st, start, n)
	if _, _, err := e.sched.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	e.clk.Set(start.Truncate(time.Hour).Add(time.Hour))
	st.hook = func() {
		// A copy of bi-00001, under a name between bi-00001 and bi-00002.
		err := st.Store.Update(ctx, func(tx store.Tx) error {
			src := s.bi.Parent().Child("backupInstances", "bi-00001")
			objs, err := tx.List(ctx, store.Query{Prefix: src.Key()})
			if err != nil {
				return err
			}
			for _, o := range objs {
				if o.Key == src.Key() {
					o.Key += "a"
					o.Data = []byte(strings.ReplaceAll(string(o.Data), "bi-00001", "bi-00001a"))
					return tx.Put(ctx, &o, store.PutOptions{})
				}
			}
			return fmt.Errorf("no record of %s", src)
		})
		if err != nil {
			t.Error(err)
		}
	}
	_, fired, err := e.sched.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fired.Backups) != n {
		t.Fatalf("top of the hour: %d backups queued, want %d", len(fired.Backups), n)
	}
}
