-- 0027: graph checkpoint retention, values as deltas, and replays in order.
--
-- graphs.threads.touched_at: when the thread last got a checkpoint or a write (the writer's
-- clock); a thread untouched for its time-to-live is expired: fenced at its newest checkpoint
-- and deleted.
-- (No index on touched_at: a put updates it, and an unindexed column keeps those updates HOT,
-- in place; the sweep reads the table.)
-- graphs.blobs.base: the value is a delta on the channel's value at version base (a chat's
-- message list stored as the messages a step added, not the whole list again).
-- seq on checkpoints and writes: the order of the write that stored the row (the KV revision
-- when the write went through a KV bucket first, 0 when it went straight to SQL). A row is only
-- replaced by a write with a seq at least as high, so a write replayed late by crash recovery
-- never overwrites a newer one.
ALTER TABLE graphs.threads ADD COLUMN touched_at DOUBLE PRECISION NOT NULL DEFAULT 0;
-- (threads written before this migration count as touched now, not at the epoch)
UPDATE graphs.threads SET touched_at = extract(epoch FROM now()) WHERE fence = '';
UPDATE graphs.threads SET touched_at = -1 WHERE fence <> '';
ALTER TABLE graphs.blobs ADD COLUMN base TEXT;
ALTER TABLE graphs.checkpoints ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE graphs.writes ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
-- Listing every thread's checkpoints by id alone is rare (an operator's view) and can sort;
-- the index cost every step a row.
DROP INDEX IF EXISTS graphs.idx_graphs_checkpoints_id;
