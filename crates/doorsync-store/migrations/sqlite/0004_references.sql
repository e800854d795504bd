-- References are enforced by the database (with `PRAGMA foreign_keys = ON` on every connection):
-- SQLite cannot add a constraint to a table, so the table is rebuilt. Reference rows left
-- dangling before this migration are dropped (their records stay).
CREATE TABLE refs_new (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    field TEXT NOT NULL,
    ref_kind TEXT NOT NULL,
    ref_id TEXT NOT NULL,
    FOREIGN KEY (kind, id) REFERENCES records (kind, id) ON DELETE CASCADE,
    FOREIGN KEY (ref_kind, ref_id) REFERENCES records (kind, id)
);
INSERT INTO refs_new (kind, id, field, ref_kind, ref_id)
    SELECT kind, id, field, ref_kind, ref_id FROM refs r
    WHERE EXISTS (SELECT 1 FROM records x WHERE x.kind = r.ref_kind AND x.id = r.ref_id)
      AND EXISTS (SELECT 1 FROM records x WHERE x.kind = r.kind AND x.id = r.id);
DROP TABLE refs;
ALTER TABLE refs_new RENAME TO refs;
CREATE INDEX refs_from ON refs (kind, id);
CREATE INDEX refs_to ON refs (ref_kind, ref_id, kind);
