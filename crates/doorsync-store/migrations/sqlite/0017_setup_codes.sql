-- First-run setup codes: `doorsync serve` prints one to its log while no administrator exists,
-- and the dashboard's first-run form takes it once. Only a hash is kept; in the database so that
-- any instance sharing it can check a code another one printed.
CREATE TABLE setup_codes (
    code_hash TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
