// Package postgres implements Coffer's metadata on PostgreSQL with pgx:
// store.Store (objects, kind indexes), the chunk store's index
// (chunkstore.Index, chunkindex.go) and the job queue's tasks (job.Backend,
// queue.go), each in its own tables, created by embedded SQL migrations
// applied in order when the store opens (as store/sqlite does).
//
// Updates run at SERIALIZABLE, concurrently, and Update re-runs its
// function when PostgreSQL reports a serialization failure or a deadlock
// (the store contract allows it): a bounded number of attempts with
// jittered exponential backoff, for as long as the caller's context lasts.
// Views are REPEATABLE READ READ ONLY snapshots. Views and Updates draw
// connections from separate pools, so a View inside an Update's function
// never waits for a connection that an Update holds.
//
// Indexes come from a sequence. Every Update that wrote objects ends by
// writing the kind_index rows of the kinds it wrote, so two overlapping
// writers of one kind conflict there and the later one re-runs with a new,
// larger index: per kind, indexes follow commit order (store.Tx.KindIndex),
// and a View's Index is the largest of them. So that a busy kind costs each
// writer about one re-run rather than one per concurrent writer, a writer
// holds an advisory lock per kind when it writes those rows, and a re-run
// waits for the locks of the kinds its earlier runs wrote before its
// transaction (and so its snapshot) begins: no writer of those kinds can
// commit between its snapshot and its end.
//
// Deadlock freedom: the only waits for these locks happen before a
// transaction begins, by a connection that holds nothing else, in one
// order (by lock key). At its end a transaction only tries the locks of
// the kinds it wrote (it holds row locks by then, which a lock's holder
// may be waiting for); a lock that is taken ends the run, and the next run
// waits for it before it begins.
//
// Stalled holders: a node that stops mid-write (a frozen or paused process,
// a hung disk under its function) keeps its TCP connection, and with it its
// row and advisory locks, for as long as it is stopped; every writer of the
// same rows or kinds on every node would wait for it. So a session of this
// store that sits idle for StallTimeout while it holds locks is ended by
// PostgreSQL, which releases them: inside a transaction by
// idle_in_transaction_session_timeout (set on every connection unless the
// URL sets it), and while it holds session advisory locks outside one (the
// kind locks before a transaction begins, the migration lock) by
// idle_session_timeout, armed only while those locks are held (the reason
// the store needs PostgreSQL 14 or later). The stalled node's own work then
// fails with a broken connection, as after a network cut.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"coffer/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a PostgreSQL-backed store.Store.
type Store struct {
	w *pgxpool.Pool // Updates, chunk index and queue writes
	r *pgxpool.Pool // Views and lookups

	// MaxAttempts bounds the runs of one Update (and of one chunk index
	// or queue write) that serialization failures cause.
	MaxAttempts int

	// lockedHook, when set (tests), runs after an Update's kind locks are
	// taken and before its transaction begins.
	lockedHook func()

	retries   atomic.Uint64 // transactions run again (WriteMetrics)
	deadlocks atomic.Uint64 // runs that PostgreSQL ended as deadlocked
	exhausted atomic.Uint64 // transactions that failed after MaxAttempts
}

var _ store.Store = (*Store)(nil)

// DefaultMaxAttempts is Store.MaxAttempts of an opened store.
const DefaultMaxAttempts = 30

// StallTimeout is how long a session of the store may sit idle while it
// holds locks before PostgreSQL ends it (see the package doc), unless the
// URL sets idle_in_transaction_session_timeout itself. No Update function
// of Coffer's waits that long between two statements; a node that does is
// stopped, and its locks must not stop every other node.
const StallTimeout = 30 * time.Second

const idleInTx = "idle_in_transaction_session_timeout"

