-- Conditions that alert the operators (a connection paused too long, credentials refused,
-- drift found), each once an hour at most while it lasts.
CREATE TABLE alerts (
    condition TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    connection_id TEXT,
    message TEXT NOT NULL,
    active_since BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    last_sent_at BIGINT,
    resolved_at BIGINT
);

-- Outgoing webhook calls (alerts), written in the transaction that decides to send them and
-- delivered, with retries, by the engine.
CREATE TABLE webhook_outbox (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    sent_at BIGINT,
    last_error TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (sent_at, next_attempt_at);
