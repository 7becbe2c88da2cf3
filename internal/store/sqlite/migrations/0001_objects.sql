CREATE TABLE objects (
    kind         TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    data         BLOB    NOT NULL,
    create_index INTEGER NOT NULL,
    modify_index INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX objects_key ON objects (key);
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (name, value) VALUES ('index', 0);