// Open connects to the database at url (postgres://user:pass@host:port/db?…,
// or pgx's key=value form; pool_max_conns sets the size of each of the
// two pools) and applies the migrations it lacks.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's error would repeat the URL, password included.
		return nil, errors.New("open postgres: the URL does not parse (postgres://user:password@host:port/database?options)")
	}
	if _, ok := cfg.ConnConfig.RuntimeParams[idleInTx]; !ok {
		cfg.ConnConfig.RuntimeParams[idleInTx] = strconv.FormatInt(StallTimeout.Milliseconds(), 10)
	}
	w, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	r, err := pgxpool.NewWithConfig(ctx, cfg.Copy())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	s := &Store{w: w, r: r, MaxAttempts: DefaultMaxAttempts}
	if err := s.checkServer(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the pools.
func (s *Store) Close() error {
	s.w.Close()
	s.r.Close()
	return nil
}

// Migrations returns the names of the schema migrations this build embeds,
// in the order they apply.
func Migrations() []string {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		panic(err) // only a malformed pattern fails
	}
	sort.Strings(names)
	return names
}

// Applied returns the names of the migrations applied to the database, in
// order.
func (s *Store) Applied(ctx context.Context) ([]string, error) {
	rows, err := s.r.Query(ctx, `SELECT name FROM schema_migrations ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list applied migrations: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list applied migrations: %w", err)
	}
	return out, nil
}

// minServerVersion is the oldest PostgreSQL the store runs on (as
// server_version_num): 14, the first with idle_session_timeout, which
// guards the session advisory locks taken outside a transaction (armIdle).
// PostgreSQL 13 reached its end of life in November 2025.
const minServerVersion = 140000

// checkServer refuses a server older than minServerVersion.
func (s *Store) checkServer(ctx context.Context) error {
	var version int
	if err := s.r.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return fmt.Errorf("open postgres: read the server's version: %w", err)
	}
	return supportedServer(version)
}

// ErrServerTooOld is returned by Open for a server older than PostgreSQL 14.
var ErrServerTooOld = errors.New("the PostgreSQL server is older than 14, the oldest Coffer runs on")

// supportedServer says whether a server of version (server_version_num)
// is one the store runs on.
func supportedServer(version int) error {
	if version < minServerVersion {
		return fmt.Errorf("open postgres: server_version_num %d: %w", version, ErrServerTooOld)
	}
	return nil
}

// armIdle and disarmIdle, evaluated in the statements that take and
// release session advisory locks, set the session's idle_session_timeout
// to the timeout a transaction has, and back to none: a process stopped
// while it holds such locks outside a transaction loses them too.
const (
	armIdle    = `set_config('idle_session_timeout', current_setting('` + idleInTx + `'), false)`
	disarmIdle = `set_config('idle_session_timeout', '0', false)`
)

// migrateLock is the advisory lock key that serializes migrations of nodes
// starting together.
const migrateLock = 0x636f66666572 // "coffer"

func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.w.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1), `+armIdle, migrateLock); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1), `+disarmIdle, migrateLock); err != nil {
			conn.Hijack().Close(context.WithoutCancel(ctx)) // the lock goes with the connection
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, name := range Migrations() {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE name = $1`, name).Scan(&n); err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
		if n > 0 {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (name) VALUES ($1)`, name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
	}
	return nil
}

// Retryable reports whether err is a serialization failure or a deadlock
// (or an Update's run that found a kind it wrote locked): the transaction
// was rolled back and running it again may succeed.
func Retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.Is(err, errKindBusy) || errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// errKindBusy ends an Update's run that wrote a kind whose lock another
// transaction holds.
var errKindBusy = errors.New("a kind this transaction wrote is locked by a concurrent writer")

// deadlocked reports whether err is PostgreSQL's deadlock_detected.
func deadlocked(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "40P01"
}

// ErrTooManyConflicts is wrapped when a transaction still conflicted after
// MaxAttempts runs.
var ErrTooManyConflicts = errors.New("the transaction kept conflicting with concurrent ones")

// backoff waits before attempt number n (2, 3, …): jittered, exponential
// from 1 ms up to 100 ms; it returns early with ctx's error.
func backoff(ctx context.Context, n int) error {
	d := min(time.Millisecond<<min(n-2, 7), 100*time.Millisecond)
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retry runs attempt until it succeeds, fails for good, or has failed
// retryably MaxAttempts times.
func (s *Store) retry(ctx context.Context, attempt func(n int) error) error {
	for n := 1; ; n++ {
		err := attempt(n)
		if err == nil || !Retryable(err) {
			return err
		}
		if deadlocked(err) {
			s.deadlocks.Add(1)
		}
		if n >= s.MaxAttempts {
			s.exhausted.Add(1)
			return fmt.Errorf("%w (%d attempts): %w", ErrTooManyConflicts, n, err)
		}
		s.retries.Add(1)
		if berr := backoff(ctx, n+1); berr != nil {
			return fmt.Errorf("retry after %w: %w", err, berr)
		}
	}
}

// WriteMetrics writes the store's counters in Prometheus text format:
// how many transactions ran again after a serialization failure or a
// deadlock, how many of those runs were deadlocks, and how many failed for
// good after MaxAttempts runs.
func (s *Store) WriteMetrics(w io.Writer) {
	fmt.Fprintf(w, "# HELP coffer_metadata_transaction_retries_total Metadata transactions run again after a serialization failure or deadlock.\n"+
		"# TYPE coffer_metadata_transaction_retries_total counter\ncoffer_metadata_transaction_retries_total %d\n", s.retries.Load())
	fmt.Fprintf(w, "# HELP coffer_metadata_transaction_deadlocks_total Metadata transaction runs that PostgreSQL ended as deadlocked.\n"+
		"# TYPE coffer_metadata_transaction_deadlocks_total counter\ncoffer_metadata_transaction_deadlocks_total %d\n", s.deadlocks.Load())
	fmt.Fprintf(w, "# HELP coffer_metadata_transaction_conflicts_exhausted_total Metadata transactions that still conflicted after their last attempt.\n"+
		"# TYPE coffer_metadata_transaction_conflicts_exhausted_total counter\ncoffer_metadata_transaction_conflicts_exhausted_total %d\n", s.exhausted.Load())
}

// Update runs fn in a SERIALIZABLE transaction, re-running it on
// serialization failures and deadlocks (see the package doc).
func (s *Store) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	var lock []string // kinds the last attempt wrote: locked before the next begins
	return s.retry(ctx, func(int) error {
		wrote, err := s.update(ctx, fn, lock)
		for _, k := range wrote {
			if !slices.Contains(lock, k) {
				lock = append(lock, k)
			}
		}
		return err
	})
}

// kindLockKey is the advisory lock key of a kind, computed by the server.
const kindLockKey = `hashtextextended('coffer.kind:' || k, 0)`

// update is one attempt of Update. It returns the kinds fn wrote.
func (s *Store) update(ctx context.Context, fn func(tx store.Tx) error, lock []string) (wrote []string, err error) {
	conn, err := s.w.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin update: %w", err)
	}
	defer conn.Release()
	if len(lock) > 0 {
		// Session locks, taken before the transaction's snapshot; sorted
		// by key so that lockers never wait on each other in a cycle.
		// The session's idle timeout is armed with them: a process
		// stopped before its transaction begins loses them too.
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(h), `+armIdle+` FROM (SELECT DISTINCT `+kindLockKey+` AS h
			FROM unnest($1::text[]) AS k ORDER BY h) AS l`, lock); err != nil {
			return nil, fmt.Errorf("lock kinds: %w", err)
		}
		defer func() {
			bg := context.WithoutCancel(ctx)
			if _, err := conn.Exec(bg, `SELECT pg_advisory_unlock_all(), `+disarmIdle); err != nil {
				conn.Hijack().Close(bg) // the locks go with the connection
			}
		}()
		if s.lockedHook != nil {
			s.lockedHook()
		}
	}
	ptx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return nil, fmt.Errorf("begin update: %w", err)
	}
	defer ptx.Rollback(context.WithoutCancel(ctx)) // after a commit, does nothing
	t := &tx{tx: ptx, writable: true}
	if err := ptx.QueryRow(ctx, `SELECT nextval('store_index')`).Scan(&t.index); err != nil {
		return nil, fmt.Errorf("begin update: %w", err)
	}
	err = fn(t)
	wrote = t.kindList()
	if t.failed != nil {
		// The transaction is aborted; its first failure is the cause,
		// whatever fn made of it.
		return wrote, t.failed
	}
	if err != nil {
		return wrote, err
	}
	if len(wrote) > 0 {
		// The kinds' rows then carry this transaction's index. Their
		// locks are only tried here, never waited for: this transaction
		// holds row locks that the locks' holder may be waiting for, and
		// a holder will commit a kind's row after this snapshot anyway,
		// so this run is lost either way. The next run waits for them
		// before it begins (see the package doc).
		var got bool
		if err := ptx.QueryRow(ctx, `SELECT bool_and(pg_try_advisory_xact_lock(h)) FROM (SELECT DISTINCT `+kindLockKey+` AS h
			FROM unnest($1::text[]) AS k) AS l`, wrote).Scan(&got); err != nil {
			return wrote, t.fail(fmt.Errorf("lock kinds: %w", err))
		}
		if !got {
			return wrote, errKindBusy
		}
		if _, err := ptx.Exec(ctx, `INSERT INTO kind_index (kind, modify_index) SELECT unnest($1::text[]), $2
			ON CONFLICT (kind) DO UPDATE SET modify_index = excluded.modify_index`, wrote, t.index); err != nil {
			return wrote, fmt.Errorf("write kind indexes: %w", err)
		}
	}
	if err := ptx.Commit(context.WithoutCancel(ctx)); err != nil {
		return wrote, fmt.Errorf("commit: %w", err)
	}
	return wrote, nil
}

