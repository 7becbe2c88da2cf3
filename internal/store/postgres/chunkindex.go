package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
)

// ChunkIndex is the chunk store's index (chunkstore.Index) in the tables
// of migration 0002. Each method is one READ COMMITTED transaction of a
// few set-based statements (arrays in, not a statement per entry), re-run
// on deadlocks and serialization failures like Update; entries are written
// in ID order, so that concurrent batches lock rows in one order. Lookups
// use the read pool.
type ChunkIndex struct{ s *Store }

var (
	_ chunkstore.Index    = (*ChunkIndex)(nil)
	_ chunkstore.IDLister = (*ChunkIndex)(nil)
)

// ChunkIndex returns the chunk index kept in s.
func (s *Store) ChunkIndex() *ChunkIndex { return &ChunkIndex{s: s} }

// lookupBatch is the number of IDs per statement.
const lookupBatch = 2000

const selectEntry = `SELECT c.id, p.name, c.pos, c.length, c.raw_length, c.compression, c.deleted_at
	FROM chunk_index c JOIN chunk_packs p ON p.id = c.pack_id`

func scanEntry(row pgx.CollectableRow) (chunkstore.Entry, error) {
	var (
		e    chunkstore.Entry
		id   []byte
		comp int16
	)
	if err := row.Scan(&id, &e.Pack, &e.Offset, &e.Length, &e.RawLength, &comp, &e.DeletedAt); err != nil {
		return e, err
	}
	if len(id) != chunk.Size {
		return e, fmt.Errorf("chunk index row with a %d-byte ID", len(id))
	}
	e.ID = chunk.ID(id)
	e.Compression = chunkstore.Compression(comp)
	return e, nil
}

func idBytes(ids []chunk.ID) [][]byte {
	out := make([][]byte, len(ids))
	for i := range ids {
		out[i] = ids[i][:]
	}
	return out
}

// Lookup implements chunkstore.Index.
func (x *ChunkIndex) Lookup(ctx context.Context, ids []chunk.ID) (map[chunk.ID]chunkstore.Entry, error) {
	out := make(map[chunk.ID]chunkstore.Entry, len(ids))
	for start := 0; start < len(ids); start += lookupBatch {
		batch := ids[start:min(start+lookupBatch, len(ids))]
		rows, err := x.s.r.Query(ctx, selectEntry+` WHERE c.id = ANY($1)`, idBytes(batch))
		if err != nil {
			return nil, fmt.Errorf("look up %d chunks: %w", len(ids), err)
		}
		es, err := pgx.CollectRows(rows, scanEntry)
		if err != nil {
			return nil, fmt.Errorf("look up %d chunks: %w", len(ids), err)
		}
		for _, e := range es {
			out[e.ID] = e
		}
	}
	return out, nil
}

