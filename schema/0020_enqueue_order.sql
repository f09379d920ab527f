-- 0020: one claim order on every store: priority, then schedule, then enqueue order.
--
-- Ties used to fall to a random task id, so the tasks of one batch came out in another order
-- than they went in. `enqueue_seq` numbers tasks as they are enqueued (the rows of one
-- INSERT in their order); tasks already queued are numbered by creation time.
ALTER TABLE tasks.queue ADD COLUMN enqueue_seq BIGINT;
UPDATE tasks.queue q SET enqueue_seq = o.n
FROM (SELECT task_id, row_number() OVER (ORDER BY created_at, task_id) AS n FROM tasks.queue) o
WHERE q.task_id = o.task_id;
ALTER TABLE tasks.queue ALTER COLUMN enqueue_seq SET NOT NULL;
ALTER TABLE tasks.queue ALTER COLUMN enqueue_seq ADD GENERATED ALWAYS AS IDENTITY;
SELECT setval(pg_get_serial_sequence('tasks.queue', 'enqueue_seq'),
              COALESCE((SELECT max(enqueue_seq) FROM tasks.queue), 0) + 1, false);

DROP INDEX tasks.idx_tasks_queue_claim_order;
CREATE INDEX idx_tasks_queue_claim_order ON tasks.queue
  (priority DESC, (COALESCE(scheduled_at, created_at)), enqueue_seq)
  WHERE status = 'pending';
CREATE UNIQUE INDEX idx_tasks_queue_enqueue_seq ON tasks.queue (enqueue_seq);