// View runs fn in a REPEATABLE READ READ ONLY transaction: one snapshot.
func (s *Store) View(ctx context.Context, fn func(tx store.Tx) error) error {
	ptx, err := s.r.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin view: %w", err)
	}
	defer ptx.Rollback(context.WithoutCancel(ctx))
	t := &tx{tx: ptx}
	if err := ptx.QueryRow(ctx, `SELECT coalesce(max(modify_index), 0) FROM kind_index`).Scan(&t.index); err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	if err := fn(t); err != nil {
		return err
	}
	return t.failed
}

// tx is a transaction of the store.
type tx struct {
	tx       pgx.Tx
	index    uint64
	writable bool
	kinds    map[string]bool // kinds written
	// failed is the first error of a statement: PostgreSQL aborts the
	// transaction on it, so nothing after it commits.
	failed error
}

// Tx returns the pgx transaction behind a store.Tx of this package (for
// the queue's and other tables of the same database), or false. A
// decorator of a store.Tx (one that counts calls, say) is looked through
// when it has an UnwrapTx method returning the store.Tx it decorates.
func Tx(t store.Tx) (pgx.Tx, bool) {
	x, ok := unwrapTx(t).(*tx)
	if !ok {
		return nil, false
	}
	return x.tx, true
}

// unwrapTx returns the innermost store.Tx of a chain of decorators.
func unwrapTx(t store.Tx) store.Tx {
	for {
		u, ok := t.(interface{ UnwrapTx() store.Tx })
		if !ok {
			return t
		}
		t = u.UnwrapTx()
	}
}

