ALTER TABLE graphs.writes DROP COLUMN IF EXISTS seq;
ALTER TABLE graphs.checkpoints DROP COLUMN IF EXISTS seq;
DROP INDEX IF EXISTS graphs.idx_graphs_threads_touched;
ALTER TABLE graphs.threads DROP COLUMN IF EXISTS touched_at;
