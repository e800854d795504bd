-- Revocations first: a subject whose next transition takes access away is claimed before the
-- grants, invitations and resyncs due at the same time (0 = revocation, 1 = the rest).
ALTER TABLE schedule ADD COLUMN priority SMALLINT NOT NULL DEFAULT 1;
CREATE INDEX schedule_priority ON schedule (priority, next_due_at);
