-- What doorsync believes the provider holds, per connection: the users it manages (keyed by
-- subject), their memberships, and the directory (groups, sites) read from the provider.
CREATE TABLE provider_users (
    connection_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL,
    suspended BIGINT NOT NULL DEFAULT 0,
    name TEXT,
    email TEXT,
    invited_at BIGINT,
    PRIMARY KEY (connection_id, subject)
);
CREATE UNIQUE INDEX provider_users_by_user ON provider_users (connection_id, user_id);

CREATE TABLE provider_memberships (
    connection_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (connection_id, group_id, user_id)
);
CREATE INDEX provider_memberships_user ON provider_memberships (connection_id, user_id);

CREATE TABLE provider_directory (
    connection_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    name TEXT NOT NULL,
    parent_id TEXT,
    PRIMARY KEY (connection_id, kind, provider_id)
);

CREATE TABLE connection_state (
    connection_id TEXT PRIMARY KEY,
    paused_until BIGINT,
    pause_reason TEXT,
    last_audit_at BIGINT,
    next_audit_at BIGINT,
    last_directory_at BIGINT,
    month TEXT,
    calls_this_month BIGINT NOT NULL DEFAULT 0
);

-- The due time a claimed subject had, for the lateness metric.
ALTER TABLE schedule ADD COLUMN claimed_due_at BIGINT;

-- The claim and the scheduler's sleep read these two ranges.
CREATE INDEX schedule_free ON schedule (next_due_at) WHERE lease_owner IS NULL;
CREATE INDEX schedule_leased ON schedule (lease_until) WHERE lease_owner IS NOT NULL;
