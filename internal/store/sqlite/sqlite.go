// Package sqlite implements store.Store on an embedded SQLite database (the
// pure-Go modernc.org/sqlite driver, so no C toolchain is needed).
//
// The database runs in WAL mode with foreign keys on and a busy timeout.
// Writes go through a single connection that begins transactions
// IMMEDIATE, so writers queue instead of failing; reads use a separate pool
// and see a consistent snapshot. Schema migrations are embedded and applied
// in order when the store opens.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strings"

	"coffer/internal/store"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a SQLite-backed store.Store.
type Store struct {
	w *sql.DB // one connection, IMMEDIATE transactions
	r *sql.DB // readers
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path and migrates it.
func Open(ctx context.Context, path string) (*Store, error) {
	dsn := func(lock string) string {
		q := url.Values{}
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "synchronous(FULL)")
		q.Set("_txlock", lock)
		return "file:" + path + "?" + q.Encode()
	}
	w, err := sql.Open("sqlite", dsn("immediate"))
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
	s := &Store{w: w, r: r}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// DB returns the write handle, for packages that keep their own tables in
// the same database (the chunk index, the job queue). Statements on it are
// serialized with every Update.
func (s *Store) DB() *sql.DB { return s.w }

// ReadDB returns the read pool.
func (s *Store) ReadDB() *sql.DB { return s.r }

// Close closes the database.
func (s *Store) Close() error {
	return errors.Join(s.w.Close(), s.r.Close())
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

// Update runs fn in a read-write transaction.
func (s *Store) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	sqlTx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin update: %w", err)
	}
	defer sqlTx.Rollback()
	var idx uint64
	if err := sqlTx.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'index'`).Scan(&idx); err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	t := &tx{tx: sqlTx, index: idx + 1, writable: true}
	if err := fn(t); err != nil {
		return err
	}
	if t.wrote {
		if _, err := sqlTx.ExecContext(ctx, `UPDATE meta SET value = ? WHERE name = 'index'`, t.index); err != nil {
			return fmt.Errorf("write index: %w", err)
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// View runs fn in a read-only transaction.
func (s *Store) View(ctx context.Context, fn func(tx store.Tx) error) error {
	sqlTx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin view: %w", err)
	}
	defer sqlTx.Rollback()
	var idx uint64
	if err := sqlTx.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'index'`).Scan(&idx); err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	return fn(&tx{tx: sqlTx, index: idx})
}

type tx struct {
	tx       *sql.Tx
	index    uint64
	writable bool
	wrote    bool
}

func (t *tx) Index() uint64 { return t.index }

func (t *tx) Get(ctx context.Context, kind, key string) (store.Object, error) {
	o := store.Object{Kind: kind, Key: key}
	err := t.tx.QueryRowContext(ctx,
		`SELECT data, create_index, modify_index FROM objects WHERE kind = ? AND key = ?`, kind, key).
		Scan(&o.Data, &o.CreateIndex, &o.ModifyIndex)
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
	if opts.CreateOnly && exists {
		return fmt.Errorf("put %s %s: exists: %w", o.Kind, o.Key, store.ErrConflict)
	}
	if opts.MatchIndex != 0 && (!exists || cur.ModifyIndex != opts.MatchIndex) {
		return fmt.Errorf("put %s %s: index mismatch: %w", o.Kind, o.Key, store.ErrConflict)
	}
	o.ModifyIndex = t.index
	if exists {
		o.CreateIndex = cur.CreateIndex
	} else {
		o.CreateIndex = t.index
	}
	if o.Data == nil {
		o.Data = []byte{}
	}
	_, err = t.tx.ExecContext(ctx, `INSERT INTO objects (kind, key, data, create_index, modify_index) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (kind, key) DO UPDATE SET data = excluded.data, modify_index = excluded.modify_index`,
		o.Kind, o.Key, o.Data, o.CreateIndex, o.ModifyIndex)
	if err != nil {
		return fmt.Errorf("put %s %s: %w", o.Kind, o.Key, err)
	}
	t.wrote = true
	return nil
}

func (t *tx) Delete(ctx context.Context, kind, key string) error {
	if !t.writable {
		return fmt.Errorf("delete %s %s: read-only transaction", kind, key)
	}
	res, err := t.tx.ExecContext(ctx, `DELETE FROM objects WHERE kind = ? AND key = ?`, kind, key)
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", kind, key, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("delete %s %s: %w", kind, key, store.ErrNotFound)
	}
	t.wrote = true
	return nil
}

// escapeLike escapes the LIKE wildcards of a literal prefix.
func escapeLike(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

func (t *tx) List(ctx context.Context, q store.Query) ([]store.Object, error) {
	var (
		where []string
		args  []any
	)
	if q.Kind != "" {
		where = append(where, "kind = ?")
		args = append(args, q.Kind)
	}
	if q.Prefix != "" {
		where = append(where, `key LIKE ? ESCAPE '\'`)
		args = append(args, escapeLike(q.Prefix)+"%")
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
	rows, err := t.tx.QueryContext(ctx, stmt, args...)
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
