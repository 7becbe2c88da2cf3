-- The documents of store.Store. Keys and kinds compare as bytes (COLLATE
-- "C"), as in SQLite, so that List's key order and paging do not depend on
-- the database's locale.
CREATE TABLE objects (
    kind         text   COLLATE "C" NOT NULL,
    key          text   COLLATE "C" NOT NULL,
    data         bytea  NOT NULL,
    create_index bigint NOT NULL,
    modify_index bigint NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX objects_key ON objects (key, kind);
-- Every Update takes its index from this sequence (store.Tx.Index).
CREATE SEQUENCE store_index;
-- The index of the last Update that put or deleted an object of each kind
-- (store.Tx.KindIndex); each Update writes the rows of its kinds last.
CREATE TABLE kind_index (
    kind         text   COLLATE "C" PRIMARY KEY,
    modify_index bigint NOT NULL
);
