package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strings"

	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
)

// ChunkIndex is the chunk store's index (chunkstore.Index) in the tables of
// migration 0002. Writes go through the store's writer, each batch of
// entries one write (committed with the Updates queued beside it); lookups
// use the read pool.
type ChunkIndex struct {
	s *Store
	w *writer
	r *sql.DB
	q *queries // the read pool's prepared lookups
}

var _ chunkstore.Index = (*ChunkIndex)(nil)

// ChunkIndex returns the chunk index kept in s.
func (s *Store) ChunkIndex() *ChunkIndex { return &ChunkIndex{s: s, w: s.wr, r: s.ReadDB(), q: s.rq} }

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

const selectEntry = `SELECT c.id, p.name, c.pos, c.length, c.raw_length, c.compression, c.deleted_at
	FROM chunk_index c JOIN chunk_packs p ON p.id = c.pack_id`

// scanEntry scans a row of selectEntry. The lengths are scanned as the
// int64 SQLite stores: into a uint32, database/sql would format each as
// text and parse it back.
func scanEntry(rows *sql.Rows) (chunkstore.Entry, error) {
	var (
		e                    chunkstore.Entry
		id                   []byte
		length, rawLen, comp int64
	)
	if err := rows.Scan(&id, &e.Pack, &e.Offset, &length, &rawLen, &comp, &e.DeletedAt); err != nil {
		return e, err
	}
	if len(id) != chunk.Size {
		return e, fmt.Errorf("chunk index row with a %d-byte ID", len(id))
	}
	if uint64(length) > math.MaxUint32 || uint64(rawLen) > math.MaxUint32 {
		return e, fmt.Errorf("chunk index row %x: lengths %d and %d out of range", id, length, rawLen)
	}
	e.ID = chunk.ID(id)
	e.Length, e.RawLength = uint32(length), uint32(rawLen)
	e.Compression = chunkstore.Compression(comp)
	return e, nil
}

// Lookup implements chunkstore.Index.
func (x *ChunkIndex) Lookup(ctx context.Context, ids []chunk.ID) (map[chunk.ID]chunkstore.Entry, error) {
	out := make(map[chunk.ID]chunkstore.Entry, len(ids))
	for start := 0; start < len(ids); start += lookupBatch {
		batch := ids[start:min(start+lookupBatch, len(ids))]
		k := bits.Len(uint(len(batch) - 1)) // 1<<k ≥ len(batch)
		args := make([]any, 1<<k)
		for i := range args {
			args[i] = batch[min(i, len(batch)-1)][:] // padded with the last ID
		}
		rows, err := x.q.lookup[k].QueryContext(ctx, args...)
		if err != nil {
			return nil, fmt.Errorf("look up %d chunks: %w", len(ids), err)
		}
		for rows.Next() {
			e, err := scanEntry(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("look up %d chunks: %w", len(ids), err)
			}
			out[e.ID] = e
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("look up %d chunks: %w", len(ids), err)
		}
	}
	return out, nil
}

// update runs fn as one write. Its statements take the context fn is
// given, which no cancellation interrupts (see writer).
func (x *ChunkIndex) update(ctx context.Context, what string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	err := x.s.classify(x.w.do(ctx, func(ctx context.Context, b *batch) (bool, error) {
		return false, fn(context.WithoutCancel(ctx), b.tx)
	}))
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// packIDs returns the row IDs of the named packs, creating missing rows.
type packIDs struct {
	tx  *sql.Tx
	ids map[string]int64
}

func (p *packIDs) get(ctx context.Context, name string) (int64, error) {
	if id, ok := p.ids[name]; ok {
		return id, nil
	}
	var id int64
	err := p.tx.QueryRowContext(ctx, `INSERT INTO chunk_packs (name) VALUES (?)
		ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id`, name).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("pack %s: %w", name, err)
	}
	p.ids[name] = id
	return id, nil
}