// fail records err as the transaction's failure if it is the first, and
// returns it.
func (t *tx) fail(err error) error {
	if err != nil && t.failed == nil {
		t.failed = err
	}
	return err
}

// note records a statement's error (see fail) on a store.Tx of this
// package; other code on the same transaction (the queue) calls it.
func note(st store.Tx, err error) error {
	if x, ok := unwrapTx(st).(*tx); ok {
		return x.fail(err)
	}
	return err
}

func (t *tx) touched(kind string) {
	if t.kinds == nil {
		t.kinds = map[string]bool{}
	}
	t.kinds[kind] = true
}

func (t *tx) kindList() []string {
	out := make([]string, 0, len(t.kinds))
	for k := range t.kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (t *tx) Index() uint64 { return t.index }

func (t *tx) KindIndex(ctx context.Context, kind string) (uint64, error) {
	if t.kinds[kind] {
		return t.index, nil
	}
	var idx uint64
	err := t.tx.QueryRow(ctx, `SELECT modify_index FROM kind_index WHERE kind = $1`, kind).Scan(&idx)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, t.fail(fmt.Errorf("index of %s: %w", kind, err))
	}
	return idx, nil
}

func (t *tx) Get(ctx context.Context, kind, key string) (store.Object, error) {
	o := store.Object{Kind: kind, Key: key}
	err := t.tx.QueryRow(ctx, `SELECT data, create_index, modify_index FROM objects WHERE kind = $1 AND key = $2`, kind, key).
		Scan(&o.Data, &o.CreateIndex, &o.ModifyIndex)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, fmt.Errorf("get %s %s: %w", kind, key, store.ErrNotFound)
	}
	if err != nil {
		return o, t.fail(fmt.Errorf("get %s %s: %w", kind, key, err))
	}
	return o, nil
}

