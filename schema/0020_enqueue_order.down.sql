DROP INDEX IF EXISTS tasks.idx_tasks_queue_enqueue_seq;
DROP INDEX IF EXISTS tasks.idx_tasks_queue_claim_order;
ALTER TABLE tasks.queue DROP COLUMN IF EXISTS enqueue_seq;
CREATE INDEX idx_tasks_queue_claim_order ON tasks.queue
  (priority DESC, (COALESCE(scheduled_at, created_at)), created_at, task_id)
  WHERE status = 'pending';
