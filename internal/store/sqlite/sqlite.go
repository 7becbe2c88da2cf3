// Package sqlite implements store.Store on an embedded SQLite database (the
// pure-Go modernc.org/sqlite driver, so no C toolchain is needed).
//
// The database runs in WAL mode with foreign keys on and a busy timeout.
// Writes go through a single connection that begins transactions
// IMMEDIATE; writers queue in arrival order, and those that queue together
// commit together, each in its own savepoint, with one fsync (writer.go).
// Reads use a separate pool and see a consistent snapshot. Schema
// migrations are embedded and applied in order when the store opens.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"strings"

	"coffer/internal/capacity"
	"coffer/internal/store"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a SQLite-backed store.Store.
type Store struct {
	w      *sql.DB // one connection, IMMEDIATE transactions
	r      *sql.DB // readers
	wq, rq *queries
	wr     *writer // runs every write on w
	path   string
	// Space, when set, is told of every no-space failure.
	Space *capacity.Monitor
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path and migrates it.
// The file is created owner-only (0600); SQLite gives its -wal and -shm
// files the database file's mode.
func Open(ctx context.Context, path string) (*Store, error) {
	// SQLite would create the file 0644; create it first, owner-only.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	dsn := func(lock string, pragmas ...string) string {
		q := url.Values{}
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "synchronous(FULL)")
		for _, p := range pragmas {
			q.Add("_pragma", p)
		}
		q.Set("_txlock", lock)
		return "file:" + path + "?" + q.Encode()
	}
	// The writer keeps its statement journals in memory: a multi-row
	// upsert of the chunk index (ChunkIndex.Add) is journaled because a
	// later row could abort it, and with a temporary file each page the
	// statement first touches cost a pwrite of 4 KiB (a fifth of an Add's
	// CPU, docs/design.md "Issue 14's figures"). A statement journal
	// holds at most the pages one statement changes (upsertRows rows);
	// the transaction's durability is the WAL's, unchanged.
	w, err := sql.Open("sqlite", dsn("immediate", "temp_store(MEMORY)"))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", dsn("deferred"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	s := &Store{w: w, r: r, path: path}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if s.wq, err = prepareQueries(ctx, w, true); err != nil {
		s.Close()
		return nil, err
	}
	if s.rq, err = prepareQueries(ctx, r, false); err != nil {
		s.Close()
		return nil, err
	}
	s.wr = newWriter(w, s.wq)
	return s, nil
}

// DB returns the write handle. Statements on it are serialized with every
// Update but take no part in group commit: the store's own tables (the
// chunk index) write through the writer instead.
func (s *Store) DB() *sql.DB { return s.w }

// ReadDB returns the read pool.
func (s *Store) ReadDB() *sql.DB { return s.r }

