-- Event listings and the purge select time ranges through the primary key (an event id begins
-- with its second, in hex), so the index on `time` only cost every insert a second B-tree write.
-- A node of an earlier version still lists correctly, scanning instead.
DROP INDEX IF EXISTS events_time;
