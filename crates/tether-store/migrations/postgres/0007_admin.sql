-- The admin API (admin-api.md). Additive only: a node that only knows migration 0006 never reads
-- or writes these columns and table, and the defaults keep its inserts valid.
-- Users: roles (space-separated: `admin`, `viewer`) and a disabled flag (0/1).
ALTER TABLE users ADD COLUMN roles TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
-- Apps: the secret a regeneration replaced (hash only) and the time it stops being accepted.
ALTER TABLE apps ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE apps ADD COLUMN previous_secret_until BIGINT;
-- Sessions: where the sign-in came from (client address, User-Agent of at most 256 bytes).
ALTER TABLE sessions ADD COLUMN ip TEXT;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
-- Audit events (admin-api.md A-4). `id` sorts by time (microseconds, then random); `detail` is
-- JSON text. Never holds a token, secret, password or code. Purged by age. Ids compare bytewise
-- (COLLATE "C"), as in SQLite, whatever the database's locale: the cursor depends on it.
CREATE TABLE events (
    id         TEXT COLLATE "C" PRIMARY KEY,
    time       BIGINT NOT NULL,
    type       TEXT NOT NULL,
    client_id  TEXT,
    username   TEXT,
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT NOT NULL
);
CREATE INDEX events_time ON events (time);
-- Token listing by public id (an access token's jti, a refresh token's id), in bytewise order
-- (the queries say COLLATE "C" too, so these indexes serve them).
CREATE INDEX IF NOT EXISTS access_jti ON access_tokens (jti COLLATE "C");
CREATE INDEX IF NOT EXISTS refresh_id ON refresh_tokens (id COLLATE "C");
