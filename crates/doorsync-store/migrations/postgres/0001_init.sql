-- Every record of DESIGN.md §1 is a JSON document keyed by its kind and the caller's id.
CREATE TABLE records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);

-- Each reference a record makes to another: drives existence checks, "in use" refusals and
-- finding the customers a change reaches.
CREATE TABLE refs (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    field TEXT NOT NULL,
    ref_kind TEXT NOT NULL,
    ref_id TEXT NOT NULL
);
CREATE INDEX refs_from ON refs (kind, id);
CREATE INDEX refs_to ON refs (ref_kind, ref_id, kind);

CREATE TABLE team_memberships (
    team_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    left_at BIGINT
);
CREATE INDEX team_memberships_team ON team_memberships (team_id);
CREATE INDEX team_memberships_customer ON team_memberships (customer_id);

CREATE TABLE schedule (
    subject TEXT PRIMARY KEY,
    next_due_at BIGINT,
    lease_owner TEXT,
    lease_until BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX schedule_due ON schedule (next_due_at);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);

CREATE TABLE audit_log (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    subject TEXT NOT NULL,
    group_id TEXT,
    operation TEXT NOT NULL,
    cause TEXT,
    outcome TEXT NOT NULL,
    latency_ms BIGINT,
    detail TEXT
);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);