func (t *tx) Put(ctx context.Context, o *store.Object, opts store.PutOptions) error {
	if !t.writable {
		return fmt.Errorf("put %s %s: read-only transaction", o.Kind, o.Key)
	}
	cur, err := t.Get(ctx, o.Kind, o.Key)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := store.CheckPut(o, cur, exists, opts, t.index); err != nil {
		return err
	}
	_, err = t.tx.Exec(ctx, `INSERT INTO objects (kind, key, data, create_index, modify_index) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (kind, key) DO UPDATE SET data = excluded.data, modify_index = excluded.modify_index`,
		o.Kind, o.Key, o.Data, o.CreateIndex, o.ModifyIndex)
	if err != nil {
		return t.fail(fmt.Errorf("put %s %s: %w", o.Kind, o.Key, err))
	}
	t.touched(o.Kind)
	return nil
}

func (t *tx) Delete(ctx context.Context, kind, key string) error {
	if !t.writable {
		return fmt.Errorf("delete %s %s: read-only transaction", kind, key)
	}
	tag, err := t.tx.Exec(ctx, `DELETE FROM objects WHERE kind = $1 AND key = $2`, kind, key)
	if err != nil {
		return t.fail(fmt.Errorf("delete %s %s: %w", kind, key, err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete %s %s: %w", kind, key, store.ErrNotFound)
	}
	t.touched(kind)
	return nil
}

// listQuery returns List's statement and arguments for q.
func listQuery(q store.Query) (string, []any) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.Kind != "" {
		where = append(where, "kind = "+arg(q.Kind))
	}
	if q.Prefix != "" {
		// A key range, so that the index serves it whatever the plan.
		where = append(where, "key >= "+arg(q.Prefix))
		if end, ok := store.PrefixEnd(q.Prefix); ok {
			where = append(where, "key < "+arg(end))
		}
	}
	if q.After != "" {
		where = append(where, "key > "+arg(q.After))
	}
	stmt := `SELECT kind, key, data, create_index, modify_index FROM objects`
	if len(where) > 0 {
		stmt += " WHERE " + strings.Join(where, " AND ")
	}
	stmt += " ORDER BY key, kind"
	if q.Limit > 0 {
		stmt += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	return stmt, args
}

func (t *tx) List(ctx context.Context, q store.Query) ([]store.Object, error) {
	stmt, args := listQuery(q)
	rows, err := t.tx.Query(ctx, stmt, args...)
	if err != nil {
		return nil, t.fail(fmt.Errorf("list %s %q: %w", q.Kind, q.Prefix, err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Object, error) {
		var o store.Object
		err := row.Scan(&o.Kind, &o.Key, &o.Data, &o.CreateIndex, &o.ModifyIndex)
		return o, err
	})
	if err != nil {
		return nil, t.fail(fmt.Errorf("list %s %q: %w", q.Kind, q.Prefix, err))
	}
	return out, nil
}
