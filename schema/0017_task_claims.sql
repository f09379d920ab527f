-- 0017: what the task queue needs beyond the reference's tasks.queue (msstore's own).
--
-- A claim is a lease: `claimed_by` (the worker's agent token), `lease_expires_at`, and
-- `attempts` (claims so far), which a worker's claim carries so that a stale worker, whose
-- lease ran out and whose task another worker claimed, cannot complete it. `assigned_agent` is
-- the agent token beside `assigned_agent_id` (its registry id). `unique_key` is unique among
-- unfinished tasks (an idempotent enqueue). `result` and `last_error` keep how it ended.
ALTER TABLE tasks.queue
  ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  ADD COLUMN claimed_by TEXT,
  ADD COLUMN lease_expires_at TIMESTAMP WITH TIME ZONE,
  ADD COLUMN assigned_agent TEXT,
  ADD COLUMN unique_key TEXT,
  ADD COLUMN result JSONB,
  ADD COLUMN last_error TEXT;

-- Claims read pending tasks in claim order; the rescue of expired leases reads running ones.
CREATE INDEX idx_tasks_queue_claim_order ON tasks.queue
  (priority DESC, (COALESCE(scheduled_at, created_at)), created_at, task_id)
  WHERE status = 'pending';
CREATE INDEX idx_tasks_queue_leases ON tasks.queue (lease_expires_at)
  WHERE status = 'running';
CREATE UNIQUE INDEX idx_tasks_queue_unique_key ON tasks.queue (unique_key)
  WHERE unique_key IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');
CREATE INDEX idx_tasks_queue_finished ON tasks.queue (completed_at)
  WHERE status IN ('completed', 'failed', 'cancelled');
