-- References are enforced by the database, so that a write racing the delete of what it refers
-- to cannot leave it pointing at nothing: the insert of a reference locks its target, and the
-- delete of a target with a reference fails. Reference rows left dangling by such races before
-- this migration are dropped (their records stay).
DELETE FROM refs r WHERE NOT EXISTS (SELECT 1 FROM records x WHERE x.kind = r.ref_kind AND x.id = r.ref_id);
DELETE FROM refs r WHERE NOT EXISTS (SELECT 1 FROM records x WHERE x.kind = r.kind AND x.id = r.id);
ALTER TABLE refs ADD CONSTRAINT refs_owner FOREIGN KEY (kind, id) REFERENCES records (kind, id) ON DELETE CASCADE;
ALTER TABLE refs ADD CONSTRAINT refs_target FOREIGN KEY (ref_kind, ref_id) REFERENCES records (kind, id);
