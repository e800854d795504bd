-- The next free call slot of each connection's API key, shared by every instance on the
-- database, so that together they keep to the key's calls per second.
CREATE TABLE call_slots (
    connection_id TEXT PRIMARY KEY,
    next_ms BIGINT NOT NULL
);