// write runs fn in a READ COMMITTED transaction, re-run on conflicts.
func (x *ChunkIndex) write(ctx context.Context, what string, fn func(tx pgx.Tx) error) error {
	err := x.s.retry(ctx, func(int) error {
		return pgx.BeginTxFunc(ctx, x.s.w, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// columns are the entries as arrays, in ID order, one entry per ID (the
// last given wins, as with one Add after another).
type columns struct {
	ids                  [][]byte
	packs                []string
	pos, length, raw, at []int64
	comp                 []int16
}

func entryColumns(entries []chunkstore.Entry) columns {
	es := slices.Clone(entries)
	slices.SortStableFunc(es, func(a, b chunkstore.Entry) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	var c columns
	for i, e := range es {
		if i+1 < len(es) && es[i+1].ID == e.ID {
			continue
		}
		c.ids = append(c.ids, e.ID[:])
		c.packs = append(c.packs, e.Pack)
		c.pos = append(c.pos, e.Offset)
		c.length = append(c.length, int64(e.Length))
		c.raw = append(c.raw, int64(e.RawLength))
		c.comp = append(c.comp, int16(e.Compression))
		c.at = append(c.at, e.DeletedAt)
	}
	return c
}

// ensurePacks creates the rows of the named packs that are missing.
func ensurePacks(ctx context.Context, tx pgx.Tx, names []string) error {
	_, err := tx.Exec(ctx, `INSERT INTO chunk_packs (name) SELECT DISTINCT n FROM unnest($1::text[]) AS n ORDER BY n
		ON CONFLICT (name) DO NOTHING`, names)
	if err != nil {
		return fmt.Errorf("pack rows: %w", err)
	}
	return nil
}

// errShort reports a write that reached fewer rows than it had entries
// (a pack row removed meanwhile).
var errShort = errors.New("pack rows vanished during the write")

// Add implements chunkstore.Index.
func (x *ChunkIndex) Add(ctx context.Context, entries []chunkstore.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	c := entryColumns(entries)
	return x.write(ctx, fmt.Sprintf("add %d chunks", len(entries)), func(tx pgx.Tx) error {
		if err := ensurePacks(ctx, tx, c.packs); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO chunk_index (id, pack_id, pos, length, raw_length, compression, deleted_at)
			SELECT u.id, p.id, u.pos, u.length, u.raw, u.comp, u.at
			FROM unnest($1::bytea[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::smallint[], $7::bigint[])
				WITH ORDINALITY AS u(id, pack, pos, length, raw, comp, at, n)
			JOIN chunk_packs p ON p.name = u.pack
			ORDER BY u.n
			ON CONFLICT (id) DO UPDATE SET pack_id = excluded.pack_id, pos = excluded.pos, length = excluded.length,
				raw_length = excluded.raw_length, compression = excluded.compression, deleted_at = excluded.deleted_at`,
			c.ids, c.packs, c.pos, c.length, c.raw, c.comp, c.at)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != int64(len(c.ids)) {
			return errShort
		}
		return nil
	})
}

// Move implements chunkstore.Index.
func (x *ChunkIndex) Move(ctx context.Context, from string, entries []chunkstore.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	c := entryColumns(entries)
	return x.write(ctx, fmt.Sprintf("move %d chunks from %s", len(entries), from), func(tx pgx.Tx) error {
		if err := ensurePacks(ctx, tx, c.packs); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE chunk_index c SET pack_id = p.id, pos = u.pos, length = u.length,
				raw_length = u.raw, compression = u.comp, deleted_at = u.at
			FROM unnest($1::bytea[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::smallint[], $7::bigint[])
				AS u(id, pack, pos, length, raw, comp, at)
			JOIN chunk_packs p ON p.name = u.pack
			WHERE c.id = u.id AND c.pack_id = (SELECT id FROM chunk_packs WHERE name = $8)`,
			c.ids, c.packs, c.pos, c.length, c.raw, c.comp, c.at, from)
		return err
	})
}

// SetDeleted implements chunkstore.Index.
func (x *ChunkIndex) SetDeleted(ctx context.Context, pack string, ids []chunk.ID, at int64) error {
	if len(ids) == 0 {
		return nil
	}
	return x.write(ctx, fmt.Sprintf("mark deleted %d chunks in %s", len(ids), pack), func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE chunk_index SET deleted_at = $1
			WHERE pack_id = (SELECT id FROM chunk_packs WHERE name = $2) AND id = ANY($3)`, at, pack, sortedIDs(ids))
		return err
	})
}

// sortedIDs returns ids as byte strings in order (lock order).
func sortedIDs(ids []chunk.ID) [][]byte {
	b := idBytes(ids)
	slices.SortFunc(b, bytes.Compare)
	return b
}

// Delete implements chunkstore.Index. A pack left without entries loses
// its row too, in the same transaction.
func (x *ChunkIndex) Delete(ctx context.Context, pack string, ids []chunk.ID) error {
	if len(ids) == 0 {
		return nil
	}
	return x.write(ctx, fmt.Sprintf("delete %d chunks in %s", len(ids), pack), func(tx pgx.Tx) error {
		var pid int64
		err := tx.QueryRow(ctx, `SELECT id FROM chunk_packs WHERE name = $1`, pack).Scan(&pid)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM chunk_index WHERE pack_id = $1 AND id = ANY($2)`, pid, sortedIDs(ids)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM chunk_packs WHERE id = $1
			AND NOT EXISTS (SELECT 1 FROM chunk_index WHERE pack_id = $1)`, pid)
		return err
	})
}

// Packs implements chunkstore.Index.
func (x *ChunkIndex) Packs(ctx context.Context) ([]string, error) {
	rows, err := x.s.r.Query(ctx, `SELECT name FROM chunk_packs p
		WHERE EXISTS (SELECT 1 FROM chunk_index c WHERE c.pack_id = p.id) ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	return out, nil
}

// PackEntries implements chunkstore.Index.
func (x *ChunkIndex) PackEntries(ctx context.Context, pack string) ([]chunkstore.Entry, error) {
	rows, err := x.s.r.Query(ctx, selectEntry+` WHERE p.name = $1 ORDER BY c.pos`, pack)
	if err != nil {
		return nil, fmt.Errorf("entries of pack %s: %w", pack, err)
	}
	out, err := pgx.CollectRows(rows, scanEntry)
	if err != nil {
		return nil, fmt.Errorf("entries of pack %s: %w", pack, err)
	}
	return out, nil
}

// Stats implements chunkstore.Index.
func (x *ChunkIndex) Stats(ctx context.Context) (chunkstore.IndexStats, error) {
	var st chunkstore.IndexStats
	err := x.s.r.QueryRow(ctx, `SELECT count(*), count(DISTINCT pack_id), coalesce(sum(length), 0),
		coalesce(sum(raw_length), 0), count(*) FILTER (WHERE deleted_at <> 0) FROM chunk_index`).
		Scan(&st.Chunks, &st.Packs, &st.StoredBytes, &st.RawBytes, &st.Deleted)
	if err != nil {
		return st, fmt.Errorf("chunk index stats: %w", err)
	}
	return st, nil
}

// Clear implements chunkstore.Index.
func (x *ChunkIndex) Clear(ctx context.Context) error {
	return x.write(ctx, "clear chunk index", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM chunk_index`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM chunk_packs`)
		return err
	})
}

// ForEachID implements chunkstore.IDLister: it calls fn for every indexed
// chunk ID (live or condemned), with one scan of the table.
func (x *ChunkIndex) ForEachID(ctx context.Context, fn func(chunk.ID)) error {
	rows, err := x.s.r.Query(ctx, `SELECT id FROM chunk_index`)
	if err != nil {
		return fmt.Errorf("list chunk IDs: %w", err)
	}
	defer rows.Close()
	return chunkstore.ScanIDs(rows, fn)
}
