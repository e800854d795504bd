-- A drift audit's finding: the subject's next reconcile reads its user's groups back from the
-- provider. The audit never writes a subject's mirror; the reconcile holding the lease does.
ALTER TABLE schedule ADD COLUMN drift_at BIGINT;

-- Memberships doorsync itself made. When a link moves or goes, these (and only these) are taken
-- out of the group nothing manages any more. Those already in a linked group were doorsync's.
ALTER TABLE provider_memberships ADD COLUMN added BIGINT NOT NULL DEFAULT 0;
UPDATE provider_memberships SET added = 1
 WHERE group_id IN (SELECT (body::json ->> 'group_id') FROM records WHERE kind = 'link');

-- The externalId last pushed to the user; NULL for users made before ids were made injective,
-- which carry the customer id (or visitor: and the visitor id).
ALTER TABLE provider_users ADD COLUMN external_id TEXT;

-- Connection-wide work that one instance does at a time: the drift audit, the directory read,
-- the probe that ends a pause.
CREATE TABLE work_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);

-- Consecutive pauses of a connection, for its backoff; a success clears it.
ALTER TABLE connection_state ADD COLUMN pauses BIGINT NOT NULL DEFAULT 0;

-- Memberships a disabled connection keeps past their entitlement, so they can be shown.
CREATE TABLE held_past (
    connection_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    group_id TEXT NOT NULL,
    since BIGINT NOT NULL,
    PRIMARY KEY (connection_id, subject, group_id)
);

-- Every subject is reconciled again within a few hours from now on; those that had nothing
-- coming were never looked at again, and those whose ids now map to a new externalId must move.
UPDATE schedule SET next_due_at = 0 WHERE lease_owner IS NULL AND next_due_at IS NULL;
UPDATE schedule SET next_due_at = 0
 WHERE subject LIKE 'customer:visitor:%' OR subject LIKE 'customer:customer:%';
