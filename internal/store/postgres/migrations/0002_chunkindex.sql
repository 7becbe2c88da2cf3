-- The chunk index of the chunk store (internal/chunkstore, docs/design.md).
-- Pack names are stored once, in chunk_packs.
CREATE TABLE chunk_packs (
    id   bigserial PRIMARY KEY,
    name text COLLATE "C" NOT NULL UNIQUE
);
CREATE TABLE chunk_index (
    id          bytea    PRIMARY KEY,  -- 32-byte chunk ID
    pack_id     bigint   NOT NULL REFERENCES chunk_packs (id),
    pos         bigint   NOT NULL,     -- offset of the stored bytes in the pack
    length      bigint   NOT NULL,     -- stored length
    raw_length  bigint   NOT NULL,
    compression smallint NOT NULL,
    deleted_at  bigint   NOT NULL DEFAULT 0  -- Unix ns when GC condemned it, 0 if live
);
CREATE INDEX chunk_index_pack ON chunk_index (pack_id, pos);
