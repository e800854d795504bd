-- Door events from the provider (polled, or pushed to the webhook), kept once by the
-- provider's event id, and what presence made of them.
CREATE TABLE door_events (
    event_id TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    provider_door_id TEXT,
    door_name TEXT,
    provider_user_id TEXT,
    granted BIGINT NOT NULL,
    action TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    -- Filled when processed: who it was, where, and what presence made of it.
    processed_at BIGINT,
    subject TEXT,
    location_id TEXT,
    outcome TEXT
);
CREATE INDEX door_events_pending ON door_events (processed_at, occurred_at);
CREATE INDEX door_events_time ON door_events (occurred_at);

CREATE TABLE checkins (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    location_id TEXT NOT NULL,
    local_date TEXT NOT NULL,
    checked_in_at BIGINT NOT NULL,
    -- An open check-in closes at a check-out door or at local midnight.
    checked_out_at BIGINT,
    covered_kind TEXT NOT NULL,
    covered_id TEXT
);
CREATE INDEX checkins_customer ON checkins (customer_id, location_id, local_date);
CREATE INDEX checkins_time ON checkins (checked_in_at);

CREATE TABLE failed_checkins (
    id TEXT PRIMARY KEY,
    customer_id TEXT,
    provider_user_id TEXT,
    location_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX failed_checkins_time ON failed_checkins (at);

-- The days used of pass grants with a day count.
CREATE TABLE pass_days (
    grant_id TEXT NOT NULL,
    local_date TEXT NOT NULL,
    location_id TEXT NOT NULL,
    checkin_id TEXT NOT NULL,
    PRIMARY KEY (grant_id, local_date)
);

-- How far each connection's events have been read.
CREATE TABLE event_cursors (
    connection_id TEXT PRIMARY KEY,
    read_until BIGINT NOT NULL
);
