package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// queries are the statements that every transaction runs, prepared once
// per database handle. database/sql keeps a prepared statement on each
// connection it has run on, where a query string passed to a transaction
// is parsed again on every call: that parsing took a tenth of the server's
// CPU under the load test. They are prepared when the store opens: later,
// preparing on the write handle would wait for its one connection, which
// the running transaction holds.
type queries struct {
	getObject, putObject, deleteObject *sql.Stmt
	getKindIndex, putKindIndex         *sql.Stmt
	getIndex, putIndex                 *sql.Stmt
	savepoint, release, rollbackTo     *sql.Stmt // a write's savepoint in a group (writer)
	// lookup[k] selects the chunk index entries of 1<<k IDs (read pool
	// only): a lookup pads its batch to the next power of two, so that
	// every IN list has a statement prepared once instead of one SQLite
	// compiles for each call.
	lookup [lookupClasses]*sql.Stmt
}

// lookupClasses is the number of IN-list sizes with a prepared lookup: 1,
// 2, 4 … lookupBatch.
const lookupClasses = 10

// lookupBatch is the largest number of IDs per IN list.
const lookupBatch = 1 << (lookupClasses - 1)

// prepareQueries prepares the statements on db; only the reads unless
// write.
func prepareQueries(ctx context.Context, db *sql.DB, write bool) (*queries, error) {
	q := &queries{}
	list := []struct {
		s     **sql.Stmt
		query string
		write bool
	}{
		{&q.getObject, `SELECT data, create_index, modify_index FROM objects WHERE kind = ? AND key = ?`, false},
		{&q.getKindIndex, `SELECT modify_index FROM kind_index WHERE kind = ?`, false},
		{&q.getIndex, `SELECT value FROM meta WHERE name = 'index'`, false},
		{&q.putObject, `INSERT INTO objects (kind, key, data, create_index, modify_index) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (kind, key) DO UPDATE SET data = excluded.data, modify_index = excluded.modify_index`, true},
		{&q.deleteObject, `DELETE FROM objects WHERE kind = ? AND key = ?`, true},
		{&q.putKindIndex, `INSERT INTO kind_index (kind, modify_index) VALUES (?, ?)
			ON CONFLICT (kind) DO UPDATE SET modify_index = excluded.modify_index`, true},
		{&q.putIndex, `UPDATE meta SET value = ? WHERE name = 'index'`, true},
		{&q.savepoint, `SAVEPOINT w`, true},
		{&q.release, `RELEASE w`, true},
		{&q.rollbackTo, `ROLLBACK TO w`, true},
	}
	if !write {
		for k := range q.lookup {
			list = append(list, struct {
				s     **sql.Stmt
				query string
				write bool
			}{&q.lookup[k], selectEntry + ` WHERE c.id IN (` + placeholders(1<<k) + `)`, false})
		}
	}
	for _, l := range list {
		if l.write && !write {
			continue
		}
		s, err := db.PrepareContext(ctx, l.query)
		if err != nil {
			q.close()
			return nil, fmt.Errorf("prepare %q: %w", l.query, err)
		}
		*l.s = s
	}
	return q, nil
}

func (q *queries) close() error {
	var errs []error
	for _, s := range append([]*sql.Stmt{q.getObject, q.putObject, q.deleteObject, q.getKindIndex, q.putKindIndex, q.getIndex, q.putIndex,
		q.savepoint, q.release, q.rollbackTo}, q.lookup[:]...) {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}
