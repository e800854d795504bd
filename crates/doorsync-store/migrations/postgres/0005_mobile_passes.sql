-- Mobile Pass invitations that expire and are sent again, an operator's request to re-send one
-- now, and the account's allotment of passes (a spent allotment stops invitations, not access).
ALTER TABLE provider_users ADD COLUMN invitation_state TEXT;
ALTER TABLE provider_users ADD COLUMN invitation_checked_at BIGINT;
ALTER TABLE connection_state ADD COLUMN passes_allotted BIGINT;
ALTER TABLE connection_state ADD COLUMN passes_assigned BIGINT;
ALTER TABLE connection_state ADD COLUMN passes_out_since BIGINT;
ALTER TABLE connection_state ADD COLUMN passes_read_at BIGINT;
CREATE TABLE invitation_requests (
    subject TEXT PRIMARY KEY,
    requested_at BIGINT NOT NULL
);
