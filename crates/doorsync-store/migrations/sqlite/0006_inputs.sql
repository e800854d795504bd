-- What a reconcile reads, indexed for the queries it makes: each record that decides access has
-- a row here with the columns its queries filter and join on (its body stays in `records`), so
-- a customer's inputs are a handful of set-based queries bounded by time, and a write marks due
-- exactly the customers it reaches. Rows are written with their record, in its transaction;
-- existing records are projected once, at the first start after this migration (`backfill`).
CREATE TABLE in_bookings (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    end_ms BIGINT NOT NULL
);
CREATE INDEX in_bookings_customer ON in_bookings (customer_id, end_ms);
CREATE INDEX in_bookings_resource ON in_bookings (resource_id, end_ms);
CREATE TABLE in_grants (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    pass_id TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);
CREATE INDEX in_grants_customer ON in_grants (customer_id, until_ms);
CREATE INDEX in_grants_pass ON in_grants (pass_id, until_ms);
CREATE TABLE in_contracts (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    end_date TEXT
);
CREATE INDEX in_contracts_customer ON in_contracts (customer_id);
CREATE TABLE in_contract_desks (
    contract_id TEXT NOT NULL,
    desk_id TEXT NOT NULL,
    PRIMARY KEY (contract_id, desk_id)
);
CREATE INDEX in_contract_desks_desk ON in_contract_desks (desk_id);
CREATE TABLE in_teams (
    id TEXT PRIMARY KEY,
    paying_member_id TEXT NOT NULL
);
CREATE INDEX in_teams_payer ON in_teams (paying_member_id);
CREATE TABLE in_items (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    location_id TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX in_items_location ON in_items (location_id);
CREATE TABLE in_links (
    kind TEXT NOT NULL,
    item_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    PRIMARY KEY (kind, item_id)
);
CREATE INDEX in_links_group ON in_links (group_id);
CREATE TABLE in_locations (
    id TEXT PRIMARY KEY,
    connection_id TEXT
);
CREATE INDEX in_locations_connection ON in_locations (connection_id);
CREATE TABLE in_visitors (
    id TEXT PRIMARY KEY,
    location_id TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);
CREATE INDEX in_visitors_location ON in_visitors (location_id, until_ms);
CREATE TABLE backfill (name TEXT PRIMARY KEY);
INSERT INTO backfill (name) VALUES ('inputs');
