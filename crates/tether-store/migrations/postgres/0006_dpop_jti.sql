-- DPoP proof replay cache (RFC 9449 §11.1): one row per (key thumbprint, jti) seen, kept until the
-- proof could no longer be accepted anyway. Shared by every node on this database.
CREATE TABLE dpop_jti (
    replay_key TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dpop_jti_expires ON dpop_jti (expires_at);
