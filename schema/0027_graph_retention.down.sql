CREATE INDEX IF NOT EXISTS idx_graphs_checkpoints_id ON graphs.checkpoints (checkpoint_id);
ALTER TABLE graphs.writes DROP COLUMN IF EXISTS seq;
ALTER TABLE graphs.checkpoints DROP COLUMN IF EXISTS seq;
ALTER TABLE graphs.blobs DROP COLUMN IF EXISTS base;
ALTER TABLE graphs.threads DROP COLUMN IF EXISTS touched_at;
