-- An operator's unlock of a user's sign-in throttles (admin-api.md A-3). Throttles live in each
-- node's memory, so the unlock is written here and every node clears its own when it sees the row
-- (the generation counter moves with it). Rows are purged once every node has had time to see them.
CREATE TABLE unlocks (
    id         TEXT PRIMARY KEY,
    username   TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX unlocks_expires ON unlocks (expires_at);
