-- OIDC Back-Channel Logout 1.0. A session started by this version is marked `logout_pending`:
-- once it ends (logged out, ended by an operator or by another user's sign-in, past its lifetime
-- or idle timeout), a background job queues one delivery per app that holds tokens from it and
-- clears the mark. Sessions of earlier versions (and of older nodes during a rolling upgrade) keep
-- the default 0 and are never notified.
ALTER TABLE sessions ADD COLUMN logout_pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX sessions_pending_ended ON sessions (ended_at) WHERE logout_pending = 1 AND ended_at IS NOT NULL;
CREATE INDEX sessions_pending_expires ON sessions (expires_at) WHERE logout_pending = 1;
CREATE INDEX sessions_pending_idle ON sessions (last_seen) WHERE logout_pending = 1;
-- The durable queue of logout tokens to post. `id` is the logout token's `jti` (each attempt is
-- signed anew with it). Exactly one node works on a delivery at a time: it claims the row for a
-- while (`lease_until`). `next_at` is the next attempt; `created_at` bounds the retries.
CREATE TABLE logout_deliveries (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    uri         TEXT NOT NULL,
    sub         TEXT,
    sid         TEXT,
    created_at  INTEGER NOT NULL,
    next_at     INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX logout_deliveries_next ON logout_deliveries (next_at);
