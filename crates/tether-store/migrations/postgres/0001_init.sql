-- Tether schema, PostgreSQL dialect (the same tables as migrations/sqlite). Migrations are additive only (a node of version N must keep
-- working against the schema of version N+1 during a rolling upgrade).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('generation', 1);

CREATE TABLE apps (
    client_id   TEXT PRIMARY KEY,
    secret_hash TEXT,
    settings    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    email         TEXT,
    name          TEXT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    private_sealed BYTEA NOT NULL,
    public_jwk     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    rotated_at     BIGINT,
    publish_until  BIGINT
);

CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL
);

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    cookie_hash TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL,
    auth_time   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    ended_at    BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE codes (
    code_hash             TEXT PRIMARY KEY,
    client_id             TEXT NOT NULL,
    user_id               TEXT NOT NULL,
    redirect_uri          TEXT NOT NULL,
    scope                 TEXT NOT NULL,
    audience              TEXT NOT NULL,
    nonce                 TEXT,
    code_challenge        TEXT,
    code_challenge_method TEXT,
    session_id            TEXT NOT NULL,
    auth_time             BIGINT NOT NULL,
    grant_id              TEXT NOT NULL,
    binding_type          TEXT,
    binding_ref           TEXT,
    binding_hash          TEXT,
    expires_at            BIGINT NOT NULL,
    used_at               BIGINT
);
CREATE INDEX codes_expires ON codes (expires_at);

-- Tokens are keyed by the SHA-256 of their value (the lookup of every use); `id` is the random
-- input an opaque token is derived from, never looked up.
CREATE TABLE access_tokens (
    token_hash   TEXT PRIMARY KEY,
    id           TEXT NOT NULL,
    jti          TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    user_id      TEXT,
    username     TEXT,
    scope        TEXT NOT NULL,
    audience     TEXT NOT NULL,
    token_type   TEXT NOT NULL,
    binding_type TEXT,
    binding_ref  TEXT,
    binding_hash TEXT,
    reuse_key    TEXT,
    grant_id     TEXT,
    session_id   TEXT,
    auth_time    BIGINT,
    issued_at    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
-- token-binding.md B-3: at most one active access token per reuse key, enforced by the database.
CREATE UNIQUE INDEX access_one_active_per_key ON access_tokens (reuse_key)
    WHERE reuse_key IS NOT NULL AND revoked_at IS NULL;
CREATE INDEX access_grant ON access_tokens (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX access_client ON access_tokens (client_id);
CREATE INDEX access_user ON access_tokens (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX access_expires ON access_tokens (expires_at);

CREATE TABLE refresh_tokens (
    token_hash   TEXT PRIMARY KEY,
    id           TEXT NOT NULL,
    family_id    TEXT NOT NULL,
    access_id    TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    user_id      TEXT,
    username     TEXT,
    scope        TEXT NOT NULL,
    audience     TEXT NOT NULL,
    binding_type TEXT,
    binding_ref  TEXT,
    binding_hash TEXT,
    grant_id     TEXT,
    session_id   TEXT,
    auth_time    BIGINT,
    issued_at    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX refresh_family ON refresh_tokens (family_id);
CREATE INDEX refresh_access ON refresh_tokens (access_id);
CREATE INDEX refresh_grant ON refresh_tokens (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX refresh_client ON refresh_tokens (client_id);
CREATE INDEX refresh_user ON refresh_tokens (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX refresh_expires ON refresh_tokens (expires_at);