// Close runs the writes already queued, then closes the database; later
// writes fail.
func (s *Store) Close() error {
	if s.wr != nil {
		s.wr.close()
	}
	var errs []error
	for _, q := range []*queries{s.wq, s.rq} {
		if q != nil {
			errs = append(errs, q.close())
		}
	}
	return errors.Join(append(errs, s.w.Close(), s.r.Close())...)
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
	rows, err := s.r.QueryContext(ctx, `SELECT name FROM schema_migrations ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list applied migrations: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("list applied migrations: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list applied migrations: %w", err)
	}
	return out, nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, name := range Migrations() {
		var n int
		if err := s.w.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE name = ?`, name).Scan(&n); err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
		if n > 0 {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name) VALUES (?)`, name); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
	}
	return nil
}

// classify turns SQLite's "database or disk is full" (SQLITE_FULL, which
// SQLite also reports when the filesystem says ENOSPC) into the one
// no-space error (capacity.ErrNoSpace, HTTP 507); other errors pass.
func (s *Store) classify(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		err = capacity.Wrap(err, "the metadata database", s.path)
	}
	return s.Space.Note(capacity.Classify(err, "the metadata database", s.path))
}

// Update runs fn in a read-write transaction: a savepoint of the group
// commit it joins (writer.go), which is durable when Update returns nil.
func (s *Store) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.classify(s.wr.do(ctx, func(ctx context.Context, b *batch) (bool, error) {
		t := &tx{tx: b.tx, q: s.wq, index: b.index + 1, writable: true, grouped: true}
		if err := fn(t); err != nil {
			return false, err
		}
		for kind := range t.kinds {
			sctx := context.WithoutCancel(ctx)
			if _, err := b.tx.StmtContext(sctx, s.wq.putKindIndex).ExecContext(sctx, kind, t.index); err != nil {
				return false, fmt.Errorf("write index of %s: %w", kind, err)
			}
		}
		return t.wrote, nil
	}))
}

// View runs fn in a read-only transaction.
func (s *Store) View(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.classify(s.view(ctx, fn))
}

func (s *Store) view(ctx context.Context, fn func(tx store.Tx) error) error {
	sqlTx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin view: %w", err)
	}
	defer sqlTx.Rollback()
	var idx uint64
	if err := sqlTx.StmtContext(ctx, s.rq.getIndex).QueryRowContext(ctx).Scan(&idx); err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	return fn(&tx{tx: sqlTx, q: s.rq, index: idx})
}

type tx struct {
	tx       *sql.Tx
	q        *queries // prepared on tx's handle
	index    uint64
	writable bool
	wrote    bool
	// grouped: a write in a group commit, whose statements must not be
	// interrupted by the caller's cancellation (see stmtCtx).
	grouped bool
	kinds   map[string]bool // kinds written
}

// touched records a write of kind.
func (t *tx) touched(kind string) {
	t.wrote = true
	if t.kinds == nil {
		t.kinds = map[string]bool{}
	}
	t.kinds[kind] = true
}

func (t *tx) KindIndex(ctx context.Context, kind string) (uint64, error) {
	if t.kinds[kind] {
		return t.index, nil
	}
	sctx, err := t.stmtCtx(ctx)
	if err != nil {
		return 0, fmt.Errorf("index of %s: %w", kind, err)
	}
	var idx uint64
	err = t.tx.StmtContext(sctx, t.q.getKindIndex).QueryRowContext(sctx, kind).Scan(&idx)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("index of %s: %w", kind, err)
	}
	return idx, nil
}

func (t *tx) Index() uint64 { return t.index }

// stmtCtx is the context of a statement on behalf of a caller's ctx. In a
// group commit, SQLite would roll back the whole group's transaction if a
// cancellation interrupted an INSERT, UPDATE or DELETE; a cancelled caller
// fails before its next statement instead.
func (t *tx) stmtCtx(ctx context.Context) (context.Context, error) {
	if !t.grouped {
		return ctx, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

func (t *tx) Get(ctx context.Context, kind, key string) (store.Object, error) {
	o := store.Object{Kind: kind, Key: key}
	sctx, err := t.stmtCtx(ctx)
	if err != nil {
		return o, fmt.Errorf("get %s %s: %w", kind, key, err)
	}
	err = t.tx.StmtContext(sctx, t.q.getObject).QueryRowContext(sctx, kind, key).Scan(&o.Data, &o.CreateIndex, &o.ModifyIndex)
	if errors.Is(err, sql.ErrNoRows) {
		return o, fmt.Errorf("get %s %s: %w", kind, key, store.ErrNotFound)
	}
	if err != nil {
		return o, fmt.Errorf("get %s %s: %w", kind, key, err)
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
	sctx, err := t.stmtCtx(ctx)
	if err != nil {
		return fmt.Errorf("put %s %s: %w", o.Kind, o.Key, err)
	}
	_, err = t.tx.StmtContext(sctx, t.q.putObject).ExecContext(sctx, o.Kind, o.Key, o.Data, o.CreateIndex, o.ModifyIndex)
	if err != nil {
		return fmt.Errorf("put %s %s: %w", o.Kind, o.Key, err)
	}
	t.touched(o.Kind)
	return nil
}

func (t *tx) Delete(ctx context.Context, kind, key string) error {
	if !t.writable {
		return fmt.Errorf("delete %s %s: read-only transaction", kind, key)
	}
	sctx, err := t.stmtCtx(ctx)
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", kind, key, err)
	}
	res, err := t.tx.StmtContext(sctx, t.q.deleteObject).ExecContext(sctx, kind, key)
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", kind, key, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
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
	if q.Kind != "" {
		where = append(where, "kind = ?")
		args = append(args, q.Kind)
	}
	if q.Prefix != "" {
		// A key range in the column's BINARY collation, which the key
		// indexes serve; LIKE would not use them and ignores ASCII case.
		where = append(where, "key >= ?")
		args = append(args, q.Prefix)
		if end, ok := store.PrefixEnd(q.Prefix); ok {
			where = append(where, "key < ?")
			args = append(args, end)
		}
	}
	if q.After != "" {
		where = append(where, "key > ?")
		args = append(args, q.After)
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
	sctx, err := t.stmtCtx(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s %q: %w", q.Kind, q.Prefix, err)
	}
	rows, err := t.tx.QueryContext(sctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s %q: %w", q.Kind, q.Prefix, err)
	}
	defer rows.Close()
	var out []store.Object
	for rows.Next() {
		var o store.Object
		if err := rows.Scan(&o.Kind, &o.Key, &o.Data, &o.CreateIndex, &o.ModifyIndex); err != nil {
			return nil, fmt.Errorf("list %s %q: %w", q.Kind, q.Prefix, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s %q: %w", q.Kind, q.Prefix, err)
	}
	return out, nil
}
