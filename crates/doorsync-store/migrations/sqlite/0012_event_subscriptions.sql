-- The provider's event subscription of each connection, delivering to doorsync's webhook at
-- `url`/hooks/brivo/SECRET; only the secret's hash is kept, to find the connection by.
CREATE TABLE event_subscriptions (
    connection_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    provider_subscription_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
