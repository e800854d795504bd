-- Fencing: each claim of a subject takes the next token; every write a reconcile makes for the
-- subject carries its claim's token and is refused once another claim has taken the subject.
ALTER TABLE schedule ADD COLUMN fence BIGINT NOT NULL DEFAULT 0;

-- A claim reads one lane at a time (revocations, then the rest), each a range of this index in
-- due order, so it never sorts the due rows nor walks past the future revocations.
DROP INDEX schedule_priority;
CREATE INDEX schedule_claim ON schedule (priority, next_due_at) WHERE lease_owner IS NULL;

-- Every reconcile looks up the subject's users by subject alone.
CREATE INDEX provider_users_subject ON provider_users (subject);
