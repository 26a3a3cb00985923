-- Pushed authorization requests (RFC 9126). `uri_hash` is the SHA-256 of the request_uri's random
-- part (never the value itself); `params` the pushed parameters as a JSON array of [name, value]
-- pairs. Usable until `expires_at` before its first use, then until `used_until` (a login page
-- may be reloaded), and never after `consumed_at` (a code or an error was issued).
CREATE TABLE par_requests (
    uri_hash    TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    params      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_until  INTEGER,
    consumed_at INTEGER
);
CREATE INDEX par_requests_expires ON par_requests (expires_at);
