DROP INDEX IF EXISTS tasks.idx_tasks_queue_finished;
DROP INDEX IF EXISTS tasks.idx_tasks_queue_unique_key;
DROP INDEX IF EXISTS tasks.idx_tasks_queue_leases;
DROP INDEX IF EXISTS tasks.idx_tasks_queue_claim_order;
ALTER TABLE tasks.queue
  DROP COLUMN IF EXISTS last_error,
  DROP COLUMN IF EXISTS result,
  DROP COLUMN IF EXISTS unique_key,
  DROP COLUMN IF EXISTS assigned_agent,
  DROP COLUMN IF EXISTS lease_expires_at,
  DROP COLUMN IF EXISTS claimed_by,
  DROP COLUMN IF EXISTS attempts;
