-- The index of the last transaction that put or deleted an object of each
-- kind (store.Tx.KindIndex), seeded from the objects there are.
CREATE TABLE kind_index (
    kind         TEXT    PRIMARY KEY,
    modify_index INTEGER NOT NULL
);
INSERT INTO kind_index (kind, modify_index) SELECT kind, max(modify_index) FROM objects GROUP BY kind;
