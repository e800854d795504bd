-- The member app: one-time sign-in links e-mailed to members, and their sessions. Both are kept
-- as hashes of their tokens only, like API tokens and the dashboard's sessions.
CREATE TABLE member_links (
    token_hash TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX member_links_expiry ON member_links (expires_at);

CREATE TABLE member_sessions (
    token_hash TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX member_sessions_customer ON member_sessions (customer_id);

-- Mail waiting to be delivered over SMTP, written in the transaction that needs it sent, so a
-- crash between the two loses nothing; delivered (and retried) by the engine.
CREATE TABLE mail_outbox (
    id TEXT PRIMARY KEY,
    to_addr TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Mail not delivered by then is dropped: a sign-in link is useless after it.
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    sent_at BIGINT,
    last_error TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox (sent_at, next_attempt_at);

-- Which doors each group opens (the groups' door permissions), read with the directory.
CREATE TABLE group_doors (
    connection_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    provider_door_id TEXT NOT NULL,
    PRIMARY KEY (connection_id, group_id, provider_door_id)
);

-- Doors doorsync opened for a member: the provider reports the unlock with its administrator as
-- the actor, so the event is matched back to the member here, once.
CREATE TABLE remote_unlocks (
    id TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL,
    provider_door_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    event_id TEXT UNIQUE
);
CREATE INDEX remote_unlocks_door ON remote_unlocks (connection_id, provider_door_id, at);

ALTER TABLE door_events ADD COLUMN remote_unlock BIGINT NOT NULL DEFAULT 0;