// existingPack returns the row ID of a pack, or false.
func existingPack(ctx context.Context, tx *sql.Tx, name string) (int64, bool, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM chunk_packs WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("pack %s: %w", name, err)
	}
	return id, true, nil
}

// Add implements chunkstore.Index.
func (x *ChunkIndex) Add(ctx context.Context, entries []chunkstore.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	return x.update(ctx, fmt.Sprintf("add %d chunks", len(entries)), func(ctx context.Context, tx *sql.Tx) error {
		return upsert(ctx, tx, entries)
	})
}

// upsertRows is the number of entries per INSERT statement of upsert.
// One statement per row had SQLite copy every B-tree page a row touched
// into the statement journal (a pwrite of each page, row after row: the
// foreign key and the upsert make every statement journaled); one per
// upsertRows rows copies each page once per statement. 7 parameters a row
// stay well under SQLite's limit of 32766.
const upsertRows = 512

const upsertHead = `INSERT INTO chunk_index (id, pack_id, pos, length, raw_length, compression, deleted_at) VALUES `

const upsertTail = ` ON CONFLICT (id) DO UPDATE SET pack_id = excluded.pack_id, pos = excluded.pos, length = excluded.length,
		raw_length = excluded.raw_length, compression = excluded.compression, deleted_at = excluded.deleted_at`

func upsertQuery(rows int) string {
	return upsertHead + strings.TrimSuffix(strings.Repeat("(?,?,?,?,?,?,?),", rows), ",") + upsertTail
}

func upsert(ctx context.Context, tx *sql.Tx, entries []chunkstore.Entry) error {
	packs := &packIDs{tx: tx, ids: make(map[string]int64)}
	var full *sql.Stmt // for batches of upsertRows, prepared once
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	args := make([]any, 0, 7*min(len(entries), upsertRows))
	for start := 0; start < len(entries); start += upsertRows {
		batch := entries[start:min(start+upsertRows, len(entries))]
		args = args[:0]
		for _, e := range batch {
			pid, err := packs.get(ctx, e.Pack)
			if err != nil {
				return err
			}
			args = append(args, e.ID[:], pid, e.Offset, e.Length, e.RawLength, int64(e.Compression), e.DeletedAt)
		}
		var err error
		if len(batch) == upsertRows {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, upsertQuery(upsertRows)); err != nil {
					return err
				}
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, upsertQuery(len(batch)), args...)
		}
		if err != nil {
			return fmt.Errorf("chunks %s…%s: %w", batch[0].ID.Short(), batch[len(batch)-1].ID.Short(), err)
		}
	}
	return nil
}

