-- Dynamic client registration (RFC 7591/7592): the hash of each registered client's registration
-- access token (never the token). Deleted with its app.
CREATE TABLE client_registrations (
    client_id  TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL
);
