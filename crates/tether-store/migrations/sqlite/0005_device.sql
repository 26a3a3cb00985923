-- RFC 8628 device authorizations. Both codes are kept only as hashes (token-binding.md B-11):
-- `device_hash` is the hash of the device_code the client polls with (primary key),
-- `user_code_hash` the hash of the normalised user code the user types on the verification page.
-- `audience` is a JSON array, as in the token tables. `status` moves pending → approved | denied,
-- and approved → used once tokens were issued (a device code yields tokens once); `user_id`,
-- `session_id` and `auth_time` are set when the user decides. `interval` is the current minimum
-- polling interval in seconds (grows on slow_down), `last_polled` the time of the last poll.
-- Rows are purged once past `expires_at` (plus the purge grace).
CREATE TABLE device_codes (
    device_hash    TEXT PRIMARY KEY,
    user_code_hash TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    scope          TEXT NOT NULL,
    audience       TEXT NOT NULL,
    expires_at     INTEGER NOT NULL,
    interval       INTEGER NOT NULL,
    last_polled    INTEGER,
    status         TEXT NOT NULL,
    user_id        TEXT,
    session_id     TEXT,
    auth_time      INTEGER
);
CREATE INDEX device_user_code ON device_codes (user_code_hash);
CREATE INDEX device_expires ON device_codes (expires_at);

-- "Is this binding reference still in use?" (binding_in_use) and bulk revocation by binding or by
-- session (revoke_matching, logout). Partial: unbound / session-less tokens stay out of the index.
CREATE INDEX IF NOT EXISTS access_binding_ref ON access_tokens (binding_ref) WHERE binding_ref IS NOT NULL;
CREATE INDEX IF NOT EXISTS refresh_binding_ref ON refresh_tokens (binding_ref) WHERE binding_ref IS NOT NULL;
CREATE INDEX IF NOT EXISTS access_session ON access_tokens (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS refresh_session ON refresh_tokens (session_id) WHERE session_id IS NOT NULL;
