-- Indexes for the background purge of revoked tokens and ended sessions (expired ones use the
-- expires_at indexes of 0001). Additive: a node that only knows migration 0001 runs unchanged.
CREATE INDEX IF NOT EXISTS access_revoked ON access_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS refresh_revoked ON refresh_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires_at);
