-- The chunk index of the chunk store (internal/chunkstore, docs/design.md).
-- Pack names are stored once, in chunk_packs.
CREATE TABLE chunk_packs (
    id   INTEGER PRIMARY KEY,
    name TEXT    NOT NULL UNIQUE
);
CREATE TABLE chunk_index (
    id          BLOB    PRIMARY KEY,  -- 32-byte chunk ID
    pack_id     INTEGER NOT NULL REFERENCES chunk_packs (id),
    pos         INTEGER NOT NULL,     -- offset of the stored bytes in the pack
    length      INTEGER NOT NULL,     -- stored length
    raw_length  INTEGER NOT NULL,
    compression INTEGER NOT NULL,
    deleted_at  INTEGER NOT NULL DEFAULT 0  -- Unix ns when GC condemned it, 0 if live
) WITHOUT ROWID;
CREATE INDEX chunk_index_pack ON chunk_index (pack_id, pos);
