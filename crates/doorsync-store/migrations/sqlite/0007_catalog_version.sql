-- Counts writes to links, inventory, locations and connections, so that the groups each
-- connection manages are computed again only when one of them changed.
CREATE TABLE catalog_version (
    id INTEGER PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO catalog_version (id, version) VALUES (1, 0);