// Move implements chunkstore.Index.
func (x *ChunkIndex) Move(ctx context.Context, from string, entries []chunkstore.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	return x.update(ctx, fmt.Sprintf("move %d chunks from %s", len(entries), from), func(ctx context.Context, tx *sql.Tx) error {
		fromID, ok, err := existingPack(ctx, tx, from)
		if err != nil || !ok {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `UPDATE chunk_index SET pack_id = ?, pos = ?, length = ?, raw_length = ?,
			compression = ?, deleted_at = ? WHERE id = ? AND pack_id = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		packs := &packIDs{tx: tx, ids: make(map[string]int64)}
		for _, e := range entries {
			pid, err := packs.get(ctx, e.Pack)
			if err != nil {
				return err
			}
			if _, err := stmt.ExecContext(ctx, pid, e.Offset, e.Length, e.RawLength, int64(e.Compression), e.DeletedAt, e.ID[:], fromID); err != nil {
				return fmt.Errorf("chunk %s: %w", e.ID.Short(), err)
			}
		}
		return nil
	})
}

// inPack runs a statement with "pack_id = ? AND id IN (...)" for batches of
// ids, args first; then, if set, after (with the pack's name).
func (x *ChunkIndex) inPack(ctx context.Context, what, pack string, ids []chunk.ID, after string, stmt string, args ...any) error {
	if len(ids) == 0 && after == "" {
		return nil
	}
	return x.update(ctx, fmt.Sprintf("%s %d chunks in %s", what, len(ids), pack), func(ctx context.Context, tx *sql.Tx) error {
		pid, ok, err := existingPack(ctx, tx, pack)
		if err != nil || !ok {
			return err
		}
		for start := 0; start < len(ids); start += lookupBatch {
			batch := ids[start:min(start+lookupBatch, len(ids))]
			a := append(append([]any{}, args...), pid)
			for i := range batch {
				a = append(a, batch[i][:])
			}
			if _, err := tx.ExecContext(ctx, stmt+` WHERE pack_id = ? AND id IN (`+placeholders(len(batch))+`)`, a...); err != nil {
				return err
			}
		}
		if after != "" {
			if _, err := tx.ExecContext(ctx, after, pack); err != nil {
				return fmt.Errorf("pack row %s: %w", pack, err)
			}
		}
		return nil
	})
}

// SetDeleted implements chunkstore.Index.
func (x *ChunkIndex) SetDeleted(ctx context.Context, pack string, ids []chunk.ID, at int64) error {
	return x.inPack(ctx, "mark deleted", pack, ids, "", `UPDATE chunk_index SET deleted_at = ?`, at)
}

// Delete implements chunkstore.Index. A pack left without entries loses its
// row too, in the same write.
func (x *ChunkIndex) Delete(ctx context.Context, pack string, ids []chunk.ID) error {
	return x.inPack(ctx, "delete", pack, ids, `DELETE FROM chunk_packs WHERE name = ?
		AND NOT EXISTS (SELECT 1 FROM chunk_index WHERE pack_id = chunk_packs.id)`, `DELETE FROM chunk_index`)
}

// Packs implements chunkstore.Index.
func (x *ChunkIndex) Packs(ctx context.Context) ([]string, error) {
	rows, err := x.r.QueryContext(ctx, `SELECT name FROM chunk_packs p
		WHERE EXISTS (SELECT 1 FROM chunk_index c WHERE c.pack_id = p.id) ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("list packs: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	return out, nil
}

// PackEntries implements chunkstore.Index.
func (x *ChunkIndex) PackEntries(ctx context.Context, pack string) ([]chunkstore.Entry, error) {
	rows, err := x.r.QueryContext(ctx, selectEntry+` WHERE p.name = ? ORDER BY c.pos`, pack)
	if err != nil {
		return nil, fmt.Errorf("entries of pack %s: %w", pack, err)
	}
	defer rows.Close()
	var out []chunkstore.Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("entries of pack %s: %w", pack, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("entries of pack %s: %w", pack, err)
	}
	return out, nil
}

// Stats implements chunkstore.Index.
func (x *ChunkIndex) Stats(ctx context.Context) (chunkstore.IndexStats, error) {
	var st chunkstore.IndexStats
	err := x.r.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT pack_id), coalesce(sum(length), 0),
		coalesce(sum(raw_length), 0), coalesce(sum(deleted_at != 0), 0) FROM chunk_index`).
		Scan(&st.Chunks, &st.Packs, &st.StoredBytes, &st.RawBytes, &st.Deleted)
	if err != nil {
		return st, fmt.Errorf("chunk index stats: %w", err)
	}
	return st, nil
}

// Clear implements chunkstore.Index.
func (x *ChunkIndex) Clear(ctx context.Context) error {
	return x.update(ctx, "clear chunk index", func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM chunk_index`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM chunk_packs`)
		return err
	})
}

var _ chunkstore.IDLister = (*ChunkIndex)(nil)

// ForEachID implements chunkstore.IDLister: it calls fn for every indexed
// chunk ID (live or condemned), in key order, with one scan of the table.
func (x *ChunkIndex) ForEachID(ctx context.Context, fn func(chunk.ID)) error {
	rows, err := x.r.QueryContext(ctx, `SELECT id FROM chunk_index`)
	if err != nil {
		return fmt.Errorf("list chunk IDs: %w", err)
	}
	defer rows.Close()
	return chunkstore.ScanIDs(rows, fn)
}
